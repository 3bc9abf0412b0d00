//! The simulated world: device slots, the operations they run as actors,
//! and the executor that interleaves those actors one IMAP command at a time.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
use sma::init::{InitOptions, InitReport};
use sma::lifecycle::RemovalReport;
use sma::pair::{JoinReport, PairEvent};
use sma::round::SyncReport;
use sma::{AppMessage, Device, DeviceId, SendReport, ServerConfig};
use sma_crypto::{DeviceKey, PairingCode};
use sma_imap::Transport;
use sma_proto::core::CoreState;
use sma_proto::folders::Layout;
use sma_store::Store;

use crate::clock::{ClockError, DeviceClock, SimClock};
use crate::net::{Net, SimTransport};

/// The account every simulated device belongs to.
pub const ACCOUNT: &str = "sim@sma.test";
/// How long a simulated `pair` waits for its joiner (virtual time).
pub const PAIR_WAIT: Duration = Duration::from_secs(120);
/// How long a simulated `join` waits for the member (virtual time).
pub const JOIN_WAIT: Duration = Duration::from_secs(120);

/// What a device slot is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An honest device.
    Honest,
    /// A device that announces itself and then forges messages: it is
    /// never paired, so nothing it sends may be applied.
    Rogue,
}

/// One device of the simulation (across crashes and restarts).
pub struct Slot {
    /// Short name (`d0`, `d1`, …).
    pub name: String,
    /// Honest or rogue.
    pub kind: Kind,
    /// The home of the current device (a new one after a failed `init`).
    pub home: Option<PathBuf>,
    /// Number of `init` attempts (names the homes).
    pub inits: u32,
    /// Its device id, once `init` succeeded.
    pub id: Option<DeviceId>,
    /// Its certificate fingerprint, once `init` succeeded.
    pub fingerprint: Option<String>,
    /// The opened device, when no operation holds it (`None` after a crash
    /// until it is reopened).
    pub dev: Option<Device>,
    /// Restarts after crashes.
    pub restarts: u32,
    /// Removed from the group or left it: never used again.
    pub gone: bool,
}

impl Slot {
    /// Whether this is an honest device that is a member by its own
    /// account (a rogue that founded a group of its own is not counted).
    pub fn is_member(&self) -> bool {
        self.kind == Kind::Honest
            && !self.gone
            && self.dev.as_ref().is_some_and(|d| d.info().role.is_member())
    }

    /// Whether the device is pending by its own account.
    pub fn is_pending(&self) -> bool {
        self.dev
            .as_ref()
            .is_some_and(|d| d.info().role == sma::Role::Pending)
    }
}

/// An operation a device runs (a CLI command, in the real program).
#[derive(Clone, Debug)]
pub enum Op {
    /// `init` (founds the group or announces as pending).
    Init {
        /// Layout if this device founds the group.
        layout: Layout,
    },
    /// `sync`.
    Sync,
    /// `recv` (no waiting), handing out what is queued.
    Recv,
    /// `send` to one member or to all.
    Send {
        /// The recipient, or all.
        to: Option<DeviceId>,
        /// The body.
        body: Vec<u8>,
    },
    /// `pair` with the pending device in slot `target`.
    Pair {
        /// The joiner's slot.
        target: usize,
        /// Where the code shown to the person lands.
        code: Arc<Mutex<Option<String>>>,
    },
    /// `remove ID` (optionally rotating the account key).
    Remove {
        /// The device to remove.
        target: DeviceId,
        /// `--rotate-account-key`.
        rotate: bool,
    },
    /// `leave`.
    Leave,
    /// `join` with a typed code.
    Join {
        /// The code typed.
        code: String,
        /// Whether it is the code the member showed.
        right: bool,
    },
}

impl Op {
    /// A short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Init { .. } => "init",
            Op::Sync => "sync",
            Op::Recv => "recv",
            Op::Send { .. } => "send",
            Op::Pair { .. } => "pair",
            Op::Join { .. } => "join",
            Op::Remove { .. } => "remove",
            Op::Leave => "leave",
        }
    }
}

