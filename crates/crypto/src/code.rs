//! Human-transferred numeric codes: the 12-digit pairing code and the
//! 36-digit Autocrypt setup code.
//!
//! Both are held in zeroized memory and are redacted in `Debug`; they have
//! no `Display` on purpose, so they cannot end up in a log line by
//! accident. Use the explicit `display_grouped` to show them to a person.

use std::fmt;

use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::CodeError;

/// Draws `N` uniformly distributed ASCII decimal digits.
fn random_digits<const N: usize>(rng: &mut (impl CryptoRng + RngCore)) -> [u8; N] {
    let mut out = [b'0'; N];
    let mut i = 0;
    while i < N {
        let mut buf = [0u8; 32];
        rng.fill_bytes(&mut buf);
        for b in buf.iter() {
            // 250 = 25 * 10: rejection sampling keeps the digits uniform.
            if *b < 250 && i < N {
                out[i] = b'0' + (b % 10);
                i += 1;
            }
        }
        buf.zeroize();
    }
    out
}

/// Keeps the digits of `s` after removing the separators `strip` accepts;
/// anything else (letters, other punctuation) makes it malformed.
fn parse_digits<const N: usize>(
    s: &str,
    strip: impl Fn(char) -> bool,
) -> Result<[u8; N], CodeError> {
    let err = CodeError::Malformed { expected_digits: N };
    let mut out = [0u8; N];
    let mut n = 0;
    for c in s.chars() {
        if strip(c) {
            continue;
        }
        if !c.is_ascii_digit() || n == N {
            out.zeroize();
            return Err(err);
        }
        out[n] = c as u8;
        n += 1;
    }
    if n != N {
        out.zeroize();
        return Err(err);
    }
    Ok(out)
}

/// Groups digits by 4 with dashes: `1234-5678-9012`.
fn grouped(digits: &[u8]) -> String {
    let mut s = String::with_capacity(digits.len() + digits.len() / 4);
    for (i, chunk) in digits.chunks(4).enumerate() {
        if i > 0 {
            s.push('-');
        }
        s.extend(chunk.iter().map(|&b| char::from(b)));
    }
    s
}

/// The 12-digit pairing code a person moves from the member device to the
/// joining device. It is the SPAKE2 password.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PairingCode([u8; 12]);

impl PairingCode {
    /// A fresh code of 12 uniformly random digits.
    pub fn generate(rng: &mut (impl CryptoRng + RngCore)) -> Self {
        Self(random_digits(rng))
    }

    /// Parses a typed code: spaces and dashes are ignored; anything else
    /// must be exactly 12 ASCII digits, otherwise [`CodeError::Malformed`].
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        parse_digits(s, |c| c == ' ' || c == '-').map(Self)
    }

    /// The code as shown to a person: `1234-5678-9012`.
    pub fn display_grouped(&self) -> String {
        grouped(&self.0)
    }

    /// The 12 ASCII digits without separators (the SPAKE2 password).
    pub fn digits(&self) -> &[u8] {
        &self.0
    }

    /// The first digit, 0 to 9. It is not secret: it names which pairing
    /// request the code belongs to (PROTOCOL 9.1), the other 11 digits are
    /// the secret part.
    pub fn selector(&self) -> u8 {
        self.0[0] - b'0'
    }
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingCode(<redacted>)")
    }
}

/// The 36-digit Autocrypt Setup Code (`numeric9x4`) protecting an
/// Autocrypt Setup Message.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SetupCode([u8; 36]);

impl SetupCode {
    /// A fresh code of 36 uniformly random digits.
    pub fn generate(rng: &mut (impl CryptoRng + RngCore)) -> Self {
        Self(random_digits(rng))
    }

    /// Parses a typed or pasted code, with or without dashes, spaces, tabs
    /// or line breaks; otherwise exactly 36 ASCII digits.
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        parse_digits(s, |c| matches!(c, ' ' | '-' | '\t' | '\r' | '\n')).map(Self)
    }

    /// The code as shown to a person and as used as the OpenPGP passphrase:
    /// 9 groups of 4 digits joined by dashes (`1234-5678-...-3456`).
    pub fn display_grouped(&self) -> String {
        grouped(&self.0)
    }

    /// The first two digits (the `Passphrase-Begin` armor header).
    pub fn begin(&self) -> String {
        self.0[..2].iter().map(|&b| char::from(b)).collect()
    }

    /// The 36 ASCII digits without separators.
    pub fn digits(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SetupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SetupCode(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};

    #[test]
    fn pairing_code_generate_parse_display() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let c = PairingCode::generate(&mut rng);
        assert!(c.digits().iter().all(u8::is_ascii_digit));
        let shown = c.display_grouped();
        assert_eq!(shown.len(), 14);
        assert_eq!(PairingCode::parse(&shown).unwrap(), c);
        assert_eq!(format!("{c:?}"), "PairingCode(<redacted>)");
        assert!(!format!("{c:?}").contains(&shown[..4]));
    }

    #[test]
    fn pairing_code_parse_rules() {
        let want = PairingCode::parse("123456789012").unwrap();
        for ok in [
            "1234-5678-9012",
            "1234 5678 9012",
            " 1234-5678 9012 ",
            "12-34-56-78-90-12",
        ] {
            assert_eq!(PairingCode::parse(ok).unwrap(), want, "{ok}");
        }
        let malformed = CodeError::Malformed {
            expected_digits: 12,
        };
        for bad in [
            "",
            "12345678901",
            "1234567890123",
            "1234-5678-901a",
            "abcd-efgh-ijkl",
            "1234_5678_9012",
            "1234\n5678\n9012",
            "１２３４５６７８９０１２",
        ] {
            assert_eq!(PairingCode::parse(bad), Err(malformed.clone()), "{bad:?}");
        }
    }

    #[test]
    fn digits_are_roughly_uniform() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let mut counts = [0u32; 10];
        for _ in 0..1000 {
            for d in SetupCode::generate(&mut rng).digits() {
                counts[usize::from(d - b'0')] += 1;
            }
        }
        // 36000 digits, 3600 expected per bucket.
        assert!(
            counts.iter().all(|&n| (3300..3900).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn setup_code_parse_rules() {
        let s = "1742-0185-6197-1303-7016-8412-3581-4441-0597";
        let c = SetupCode::parse(s).unwrap();
        assert_eq!(c.display_grouped(), s);
        assert_eq!(c.begin(), "17");
        assert_eq!(SetupCode::parse(&s.replace('-', "")).unwrap(), c);
        assert_eq!(
            SetupCode::parse("1742-0185-6197\n1303-7016-8412\r\n3581 4441 0597").unwrap(),
            c
        );
        assert_eq!(format!("{c:?}"), "SetupCode(<redacted>)");
        let malformed = CodeError::Malformed {
            expected_digits: 36,
        };
        assert_eq!(SetupCode::parse(&s[..s.len() - 1]), Err(malformed.clone()));
        assert_eq!(SetupCode::parse(&format!("{s}1")), Err(malformed.clone()));
        assert_eq!(SetupCode::parse(&s.replace('7', "x")), Err(malformed));
    }
}
