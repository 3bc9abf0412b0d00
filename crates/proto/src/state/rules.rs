//! The rules of PROTOCOL 6.5 that every replicated value must keep. They
//! are checked on everything received (ops, the welcome's state); a value
//! that breaks one is rejected as the sender's misbehaviour.

use sma_crypto::{AccountKey, Certificate};

use super::{AccountKeyRecord, Change, GroupState, MemberRecord, PeerState};
use crate::error::PeerMisbehaved;
use crate::payload::MAX_NAME_CHARS;

/// Largest armored certificate in a member record.
pub const MAX_CERT_BYTES: usize = 64 * 1024;
/// Largest armored secret key in an account-key record.
pub const MAX_SECRET_BYTES: usize = 256 * 1024;
/// Largest base64 key data in a keyring entry.
pub const MAX_KEYDATA_BYTES: usize = 64 * 1024;
/// Longest keyring address.
pub const MAX_ADDR_BYTES: usize = 320;

fn broken(what: &'static str, rule: &'static str) -> PeerMisbehaved {
    PeerMisbehaved::rule(what, rule)
}

impl MemberRecord {
    /// Bounds and the fingerprint of the certificate (parsed here).
    pub fn check(&self) -> Result<(), PeerMisbehaved> {
        const W: &str = "member record";
        if self.cert.len() > MAX_CERT_BYTES {
            return Err(broken(W, "certificate larger than 64 KiB"));
        }
        if self.name.chars().count() > MAX_NAME_CHARS {
            return Err(broken(W, "name longer than 128 characters"));
        }
        let cert = Certificate::from_armored(&self.cert)
            .map_err(|_| broken(W, "certificate does not parse"))?;
        if cert.fingerprint().to_string() != self.fingerprint {
            return Err(broken(W, "fingerprint is not the certificate's"));
        }
        Ok(())
    }
}

impl PeerState {
    /// Bounds of a keyring entry.
    pub fn check(&self) -> Result<(), PeerMisbehaved> {
        const W: &str = "keyring entry";
        if self.addr.is_empty() || self.addr.len() > MAX_ADDR_BYTES {
            return Err(broken(W, "address empty or longer than 320 bytes"));
        }
        if self.addr.chars().any(char::is_control) {
            return Err(broken(W, "address with control characters"));
        }
        let too_big = |k: &Option<String>| k.as_ref().is_some_and(|k| k.len() > MAX_KEYDATA_BYTES);
        if too_big(&self.public_key) || too_big(&self.gossip_key) {
            return Err(broken(W, "key data larger than 64 KiB"));
        }
        Ok(())
    }
}

impl AccountKeyRecord {
    /// Generation at least 1 and the fingerprint of the secret key (parsed here).
    pub fn check(&self) -> Result<(), PeerMisbehaved> {
        const W: &str = "account key";
        if self.generation == 0 {
            return Err(broken(W, "generation 0"));
        }
        if self.secret.len() > MAX_SECRET_BYTES {
            return Err(broken(W, "secret key larger than 256 KiB"));
        }
        let key = AccountKey::from_armored_secret(self.secret.expose())
            .map_err(|_| broken(W, "secret key does not parse"))?;
        if key.fingerprint().to_string() != self.fingerprint {
            return Err(broken(W, "fingerprint is not the key's"));
        }
        Ok(())
    }
}

impl Change {
    /// The rules of the value the change carries.
    pub fn check(&self) -> Result<(), PeerMisbehaved> {
        match self {
            Change::Member(rec) => rec.check(),
            Change::Peer(p) => p.check(),
            Change::AccountKey(k) => k.check(),
            Change::PreferEncrypt(_) => Ok(()),
        }
    }
}

impl GroupState {
    /// Every value valid and every map key equal to its value's id, lower-cased
    /// address or generation (a state received whole, as in the welcome).
    pub fn check(&self) -> Result<(), PeerMisbehaved> {
        const W: &str = "group state";
        for (id, rec) in &self.members {
            if *id != rec.id {
                return Err(broken(W, "member key is not the record's id"));
            }
            rec.check()?;
        }
        for (addr, p) in &self.keyring {
            if *addr != p.addr.to_lowercase() || *addr != p.addr {
                return Err(broken(W, "keyring key is not the lower-cased address"));
            }
            p.check()?;
        }
        for (generation, k) in &self.account_keys {
            if *generation != k.generation {
                return Err(broken(W, "account key stored under another generation"));
            }
            k.check()?;
        }
        Ok(())
    }
}
