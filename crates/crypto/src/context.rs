//! Domain separation of data signatures.
//!
//! Every data signature sma makes carries a hashed notation
//! `context@sma.invalid` naming what it is for, and every verification
//! requires the expected value. A signature made for one purpose (an
//! announcement, say) therefore never verifies as another (a sealed
//! payload, a replicated op or a welcome), even if an attacker re-wraps the
//! signed bytes. Key self-signatures carry no context: they are ordinary
//! OpenPGP certifications that other mail programs read.

use pgp::packet::{Notation, Signature, Subpacket, SubpacketData};

use crate::error::{internal, CryptoError};

/// Name of the notation that carries the context.
pub const CONTEXT_NOTATION: &str = "context@sma.invalid";

/// What a data signature is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigContext {
    /// A detached signature over an announcement document.
    Announcement,
    /// The signature inside a sealed device message.
    Sealed,
    /// The detached signature of one replicated op.
    Op,
    /// The signature inside the pairing welcome's OpenPGP layer.
    Welcome,
    /// Signatures made by tests or tools outside the protocol.
    Other,
}

impl SigContext {
    /// The notation value (ASCII).
    pub fn as_str(self) -> &'static str {
        match self {
            SigContext::Announcement => "sma-announce",
            SigContext::Sealed => "sma-sealed",
            SigContext::Op => "sma-op",
            SigContext::Welcome => "sma-welcome",
            SigContext::Other => "sma-other",
        }
    }

    /// The hashed notation subpacket naming this context.
    pub(crate) fn subpacket(self) -> Result<Subpacket, CryptoError> {
        Subpacket::regular(SubpacketData::Notation(Notation {
            readable: true,
            name: CONTEXT_NOTATION.as_bytes().to_vec().into(),
            value: self.as_str().as_bytes().to_vec().into(),
        }))
        .map_err(internal)
    }

    /// Whether `sig` carries exactly this context in its hashed area (and
    /// no other context notation anywhere).
    pub(crate) fn marks(self, sig: &Signature) -> bool {
        let Some(config) = sig.config() else {
            return false;
        };
        let mut hashed = config
            .hashed_subpackets
            .iter()
            .filter_map(|p| match &p.data {
                SubpacketData::Notation(n) if n.name.as_ref() == CONTEXT_NOTATION.as_bytes() => {
                    Some(n.value.as_ref())
                }
                _ => None,
            });
        let first = hashed.next();
        let unhashed = config.unhashed_subpackets.iter().any(|p| {
            matches!(&p.data, SubpacketData::Notation(n) if n.name.as_ref() == CONTEXT_NOTATION.as_bytes())
        });
        first == Some(self.as_str().as_bytes()) && hashed.next().is_none() && !unhashed
    }
}
