//! # sma — the Shared MUAA Messaging Archive library
//!
//! Lets every mail program on every device of one email account find each
//! other, pair with a short code, and keep their Autocrypt state in sync,
//! using only dedicated folders on the account's IMAP server.
//!
//! This crate drives the sans-IO protocol core (`sma-proto`) over any
//! [`sma_imap::Transport`] (the real IMAP session, a JMAP session from
//! `sma-jmap` — [`Session`] is either — or a simulated server),
//! with a SQLite store (`sma-store`) per device home. Front ends — the `sma`
//! command-line program and the JSON-RPC server — are thin layers over
//! [`Device`] and [`init::init`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), sma::Error> {
//! use sma::{Device, Password};
//! let mut dev = Device::open(std::path::Path::new("/home/me/.local/share/sma/alice"))?;
//! let password = Password::new("secret");
//! let mut session = dev.connect(&password).await?;
//! let report = dev.sync(&mut session).await?;
//! println!("applied {} ops, sent {} messages", report.applied, report.sent);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod announce;
mod bench_hooks;
pub mod clock;
pub mod config;
mod deletion;
mod device;
mod error;
pub mod events;
pub mod expiry;
mod inbox;
pub mod init;
mod join;
pub mod keys;
pub mod lifecycle;
mod login_hint;
pub mod oauth2;
mod outbound;
pub mod pair;
pub mod providers;
pub mod round;
pub mod session;
pub mod settings;
pub mod status;
mod watch;

pub use announce::SeenAnnouncement;
pub use config::{DeleteBehaviour, Detection, Role, ServerConfig};
pub use deletion::Deletion;
pub use device::{Device, DeviceInfo, STORE_FILE};
pub use error::{Error, ErrorKind, Result};
pub use events::{AppMessage, Event};
pub use outbound::{SendReport, APP_INBOX_CAP};
pub use session::{Session, SessionConfig};
pub use sma_crypto::PairingCode;
pub use sma_imap::{ImapSession, Password};
pub use sma_proto::DeviceId;
