//! Pairing: SPAKE2 (Ed25519 group) keyed by the pairing code, key
//! confirmation bound to a transcript, and the sealed welcome.
//!
//! The member is SPAKE2 side A with identity `sma1:member:<member id>`, the
//! joiner side B with `sma1:joiner:<joiner id>`; the password is the 12
//! ASCII digits of the code. After both SPAKE2 messages are known:
//!
//! ```text
//! salt      = SHA-256(transcript.bytes())
//! k_conf_M  = HKDF-SHA256(salt, K).expand("sma1 confirm member", 32)
//! k_conf_J  = HKDF-SHA256(salt, K).expand("sma1 confirm joiner", 32)
//! k_welcome = HKDF-SHA256(salt, K).expand("sma1 welcome", 32)
//! confirm_X = HMAC-SHA256(k_conf_X, transcript.bytes())
//! welcome   = nonce(24) || XChaCha20-Poly1305(k_welcome, nonce,
//!                                             aad = SHA-256(transcript.bytes()))
//! ```

use std::fmt;

use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{code::PairingCode, error::CryptoError, fingerprint::Fingerprint};

/// Domain separator, the first transcript element.
pub const TRANSCRIPT_LABEL: &str = "sma1-pairing";
const INFO_CONFIRM_MEMBER: &[u8] = b"sma1 confirm member";
const INFO_CONFIRM_JOINER: &[u8] = b"sma1 confirm joiner";
const INFO_WELCOME: &[u8] = b"sma1 welcome";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Which side of the pairing we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PakeRole {
    /// The existing member device (SPAKE2 side A), which shows the code.
    Member,
    /// The new device (SPAKE2 side B), into which the code is typed.
    Joiner,
}

/// SPAKE2 identity of the member: `sma1:member:<member id>`.
pub fn member_identity(member_id: &str) -> String {
    format!("sma1:member:{member_id}")
}

/// SPAKE2 identity of the joiner: `sma1:joiner:<joiner id>`.
pub fn joiner_identity(joiner_id: &str) -> String {
    format!("sma1:joiner:{joiner_id}")
}

/// Everything both sides must agree on; key confirmation fails if any
/// field differs between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// The account address.
    pub account: String,
    /// The pairing attempt id (32 lower-case hex digits).
    pub attempt: String,
    /// Device id of the member.
    pub member_id: String,
    /// Device id of the joiner.
    pub joiner_id: String,
    /// Fingerprint of the member's device certificate.
    pub member_fpr: Fingerprint,
    /// Fingerprint of the joiner's device certificate.
    pub joiner_fpr: Fingerprint,
    /// The member's SPAKE2 message (side A, as sent).
    pub msg_member: Vec<u8>,
    /// The joiner's SPAKE2 message (side B, as sent).
    pub msg_joiner: Vec<u8>,
}

impl Transcript {
    /// Canonical encoding: each element as a u32 big-endian length followed
    /// by its bytes, in this order: `"sma1-pairing"`, account, attempt,
    /// member id, joiner id, member fingerprint, joiner fingerprint (each
    /// as 40/64 upper-case hex ASCII characters), member message, joiner
    /// message.
    pub fn bytes(&self) -> Vec<u8> {
        let member_fpr = self.member_fpr.to_hex();
        let joiner_fpr = self.joiner_fpr.to_hex();
        let parts: [&[u8]; 9] = [
            TRANSCRIPT_LABEL.as_bytes(),
            self.account.as_bytes(),
            self.attempt.as_bytes(),
            self.member_id.as_bytes(),
            self.joiner_id.as_bytes(),
            member_fpr.as_bytes(),
            joiner_fpr.as_bytes(),
            &self.msg_member,
            &self.msg_joiner,
        ];
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
        for p in parts {
            // Elements longer than 4 GiB cannot occur (messages are capped
            // far below); saturate rather than panic.
            let len = u32::try_from(p.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    /// SHA-256 of [`Transcript::bytes`].
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.bytes()).into()
    }
}

/// One side's SPAKE2 state between sending its message and receiving the
/// peer's. Consumed by [`PakeStart::finish`]; single use.
pub struct PakeStart {
    role: PakeRole,
    state: Spake2<Ed25519Group>,
    outbound: Vec<u8>,
}

impl fmt::Debug for PakeStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PakeStart")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Starts SPAKE2 for `role`. Returns the state and the message to send to
/// the peer (33 bytes: side byte + curve point).
pub fn pake_start(
    rng: &mut (impl CryptoRng + RngCore),
    role: PakeRole,
    code: &PairingCode,
    member_id: &str,
    joiner_id: &str,
) -> (PakeStart, Vec<u8>) {
    let password = Password::new(code.digits());
    let id_a = Identity::new(member_identity(member_id).as_bytes());
    let id_b = Identity::new(joiner_identity(joiner_id).as_bytes());
    let (state, outbound) = match role {
        PakeRole::Member => Spake2::<Ed25519Group>::start_a_with_rng(&password, &id_a, &id_b, rng),
        PakeRole::Joiner => Spake2::<Ed25519Group>::start_b_with_rng(&password, &id_a, &id_b, rng),
    };
    (
        PakeStart {
            role,
            state,
            outbound: outbound.clone(),
        },
        outbound,
    )
}

impl PakeStart {
    /// Our role.
    pub fn role(&self) -> PakeRole {
        self.role
    }

