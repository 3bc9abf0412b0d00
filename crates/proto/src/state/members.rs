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
    /// For a device another member removed (`remove` or expiry): the
    /// highest seq of its ops the removers held, a max register; `None`
    /// while no member removed it. It bounds the device's ops that count
    /// (see [`MemberRecord::seq_bound`], PROTOCOL 10.5). On the wire it is
    /// present (possibly 0) exactly when `Some`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_seq: Option<u64>,
    /// For a device that left: the seq of its own `leave` op, a max
    /// register (0: it did not leave). Kept apart from `final_seq` so that
    /// the device's own leave never raises the removers' bound.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub left_seq: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl MemberRecord {
    /// For a removed device, the highest seq of its ops that counts
    /// (PROTOCOL 10.5, *Final seq*): ops above it were written after the
    /// removal and are refused. The removers' `final_seq` when a member
    /// removed it — one more when the device's own leave is the op right
    /// after it — and otherwise the seq of its own leave. The leave never
    /// raises the removers' bound further, so the ops a member applied
    /// above it stay reported (`after_removal`) whatever the order.
    /// `u64::MAX` for a device that is not removed.
    pub fn seq_bound(&self) -> u64 {
        if self.status != MemberStatus::Removed {
            return u64::MAX;
        }
        match self.final_seq {
            Some(f) if self.left_seq == f.saturating_add(1) => self.left_seq,
            Some(f) => f,
            None => self.left_seq,
        }
    }

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
        self.left_seq = self.left_seq.max(other.left_seq);
        if (&other.name_stamp, &other.name) > (&self.name_stamp, &self.name) {
            self.name = other.name.clone();
            self.name_stamp = other.name_stamp.clone();
        }
    }
}
