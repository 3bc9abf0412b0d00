//! Cryptography for sma: the OpenPGP profile (device keys, the shared
//! Autocrypt account key, sealed device messages, detached signatures),
//! the pairing PAKE, and the Autocrypt Level 1 Setup Message.
//!
//! The crate is sans-IO and clock-free: every function that needs
//! randomness takes an `rng` (`CryptoRng + RngCore`), and every timestamp
//! is a parameter (unix seconds). It never panics on hostile input.
//!
//! * [`DeviceKey`] / [`Certificate`] / [`AccountKey`]: keys.
//! * [`seal`] / [`open`]: sign-then-encrypt device messages.
//! * [`sign_detached`] / [`verify_detached`]: announcement signatures.
//! * [`pake_start`], [`PakeStart::finish`], [`PairingKeys`]: pairing.
//! * [`PairingCode`] / [`SetupCode`]: human-transferred codes.
//! * [`setup_message`]: Autocrypt Setup Message export/import.
//!
//! Built on rPGP (`pgp` 0.21) and RustCrypto.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod armor;
mod cert;
mod code;
mod context;
mod error;
mod fingerprint;
mod keys;
mod pake;
mod pgpkey;
mod prefer;
mod seal;
mod secret;
pub mod setup_message;
mod sign;

pub use cert::{Certificate, DEVICE_USER_ID_PREFIX};
pub use code::{PairingCode, SetupCode};
pub use context::{SigContext, CONTEXT_NOTATION};
pub use error::{CodeError, CryptoError};
pub use fingerprint::Fingerprint;
pub use keys::{AccountKey, DeviceKey};
pub use pake::{
    joiner_identity, member_identity, pake_start, PairingKeys, PakeRole, PakeStart, Transcript,
    TRANSCRIPT_LABEL,
};
pub use prefer::PreferEncrypt;
pub use seal::{open, open_bytes, open_then_verify, seal, seal_at, seal_bytes};
pub use secret::SecretString;
pub use sign::{
    sign_binary, sign_detached, sign_detached_at, verify_binary, verify_detached,
    MAX_BINARY_SIGNATURE,
};