/// What a finished operation reports.
pub enum OpResult {
    /// `init`.
    Init(sma::Result<InitReport>),
    /// `sync`.
    Sync(sma::Result<SyncReport>),
    /// `recv`: the messages handed out.
    Recv(sma::Result<Vec<AppMessage>>),
    /// `send`, with the body sent.
    Send(sma::Result<SendReport>, Vec<u8>),
    /// `pair` with the slot paired.
    Pair(sma::Result<String>, usize),
    /// `join`, and whether the right code was typed.
    Join(sma::Result<JoinReport>, bool),
    /// `remove`, with the device removed.
    Remove(sma::Result<RemovalReport>, DeviceId),
    /// `leave`.
    Leave(sma::Result<RemovalReport>),
}

impl OpResult {
    /// The operation's name (as [`Op::name`]).
    pub fn name(&self) -> &'static str {
        match self {
            OpResult::Init(_) => "init",
            OpResult::Sync(_) => "sync",
            OpResult::Recv(_) => "recv",
            OpResult::Send(..) => "send",
            OpResult::Pair(..) => "pair",
            OpResult::Join(..) => "join",
            OpResult::Remove(..) => "remove",
            OpResult::Leave(_) => "leave",
        }
    }

    /// Whether the operation succeeded.
    pub fn succeeded(&self) -> bool {
        match self {
            OpResult::Init(r) => r.is_ok(),
            OpResult::Sync(r) => r.is_ok(),
            OpResult::Recv(r) => r.is_ok(),
            OpResult::Send(r, _) => r.is_ok(),
            OpResult::Pair(r, _) => r.is_ok(),
            OpResult::Join(r, _) => r.is_ok(),
            OpResult::Remove(r, _) => r.is_ok(),
            OpResult::Leave(r) => r.is_ok(),
        }
    }
}

/// A finished operation: the device comes back with the result.
pub struct Done {
    /// The device (absent if `init` failed).
    pub dev: Option<Device>,
    /// The result.
    pub result: OpResult,
}

impl Done {
    /// `dev` comes back from an operation that ended with `result`.
    fn back(dev: Device, result: OpResult) -> Done {
        Done {
            dev: Some(dev),
            result,
        }
    }
}

type OpFuture = Pin<Box<dyn Future<Output = Done>>>;

/// A running operation.
pub struct Actor {
    /// The operation.
    pub op: &'static str,
    fut: OpFuture,
}

/// Devices, the network, the clock and the running operations.
pub struct World {
    /// The seed everything derives from.
    pub seed: u64,
    /// The scheduler's random source.
    pub rng: ChaCha8Rng,
    /// The network and server.
    pub net: Net,
    /// Virtual wall-clock time: the true time.
    pub clock: Arc<SimClock>,
    /// Each slot's own clock (true time when the plan skews none).
    pub clocks: Vec<Arc<DeviceClock>>,
    /// Device slots.
    pub slots: Vec<Slot>,
    /// The running operation of each slot.
    pub actors: Vec<Option<Actor>>,
    /// Operations that finished and were not collected yet.
    pub finished: Vec<(usize, Done)>,
    /// CPU time spent in each kind of operation (for tuning).
    pub costs: std::collections::BTreeMap<&'static str, Duration>,
    dir: PathBuf,
}

impl World {
    /// A world with `honest` honest slots and `rogues` rogue slots, homes
    /// under `dir`, the clock of slot `i` wrong by `clocks[i]` (if given).
    /// Must be created inside the (paused) runtime.
    pub fn new(
        seed: u64,
        dir: &Path,
        honest: usize,
        rogues: usize,
        clocks: &[ClockError],
    ) -> World {
        let mut slots = Vec::new();
        for i in 0..honest + rogues {
            slots.push(Slot {
                name: format!("d{i}"),
                kind: if i < honest {
                    Kind::Honest
                } else {
                    Kind::Rogue
                },
                home: None,
                inits: 0,
                id: None,
                fingerprint: None,
                dev: None,
                restarts: 0,
                gone: false,
            });
        }
        let n = slots.len();
        // 2026-01-01T00:00:00Z.
        let clock = Arc::new(SimClock::new(1_767_225_600_000));
        let clocks = (0..n)
            .map(|i| {
                let e = clocks.get(i).copied().unwrap_or_default();
                Arc::new(DeviceClock::new(clock.clone(), e))
            })
            .collect();
        World {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            net: Net::new(),
            clock,
            clocks,
            slots,
            actors: (0..n).map(|_| None).collect(),
            finished: Vec::new(),
            costs: Default::default(),
            dir: dir.to_owned(),
        }
    }

