//! The replicated Autocrypt keyring: per-address peer state (Autocrypt Level 1).
//!
//! Each [`PeerState`] is a product of three lattices, so it merges
//! commutatively, associatively and idempotently:
//!
//! * `last_seen` — a max register;
//! * the Autocrypt register (`autocrypt_timestamp`, `public_key`,
//!   `prefer_encrypt`) — ordered by the effective date, ties broken by the
//!   HLC `stamp` of the observation that wrote it;
//! * the gossip register (`gossip_timestamp`, `gossip_key`) — likewise with
//!   `gossip_stamp`.
//!
//! The merged state equals the Level 1 update algorithm run sequentially
//! over every observation in HLC-stamp order (see `crate::autocrypt::update`).
//!
//! The JSON form is compact: fields holding their default (zero, `null`,
//! `nopreference`) are left out, and key data is stored once, as the
//! base64 `keydata` of the header it came from.

use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;

pub use sma_crypto::PreferEncrypt;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_nopreference(v: &PreferEncrypt) -> bool {
    *v == PreferEncrypt::NoPreference
}

/// What is known about one correspondent address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    /// The (lower-cased) address.
    pub addr: String,
    /// Effective date of the newest message seen from the address (max register).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_seen: u64,
    /// Effective date of the newest message with a valid Autocrypt header.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub autocrypt_timestamp: u64,
    /// Base64 keydata from that header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Prefer-encrypt from that header.
    #[serde(default, skip_serializing_if = "is_nopreference")]
    pub prefer_encrypt: PreferEncrypt,
    /// Tie-break stamp for the Autocrypt register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<Hlc>,
    /// Effective date of the newest gossip seen.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gossip_timestamp: u64,
    /// Base64 keydata from that gossip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip_key: Option<String>,
    /// Tie-break stamp for the gossip register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip_stamp: Option<Hlc>,
}

impl PeerState {
    /// An address seen for the first time, with nothing known.
    pub fn new(addr: &str) -> Self {
        PeerState {
            addr: addr.to_lowercase(),
            last_seen: 0,
            autocrypt_timestamp: 0,
            public_key: None,
            prefer_encrypt: PreferEncrypt::NoPreference,
            stamp: None,
            gossip_timestamp: 0,
            gossip_key: None,
            gossip_stamp: None,
        }
    }

    /// Merges another view of the same address: `last_seen` is a max; the
    /// Autocrypt register (key, prefer-encrypt) goes to the newer
    /// `autocrypt_timestamp`, ties broken by the HLC stamp; gossip likewise.
    /// Returns whether this state changed.
    pub fn merge(&mut self, other: &PeerState) -> bool {
        let mut changed = other.last_seen > self.last_seen;
        self.last_seen = self.last_seen.max(other.last_seen);
        // Equal stamps never carry different values in practice (a stamp
        // names one write); comparing the values too keeps merge a total order.
        if (
            other.autocrypt_timestamp,
            &other.stamp,
            &other.public_key,
            other.prefer_encrypt,
        ) > (
            self.autocrypt_timestamp,
            &self.stamp,
            &self.public_key,
            self.prefer_encrypt,
        ) {
            self.autocrypt_timestamp = other.autocrypt_timestamp;
            self.public_key = other.public_key.clone();
            self.prefer_encrypt = other.prefer_encrypt;
            self.stamp = other.stamp.clone();
            changed = true;
        }
        if (
            other.gossip_timestamp,
            &other.gossip_stamp,
            &other.gossip_key,
        ) > (self.gossip_timestamp, &self.gossip_stamp, &self.gossip_key)
        {
            self.gossip_timestamp = other.gossip_timestamp;
            self.gossip_key = other.gossip_key.clone();
            self.gossip_stamp = other.gossip_stamp.clone();
            changed = true;
        }
        changed
    }
}
