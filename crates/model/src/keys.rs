//! The cast: five devices with deterministic keys, generated once per
//! process (OpenPGP key generation is the slowest thing the models do).

use std::fmt;
use std::sync::OnceLock;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sma_crypto::{AccountKey, DeviceKey};
use sma_proto::device::Identity;
use sma_proto::{DeviceId, Timestamp};

/// The account every modelled device belongs to.
pub const ACCOUNT: &str = "alice@example.org";
/// Unix seconds at which the modelled group is founded.
pub const T0: u64 = 1_700_000_000;

/// A device of the models.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dev {
    /// The founder: a member throughout.
    A,
    /// A second member.
    B,
    /// The member that is removed (or leaves).
    C,
    /// The device that joins, with the right pairing code.
    J,
    /// An attacker's device: announces itself and guesses the code.
    M,
}

impl Dev {
    /// Every device, in index order.
    pub const ALL: [Dev; 5] = [Dev::A, Dev::B, Dev::C, Dev::J, Dev::M];
    /// The devices that can hold a protocol state in the membership model.
    pub const MEMBERS: [Dev; 4] = [Dev::A, Dev::B, Dev::C, Dev::J];

    /// Position in [`Dev::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The device's protocol id.
    pub fn id(self) -> DeviceId {
        let digit = match self {
            Dev::A => 'a',
            Dev::B => 'b',
            Dev::C => 'c',
            Dev::J => '1',
            Dev::M => 'e',
        };
        DeviceId::parse(&digit.to_string().repeat(16)).expect("a valid device id")
    }

    /// The device whose id this is, if any of ours.
    pub fn of(id: &DeviceId) -> Option<Dev> {
        Dev::ALL.into_iter().find(|d| &d.id() == id)
    }

    /// The device's identity (deterministic key, generated once).
    pub fn identity(self) -> &'static Identity {
        &identities()[self.index()]
    }

    /// An owned copy of the device's identity (for an engine).
    pub fn owned_identity(self) -> Identity {
        let me = self.identity();
        Identity {
            id: me.id.clone(),
            account: me.account.clone(),
            key: me.key.clone(),
        }
    }
}

impl fmt::Debug for Dev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Dev::A => "A",
            Dev::B => "B",
            Dev::C => "C",
            Dev::J => "J",
            Dev::M => "M",
        };
        f.write_str(name)
    }
}

/// A device id as a short name (`A`, `B`, …, or the id itself).
pub fn name(id: &DeviceId) -> String {
    Dev::of(id).map_or_else(|| id.to_string(), |d| format!("{d:?}"))
}

/// A seeded RNG.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn identities() -> &'static [Identity; 5] {
    static IDS: OnceLock<[Identity; 5]> = OnceLock::new();
    IDS.get_or_init(|| {
        Dev::ALL.map(|d| {
            let id = d.id();
            let key = DeviceKey::generate(&mut rng(1000 + d.index() as u64), id.as_str(), T0 - 100)
                .expect("device key generation");
            Identity {
                id,
                account: ACCOUNT.into(),
                key,
            }
        })
    })
}

/// Account key generation `n` (1: the founder's, 2: after a rotation).
pub fn account_key(n: u32) -> &'static AccountKey {
    static KEYS: OnceLock<[AccountKey; 2]> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        [1u64, 2].map(|g| {
            AccountKey::generate(&mut rng(5000 + g), ACCOUNT, T0 - 100)
                .expect("account key generation")
        })
    });
    &keys[(n.clamp(1, 2) - 1) as usize]
}

/// The model's clock: `secs` seconds after [`T0`].
pub fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}