    /// A fresh seeded random source for a device.
    fn device_rng(&mut self) -> Box<ChaCha20Rng> {
        Box::new(ChaCha20Rng::seed_from_u64(self.rng.gen()))
    }

    /// Whether slot `i` runs an operation.
    pub fn busy(&self, i: usize) -> bool {
        self.actors[i].is_some()
    }

    /// Reopens the device of slot `i` from its home if it is not open (after
    /// a crash). Returns whether a device is open.
    pub fn ensure_open(&mut self, i: usize) -> Result<bool, String> {
        if self.busy(i) || self.slots[i].dev.is_some() {
            return Ok(self.slots[i].dev.is_some());
        }
        let Some(home) = self.slots[i].home.clone() else {
            return Ok(false);
        };
        if self.slots[i].gone || !home.join(sma::STORE_FILE).exists() {
            return Ok(false);
        }
        if sma::lifecycle::check_not_removed(&home).is_err() {
            self.slots[i].gone = true;
            return Ok(false);
        }
        let rng = self.device_rng();
        let dev = Device::open_with(&home, self.clocks[i].clone(), rng)
            .map_err(|e| format!("{}: reopening the device failed: {e}", self.slots[i].name))?;
        self.slots[i].dev = Some(dev);
        Ok(true)
    }

    /// Kills the process of slot `i`: its running operation is dropped
    /// wherever it is, and its device is closed. Nothing but the store on
    /// disk survives.
    pub fn crash(&mut self, i: usize) {
        self.actors[i] = None;
        self.slots[i].dev = None;
        self.slots[i].restarts += 1;
    }

    /// Starts `op` on slot `i` (which must be idle and, except for `init`,
    /// open).
    pub fn start(&mut self, i: usize, op: Op) {
        debug_assert!(!self.busy(i));
        let name = op.name();
        let fut = match op {
            Op::Init { layout } => self.init_future(i, layout),
            op => {
                let Some(dev) = self.slots[i].dev.take() else {
                    return;
                };
                self.device_future(i, dev, op)
            }
        };
        self.actors[i] = Some(Actor { op: name, fut });
    }

    /// The future of `init` on slot `i`, in a new home of its own.
    fn init_future(&mut self, i: usize, layout: Layout) -> OpFuture {
        let net = self.net.clone();
        self.slots[i].inits += 1;
        let home = self
            .dir
            .join(format!("{}-{}", self.slots[i].name, self.slots[i].inits));
        self.slots[i].home = Some(home.clone());
        self.slots[i].dev = None;
        let opts = InitOptions {
            home: home.clone(),
            server: ServerConfig {
                host: "sim.invalid".into(),
                port: 143,
                security: sma_imap::Security::Plain,
                ca_file: None,
                allow_insecure: false,
                user: ACCOUNT.into(),
                oauth2_token_command: None,
                jmap_url: None,
            },
            name: self.slots[i].name.clone(),
            layout,
            account_key: None,
        };
        let clock = self.clocks[i].clone();
        let rng1 = self.device_rng();
        let rng2 = self.device_rng();
        Box::pin(async move {
            let mut t = SimTransport::connect(&net, i);
            let r = sma::init::init_on(&mut t, opts, clock.clone(), rng1).await;
            let _ = t.logout().await;
            let dev = match &r {
                Ok(_) => Device::open_with(&home, clock, rng2).ok(),
                Err(_) => None,
            };
            Done {
                dev,
                result: OpResult::Init(r),
            }
        })
    }

