//! The first digit of a pairing code: drawn unlike the codes of requests
//! other members left waiting for the same joiner (PROTOCOL 9.1), so the
//! joiner can tell the requests apart.

use std::collections::BTreeSet;

use sma_crypto::PairingCode;
use sma_imap::{ImapError, Transport};
use sma_proto::envelope::Kind;
use sma_proto::payload::PairHello;
use sma_proto::DeviceId;

use crate::error::{Error, Result};
use crate::pair::{find_pairing_in, Found};

/// The first digits (selectors) of the requests other members left waiting
/// in the joiner's inbox `folder`. A code drawn with another first digit
/// lets the joiner tell the requests apart (PROTOCOL 9.1).
pub(crate) async fn waiting_selectors<T: Transport>(
    t: &mut T,
    folder: &str,
    me: &DeviceId,
) -> Result<BTreeSet<u8>> {
    let hellos: Vec<Found<PairHello>> =
        match find_pairing_in(t, folder, Kind::PairHello, None).await {
            Ok(found) => found,
            Err(Error::Imap(ImapError::NoSuchFolder { .. })) => Vec::new(),
            Err(e) => return Err(e),
        };
    Ok(hellos
        .iter()
        .filter(|h| &h.payload.member_id != me)
        .map(|h| sma_proto::pairing::code_selector(&h.payload.attempt))
        .collect())
}

/// A fresh code whose first digit is none of `taken` (when some digit is
/// free): two members pairing one device at once then never share a
/// first digit, unless they draw at the same moment.
pub(crate) fn code_avoiding(
    rng: &mut (impl rand_core::CryptoRng + rand_core::RngCore),
    taken: &BTreeSet<u8>,
) -> PairingCode {
    let mut code = PairingCode::generate(rng);
    if taken.len() >= 10 {
        return code;
    }
    while taken.contains(&code.selector()) {
        code = PairingCode::generate(rng);
    }
    code
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_code_avoids_every_taken_first_digit_while_one_is_free() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for free in 0..10u8 {
            let taken: BTreeSet<u8> = (0..10).filter(|d| *d != free).collect();
            for _ in 0..20 {
                assert_eq!(code_avoiding(&mut rng, &taken).selector(), free);
            }
        }
        let all: BTreeSet<u8> = (0..10).collect();
        assert!(
            code_avoiding(&mut rng, &all).selector() < 10,
            "all taken: any code"
        );
        let seen: BTreeSet<u8> = (0..200)
            .map(|_| code_avoiding(&mut rng, &BTreeSet::new()).selector())
            .collect();
        assert_eq!(seen.len(), 10, "nothing taken: every first digit occurs");
    }
}
