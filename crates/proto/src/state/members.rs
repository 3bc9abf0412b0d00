//! The member list: a map of device records whose status is a lattice.

use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;
use crate::ids::DeviceId;

/// Membership status. Ordered: pending < active < stale < removed; merge
/// takes the maximum, so `removed` is final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// Announced, not paired.
    Pending,
    /// A full member.
    Active,
    /// Silent past the expiry policy; about to be removed.
    Stale,
    /// Removed (forced, expired or left). Final.
    Removed,
}

impl MemberStatus {
    /// The wire/CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Pending => "pending",
            MemberStatus::Active => "active",
            MemberStatus::Stale => "stale",
            MemberStatus::Removed => "removed",
        }
    }
}

/// One device in the replicated member list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The device.
    pub id: DeviceId,
    /// Upper-case hex fingerprint of the device certificate.
    pub fingerprint: String,
    /// Armored public device certificate.
    pub cert: String,
    /// Human name (last writer by `name_stamp` wins).
    pub name: String,
    /// Stamp of the last name change.
    pub name_stamp: Hlc,
    /// Status lattice value.
    pub status: MemberStatus,
    /// Latest heartbeat seen (Unix seconds), a max register.
    pub heartbeat: u64,
    /// For a removed device: the highest seq of its ops that the device
    /// removing it held (a max register). Its ops with a higher seq were
    /// written after its removal and are refused everywhere (PROTOCOL 10.5).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub final_seq: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl MemberRecord {
    /// Merges another record of the same device id into this one.
    ///
    /// Records with different certificates for one id (an id collision or a
    /// forgery attempt by a member) resolve deterministically: the record with
    /// the byte-wise smaller fingerprint wins whole.
    pub fn merge(&mut self, other: &MemberRecord) -> bool {
        let before = self.clone();
        self.merge_in(other);
        *self != before
    }

    fn merge_in(&mut self, other: &MemberRecord) {
        if other.fingerprint != self.fingerprint {
            if other.fingerprint < self.fingerprint {
                *self = other.clone();
            }
            return;
        }
        if other.cert != self.cert && other.cert < self.cert {
            // Same key, different serialisation: keep one deterministically.
            self.cert = other.cert.clone();
        }
        self.status = self.status.max(other.status);
        self.heartbeat = self.heartbeat.max(other.heartbeat);
        self.final_seq = self.final_seq.max(other.final_seq);
        if (&other.name_stamp, &other.name) > (&self.name_stamp, &self.name) {
            self.name = other.name.clone();
            self.name_stamp = other.name_stamp.clone();
        }
    }
}
