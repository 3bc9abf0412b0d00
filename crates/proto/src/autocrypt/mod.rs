//! Autocrypt Level 1 peer-state logic, pure and clock-free: header parsing
//! ([`header`]), the update algorithm ([`update`]), the encryption
//! recommendation ([`recommend`]) and reading received messages
//! ([`message`]). The replicated state itself lives in
//! [`crate::state::PeerState`].

pub mod header;
pub mod message;
pub mod recommend;
pub mod update;

pub use header::{AutocryptHeader, HeaderError};
pub use recommend::{aggregate, recommend, KeySource, PeerRecommendation, Recommendation};
pub use update::{effective_date, observe, Observation};