    /// The future of `op` (anything but `init`) run by slot `i`'s open
    /// device `dev`, which it hands back when done.
    fn device_future(&self, i: usize, mut dev: Device, op: Op) -> OpFuture {
        let net = self.net.clone();
        match op {
            Op::Sync => Box::pin(async move {
                let mut t = SimTransport::connect(&net, i);
                let r = dev.sync(&mut t).await;
                let _ = t.logout().await;
                Done::back(dev, OpResult::Sync(r))
            }),
            Op::Recv => Box::pin(async move {
                let mut t = SimTransport::connect(&net, i);
                // Hand out and forget in one step, as `recv` does
                // (no await between the two).
                let r = dev
                    .recv(&mut t, Duration::ZERO)
                    .await
                    .and_then(|m| dev.delivered(&m).map(|_| m));
                let _ = t.logout().await;
                Done::back(dev, OpResult::Recv(r))
            }),
            Op::Send { to, body } => Box::pin(async move {
                let mut t = SimTransport::connect(&net, i);
                let r = dev.send(&mut t, to.as_ref(), "text", &body).await;
                let _ = t.logout().await;
                Done::back(dev, OpResult::Send(r, body))
            }),
            Op::Pair { target, code } => {
                let target_id = self.slots[target].id.clone();
                Box::pin(async move {
                    let mut t = SimTransport::connect(&net, i);
                    let r = dev
                        .pair(&mut t, target_id.as_ref(), PAIR_WAIT, |ev| {
                            if let PairEvent::Code { code: c, .. } = ev {
                                *code.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
                            }
                        })
                        .await;
                    let _ = t.logout().await;
                    Done::back(dev, OpResult::Pair(r, target))
                })
            }
            Op::Join { code, right } => Box::pin(async move {
                let mut t = SimTransport::connect(&net, i);
                let r = match PairingCode::parse(&code) {
                    Ok(c) => dev.join(&mut t, &c, JOIN_WAIT).await,
                    Err(_) => Err(sma::Error::Usage("bad code".into())),
                };
                let _ = t.logout().await;
                Done::back(dev, OpResult::Join(r, right))
            }),
            Op::Remove { target, rotate } => Box::pin(async move {
                let mut t = SimTransport::connect(&net, i);
                let r = dev.remove(&mut t, &target, rotate).await;
                let _ = t.logout().await;
                Done::back(dev, OpResult::Remove(r, target))
            }),
            Op::Leave => Box::pin(async move {
                let mut t = SimTransport::connect(&net, i);
                let r = dev.leave(&mut t).await;
                let _ = t.logout().await;
                Done::back(dev, OpResult::Leave(r))
            }),
            Op::Init { .. } => unreachable!("init has a future of its own"),
        }
    }

    /// Polls every running operation once.
    fn poll_actors(&mut self, cx: &mut Context<'_>) {
        for i in 0..self.actors.len() {
            let Some(a) = self.actors[i].as_mut() else {
                continue;
            };
            let t0 = std::time::Instant::now();
            // Driver log lines say which device they come from.
            let span = tracing::debug_span!("device", name = %self.slots[i].name);
            let polled = span.in_scope(|| a.fut.as_mut().poll(cx));
            *self.costs.entry(a.op).or_default() += t0.elapsed();
            if let Poll::Ready(done) = polled {
                self.actors[i] = None;
                self.finished.push((i, done));
            }
        }
    }

    /// Runs the actors until a command waits at a gate, an operation
    /// finished, or nothing runs. While every actor waits for (virtual)
    /// time, tokio moves the paused clock to the next timer.
    pub async fn run_until_gate(&mut self) {
        std::future::poll_fn(|cx| {
            self.poll_actors(cx);
            let gated = !self.net.lock().gates.waiting.is_empty();
            if gated || !self.finished.is_empty() || self.actors.iter().all(Option::is_none) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// Reads a device's description, key and protocol state from its home
/// (the way a second process would).
pub fn load_identity(home: &Path) -> Result<(sma::DeviceInfo, DeviceKey, CoreState), String> {
    let e = |what: &str, err: &dyn std::fmt::Display| format!("reading the home ({what}): {err}");
    let store = Store::open(&home.join(sma::STORE_FILE)).map_err(|x| e("open", &x))?;
    let db = store.read();
    let info: sma::DeviceInfo = db
        .meta("device")
        .map_err(|x| e("meta", &x))?
        .and_then(|j| serde_json::from_str(&j).ok())
        .ok_or("no device info")?;
    let key = db
        .secret("device_key")
        .map_err(|x| e("key", &x))?
        .ok_or("no device key")?;
    let key = DeviceKey::from_bytes(&key).map_err(|x| e("key", &x))?;
    let core: CoreState = db
        .load_core()
        .map_err(|x| e("core", &x))?
        .unwrap_or_default();
    Ok((info, key, core))
}