    /// Completes SPAKE2 with the peer's message and derives the pairing
    /// keys, salted with the transcript hash.
    ///
    /// The transcript must contain our own outbound message and `inbound`
    /// in the right slots, otherwise [`CryptoError::InvalidArgument`]. A
    /// malformed peer message gives [`CryptoError::Malformed`]. A wrong
    /// code is *not* detected here: it shows up as a failing
    /// [`PairingKeys::verify_tag`].
    pub fn finish(
        self,
        inbound: &[u8],
        transcript: &Transcript,
    ) -> Result<PairingKeys, CryptoError> {
        let (ours, theirs) = match self.role {
            PakeRole::Member => (&transcript.msg_member, &transcript.msg_joiner),
            PakeRole::Joiner => (&transcript.msg_joiner, &transcript.msg_member),
        };
        if *ours != self.outbound || theirs != inbound {
            return Err(CryptoError::InvalidArgument(
                "transcript does not contain this exchange's SPAKE2 messages".into(),
            ));
        }
        let key = Zeroizing::new(
            self.state
                .finish(inbound)
                .map_err(|e| CryptoError::Malformed(format!("SPAKE2 message: {e}")))?,
        );
        let salt = transcript.hash();
        let hk = Hkdf::<Sha256>::new(Some(&salt), &key);
        let mut keys = PairingKeys {
            confirm_member: [0; 32],
            confirm_joiner: [0; 32],
            welcome: [0; 32],
        };
        let expand = |info: &[u8], out: &mut [u8; 32]| {
            hk.expand(info, out)
                .map_err(|_| CryptoError::internal_without_source("HKDF expand"))
        };
        expand(INFO_CONFIRM_MEMBER, &mut keys.confirm_member)?;
        expand(INFO_CONFIRM_JOINER, &mut keys.confirm_joiner)?;
        expand(INFO_WELCOME, &mut keys.welcome)?;
        Ok(keys)
    }
}

/// Keys derived from a finished SPAKE2 run. Zeroized on drop; `Debug`
/// prints nothing secret.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct PairingKeys {
    confirm_member: [u8; 32],
    confirm_joiner: [u8; 32],
    welcome: [u8; 32],
}

impl fmt::Debug for PairingKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingKeys(<redacted>)")
    }
}

impl PairingKeys {
    fn mac(&self, role: PakeRole) -> Hmac<Sha256> {
        let key = match role {
            PakeRole::Member => &self.confirm_member,
            PakeRole::Joiner => &self.confirm_joiner,
        };
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
    }

    /// The key-confirmation tag that `role` sends:
    /// HMAC-SHA256(k_conf_role, transcript bytes).
    pub fn confirm_tag(&self, role: PakeRole, transcript: &Transcript) -> [u8; 32] {
        let mut mac = self.mac(role);
        mac.update(&transcript.bytes());
        mac.finalize().into_bytes().into()
    }

    /// Checks, in constant time, the tag received from the peer playing
    /// `role`. Any mismatch (wrong code, different transcript, tampering,
    /// wrong length) is [`CryptoError::CodeRejected`].
    pub fn verify_tag(
        &self,
        role: PakeRole,
        transcript: &Transcript,
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        let mut mac = self.mac(role);
        mac.update(&transcript.bytes());
        mac.verify_slice(tag).map_err(|_| CryptoError::CodeRejected)
    }

    /// Seals the welcome payload: `nonce(24) || XChaCha20-Poly1305(k_welcome,
    /// aad = transcript hash)`.
    pub fn seal_welcome(
        &self,
        rng: &mut (impl CryptoRng + RngCore),
        transcript: &Transcript,
        plaintext: &[u8],
    ) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let aad = transcript.hash();
        let cipher = XChaCha20Poly1305::new((&self.welcome).into());
        // Encryption only fails for plaintexts beyond 256 GiB; the output
        // is then just the nonce, which `open_welcome` rejects.
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens [`PairingKeys::seal_welcome`] output. Too short →
    /// [`CryptoError::Malformed`]; failed authentication (modified, other
    /// keys or transcript) → [`CryptoError::Tampered`].
    pub fn open_welcome(
        &self,
        transcript: &Transcript,
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed("sealed welcome too short".into()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let aad = transcript.hash();
        let cipher = XChaCha20Poly1305::new((&self.welcome).into());
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| CryptoError::Tampered)
    }
}
