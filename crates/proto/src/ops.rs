//! Replicated ops as their origin signed them.
//!
//! An op travels with its origin's signature over the exact bytes of its
//! JSON, so any member can relay it and no relay can forge or alter it
//! (PROTOCOL 10.5). The bytes are kept as they arrived: an op of a change
//! kind this version cannot read is still verified, stored and relayed.
//!
//! Wire form: `{"op": {"origin":…,"seq":…,"stamp":…,"change":…}, "sig": "<base64>"}`,
//! the signature a binary OpenPGP signature with the `op` context.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sma_crypto::{Certificate, DeviceKey, SigContext};

use crate::error::{InvalidMessage, PeerMisbehaved, ProtoError};
use crate::hlc::Hlc;
use crate::ids::DeviceId;
use crate::state::Change;

/// Most bytes of one op's JSON.
pub const MAX_OP_BYTES: usize = 512 * 1024;

/// Which op: its origin and its sequence number there.
pub type OpId = (DeviceId, u64);

/// One op with its origin's signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedOp {
    raw: String,
    sig: Vec<u8>,
    origin: DeviceId,
    seq: u64,
    stamp: Hlc,
    change: Option<Change>,
}

#[derive(Deserialize)]
struct OpHead<'a> {
    origin: DeviceId,
    seq: u64,
    stamp: Hlc,
    #[serde(borrow)]
    change: &'a RawValue,
}

#[derive(Serialize)]
struct OpOut<'a> {
    origin: &'a DeviceId,
    seq: u64,
    stamp: &'a Hlc,
    change: &'a Change,
}

impl SignedOp {
    /// Builds and signs a new op of ours.
    pub fn sign(
        key: &DeviceKey,
        origin: &DeviceId,
        seq: u64,
        stamp: Hlc,
        change: Change,
    ) -> Result<SignedOp, ProtoError> {
        let raw = serde_json::to_string(&OpOut {
            origin,
            seq,
            stamp: &stamp,
            change: &change,
        })
        .map_err(|e| ProtoError::ApiMisuse(format!("op does not serialise: {e}")))?;
        let sig = sma_crypto::sign_binary(key, raw.as_bytes(), SigContext::Op)?;
        Ok(SignedOp {
            raw,
            sig,
            origin: origin.clone(),
            seq,
            stamp,
            change: Some(change),
        })
    }

    /// Reads an op from its JSON text and signature bytes (nothing is
    /// verified yet). A change this version cannot read gives an op whose
    /// [`SignedOp::change`] is `None`.
    pub fn from_parts(raw: String, sig: Vec<u8>) -> Result<SignedOp, InvalidMessage> {
        if raw.len() > MAX_OP_BYTES {
            return Err(InvalidMessage::TooLarge {
                size: raw.len(),
                cap: MAX_OP_BYTES,
            });
        }
        let head: OpHead<'_> = serde_json::from_str(&raw).map_err(|e| {
            let mut s = e.to_string();
            s.truncate(120);
            InvalidMessage::Payload(s)
        })?;
        let change = serde_json::from_str::<Change>(head.change.get()).ok();
        let (origin, seq, stamp) = (head.origin, head.seq, head.stamp);
        Ok(SignedOp {
            raw,
            sig,
            origin,
            seq,
            stamp,
            change,
        })
    }

    /// Checks the origin's signature.
    pub fn verify(&self, origin_cert: &Certificate) -> Result<(), PeerMisbehaved> {
        sma_crypto::verify_binary(origin_cert, self.raw.as_bytes(), &self.sig, SigContext::Op)
            .map_err(PeerMisbehaved::Crypto)
    }

    /// The rules of PROTOCOL 6.5 for ops: a seq of at least 1, a stamp by
    /// the origin, and a valid value (when this version can read it).
    pub fn check_rules(&self) -> Result<(), PeerMisbehaved> {
        if self.seq == 0 {
            return Err(PeerMisbehaved::rule("op", "seq 0"));
        }
        if self.stamp.device != self.origin {
            return Err(PeerMisbehaved::rule("op", "stamp names another device"));
        }
        match &self.change {
            Some(change) => change.check(),
            None => Ok(()),
        }
    }

    /// Whether the op has a signature (ops written by version 1 had none
    /// until their origin signs them on first use).
    pub fn is_signed(&self) -> bool {
        !self.sig.is_empty()
    }

    /// The device that made it.
    pub fn origin(&self) -> &DeviceId {
        &self.origin
    }

    /// Its sequence number at the origin.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Its id.
    pub fn id(&self) -> OpId {
        (self.origin.clone(), self.seq)
    }

    /// Its stamp.
    pub fn stamp(&self) -> &Hlc {
        &self.stamp
    }

    /// The change, if this version can read its kind.
    pub fn change(&self) -> Option<&Change> {
        self.change.as_ref()
    }

    /// The JSON text the signature covers.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Length of its wire form, without building it.
    pub fn wire_len(&self) -> usize {
        self.raw.len() + self.sig.len().div_ceil(3) * 4 + 20
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    op: &'a RawValue,
    sig: String,
}

#[derive(Deserialize)]
struct WireIn {
    op: Box<RawValue>,
    sig: String,
}

impl Serialize for SignedOp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let op: &RawValue = serde_json::from_str(&self.raw).map_err(serde::ser::Error::custom)?;
        WireOut {
            op,
            sig: base64::engine::general_purpose::STANDARD.encode(&self.sig),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SignedOp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SignedOp, D::Error> {
        let wire = WireIn::deserialize(d)?;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(wire.sig.as_bytes())
            .map_err(serde::de::Error::custom)?;
        SignedOp::from_parts(wire.op.get().to_owned(), sig).map_err(serde::de::Error::custom)
    }
}

/// Reads a JSON array of signed ops leniently: an element that is not a
/// readable signed op is skipped (logged), the rest are kept.
pub fn lenient_ops<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SignedOp>, D::Error> {
    let raw: Vec<&'de RawValue> = Deserialize::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|v| match serde_json::from_str::<SignedOp>(v.get()) {
            Ok(op) => Some(op),
            Err(e) => {
                tracing::debug!(error = %e, "skipping an element that is not a signed op");
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::PeerState;

    fn dev(n: u8) -> DeviceId {
        DeviceId::parse(&format!("{n:016x}")).unwrap()
    }

    fn key(n: u8) -> DeviceKey {
        use rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(n as u64);
        DeviceKey::generate(&mut rng, &dev(n).to_string(), 1_700_000_000).unwrap()
    }

    fn stamp(n: u8) -> Hlc {
        Hlc {
            ms: 5,
            counter: 0,
            device: dev(n),
        }
    }

    #[test]
    fn a_signed_op_round_trips_and_verifies_only_unaltered() {
        let k = key(1);
        let op = SignedOp::sign(
            &k,
            &dev(1),
            1,
            stamp(1),
            Change::Peer(PeerState::new("a@x")),
        )
        .unwrap();
        let json = serde_json::to_string(&op).unwrap();
        let back: SignedOp = serde_json::from_str(&json).unwrap();
        assert_eq!(back, op);
        back.verify(&k.certificate()).unwrap();
        back.check_rules().unwrap();
        // A relay that alters one byte of the op is caught.
        let forged = json.replace("a@x", "b@x");
        let forged: SignedOp = serde_json::from_str(&forged).unwrap();
        assert!(forged.verify(&k.certificate()).is_err());
        // Another device's key does not verify it.
        assert!(back.verify(&key(2).certificate()).is_err());
    }

    #[test]
    fn an_unknown_change_kind_is_kept_verbatim() {
        let k = key(1);
        let raw = r#"{"origin":"0000000000000001","seq":2,"stamp":{"ms":5,"counter":0,"device":"0000000000000001"},"change":{"calendar":{"x":1}}}"#;
        let sig = sma_crypto::sign_binary(&k, raw.as_bytes(), SigContext::Op).unwrap();
        let op = SignedOp::from_parts(raw.into(), sig).unwrap();
        assert!(op.change().is_none());
        op.verify(&k.certificate()).unwrap();
        let again: SignedOp = serde_json::from_str(&serde_json::to_string(&op).unwrap()).unwrap();
        assert_eq!(again.raw(), raw, "relayed byte for byte");
    }

    #[test]
    fn rules_of_6_5_reject_bad_ops() {
        let k = key(1);
        let seq0 = SignedOp::sign(
            &k,
            &dev(1),
            0,
            stamp(1),
            Change::Peer(PeerState::new("a@x")),
        )
        .unwrap();
        assert!(seq0.check_rules().is_err());
        let other = SignedOp::sign(
            &k,
            &dev(1),
            1,
            stamp(2),
            Change::Peer(PeerState::new("a@x")),
        )
        .unwrap();
        assert!(other.check_rules().is_err(), "stamp by another device");
        let empty =
            SignedOp::sign(&k, &dev(1), 1, stamp(1), Change::Peer(PeerState::new(""))).unwrap();
        assert!(empty.check_rules().is_err());
    }
}
