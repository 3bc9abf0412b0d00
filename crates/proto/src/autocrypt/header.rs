//! The `Autocrypt` and `Autocrypt-Gossip` header values (Autocrypt Level 1
//! §"The Autocrypt Header"): parsing, selection and formatting.
//!
//! Rules applied:
//! * attributes are `name=value` separated by `;`, surrounding whitespace
//!   (including folding) is ignored;
//! * `addr` and `keydata` are mandatory, `keydata` must be the last
//!   attribute; its value is base64 (whitespace inside is ignored);
//! * `prefer-encrypt=mutual` means mutual, any other value nopreference;
//! * an unknown attribute whose name does not start with `_` (a critical
//!   attribute) makes the header invalid; `_`-attributes are ignored;
//! * a header over 10 KiB (counting `Autocrypt: ` and folding) is invalid;
//! * for `Autocrypt`, `addr` must equal the `From` address
//!   (case-insensitively), and more than one valid header makes all invalid.

use base64::Engine as _;
use thiserror::Error;

use crate::state::PreferEncrypt;

/// Largest header accepted, name and folding included (10 KiB).
pub const MAX_HEADER_BYTES: usize = 10 * 1024;

/// Name of the Autocrypt header.
pub const AUTOCRYPT: &str = "Autocrypt";
/// Name of the gossip header.
pub const AUTOCRYPT_GOSSIP: &str = "Autocrypt-Gossip";

/// Why a header value is invalid.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Bigger than [`MAX_HEADER_BYTES`].
    #[error("header is {0} bytes; the limit is 10 KiB")]
    TooLarge(usize),
    /// A mandatory attribute is missing.
    #[error("missing attribute {0}")]
    Missing(&'static str),
    /// An attribute is not `name=value`, or appears twice.
    #[error("malformed attribute {0:?}")]
    Malformed(String),
    /// An unknown critical attribute.
    #[error("unsupported critical attribute {0:?}")]
    Critical(String),
    /// An attribute follows `keydata`.
    #[error("keydata is not the last attribute")]
    KeydataNotLast,
    /// `keydata` is not base64 or is empty.
    #[error("keydata is not valid base64")]
    BadKeydata,
    /// `addr` is not a plausible address.
    #[error("addr {0:?} is not an e-mail address")]
    BadAddr(String),
    /// `addr` differs from the From address.
    #[error("addr {addr:?} does not match the From address {from:?}")]
    AddrMismatch {
        /// The header's addr.
        addr: String,
        /// The From address.
        from: String,
    },
    /// The OpenPGP key inside is unusable.
    #[error("keydata is not a usable OpenPGP key")]
    BadKey,
}

/// A syntactically valid header value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutocryptHeader {
    /// The `addr` attribute, canonicalised (trimmed, lower-case).
    pub addr: String,
    /// The `prefer-encrypt` attribute.
    pub prefer_encrypt: PreferEncrypt,
    /// The decoded `keydata`.
    pub keydata: Vec<u8>,
}

/// Canonicalises an address as Level 1 does: trimmed and lower-cased.
pub fn canonical_addr(addr: &str) -> String {
    addr.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase()
}

/// Whether `addr` looks like `local@domain` (no spaces, one `@`, both sides non-empty).
pub fn plausible_addr(addr: &str) -> bool {
    match addr.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !addr
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','))
        }
        None => false,
    }
}

impl AutocryptHeader {
    /// Parses a header value (`name` is the header name, used for the size limit).
    pub fn parse(name: &str, value: &str) -> Result<Self, HeaderError> {
        let size = name.len() + 2 + value.len();
        if size > MAX_HEADER_BYTES {
            return Err(HeaderError::TooLarge(size));
        }
        let mut addr = None;
        let mut prefer = None;
        let mut keydata = None;
        for attr in value.split(';') {
            let attr = attr.trim();
            if attr.is_empty() {
                continue;
            }
            if keydata.is_some() {
                return Err(HeaderError::KeydataNotLast);
            }
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| HeaderError::Malformed(short(attr)))?;
            let (k, v) = (k.trim(), v.trim());
            match k {
                "addr" if addr.is_none() => addr = Some(canonical_addr(v)),
                "prefer-encrypt" if prefer.is_none() => {
                    prefer = Some(if v == "mutual" {
                        PreferEncrypt::Mutual
                    } else {
                        PreferEncrypt::NoPreference
                    })
                }
                "keydata" => keydata = Some(v),
                "addr" | "prefer-encrypt" => return Err(HeaderError::Malformed(k.to_owned())),
                _ if k.starts_with('_') => {}
                _ => return Err(HeaderError::Critical(short(k))),
            }
        }
        let addr = addr.ok_or(HeaderError::Missing("addr"))?;
        if !plausible_addr(&addr) {
            return Err(HeaderError::BadAddr(short(&addr)));
        }
        let b64: String = keydata
            .ok_or(HeaderError::Missing("keydata"))?
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let keydata = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| HeaderError::BadKeydata)?;
        if keydata.is_empty() {
            return Err(HeaderError::BadKeydata);
        }
        Ok(AutocryptHeader {
            addr,
            prefer_encrypt: prefer.unwrap_or_default(),
            keydata,
        })
    }

    /// The keydata as stored in the keyring: standard base64, no whitespace.
    pub fn keydata_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.keydata)
    }

    /// Formats a header value: `addr=...; [prefer-encrypt=mutual; ]keydata=...`.
    pub fn to_value(&self) -> String {
        let prefer = match self.prefer_encrypt {
            PreferEncrypt::Mutual => "prefer-encrypt=mutual; ",
            PreferEncrypt::NoPreference => "",
        };
        format!("addr={}; {prefer}keydata={}", self.addr, self.keydata_b64())
    }

    /// [`Self::to_value`] folded for a header field: the keydata is broken
    /// into lines of at most 76 characters, each continuation line starting
    /// with a space (`eol` is the line ending to use, `"\r\n"` on the wire).
    pub fn to_folded_value(&self, eol: &str) -> String {
        let value = self.to_value();
        let Some(at) = value.find("keydata=") else {
            return value;
        };
        let (head, rest) = value.split_at(at + "keydata=".len());
        let mut out = head.to_owned();
        for chunk in rest.as_bytes().chunks(76) {
            out.push_str(eol);
            out.push(' ');
            out.push_str(&String::from_utf8_lossy(chunk));
        }
        out
    }
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Picks the one valid `Autocrypt` header of a message from `from`.
///
/// Each value is parsed; a header whose `addr` differs from `from`, or whose
/// keydata `key_ok` rejects, is invalid. If exactly one is valid it is
/// returned; none or several give `None` (several valid headers are an
/// error, and all are discarded).
pub fn select_autocrypt<'a>(
    values: impl IntoIterator<Item = &'a str>,
    from: &str,
    key_ok: impl Fn(&[u8]) -> bool,
) -> Option<AutocryptHeader> {
    let from = canonical_addr(from);
    let mut valid = values.into_iter().filter_map(|v| {
        AutocryptHeader::parse(AUTOCRYPT, v)
            .ok()
            .filter(|h| h.addr == from && key_ok(&h.keydata))
    });
    let first = valid.next()?;
    match valid.next() {
        None => Some(first),
        Some(_) => None,
    }
}

/// Picks the valid `Autocrypt-Gossip` headers of a message.
///
/// `recipients` are the addresses of the message's To, Cc and Reply-To
/// headers; `None` means the caller vouches for every gossiped address
/// (`sma keys observe --gossip` without a message). A gossip header for an
/// address not among the recipients is ignored, as are addresses with more
/// than one valid gossip header in the same message.
pub fn select_gossip<'a>(
    values: impl IntoIterator<Item = &'a str>,
    recipients: Option<&[String]>,
    key_ok: impl Fn(&[u8]) -> bool,
) -> Vec<AutocryptHeader> {
    let recipients: Option<Vec<String>> =
        recipients.map(|r| r.iter().map(|a| canonical_addr(a)).collect());
    let mut out: Vec<AutocryptHeader> = Vec::new();
    let mut doubled: Vec<String> = Vec::new();
    for v in values {
        let Ok(h) = AutocryptHeader::parse(AUTOCRYPT_GOSSIP, v) else {
            continue;
        };
        if recipients.as_ref().is_some_and(|r| !r.contains(&h.addr)) || !key_ok(&h.keydata) {
            continue;
        }
        if out.iter().any(|o| o.addr == h.addr) {
            doubled.push(h.addr.clone());
        }
        out.push(h);
    }
    out.retain(|h| !doubled.contains(&h.addr));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "xjMEWJe8DxYJKwYBBAHaRw8BAQdA";

    fn ok(_: &[u8]) -> bool {
        true
    }

    #[test]
    fn parses_the_spec_example_shape() {
        let v = format!("addr=Alice@Example.org; prefer-encrypt=mutual; keydata=\r\n {KEY}");
        let h = AutocryptHeader::parse(AUTOCRYPT, &v).unwrap();
        assert_eq!(h.addr, "alice@example.org");
        assert_eq!(h.prefer_encrypt, PreferEncrypt::Mutual);
        assert_eq!(h.keydata_b64(), KEY);
        let round = AutocryptHeader::parse(AUTOCRYPT, &h.to_folded_value("\r\n")).unwrap();
        assert_eq!(round, h);
    }

    #[test]
    fn attribute_rules() {
        let parse = |v: &str| AutocryptHeader::parse(AUTOCRYPT, v);
        // Unknown non-critical attribute: ignored.
        assert!(parse(&format!("addr=a@b.org; _x=1; keydata={KEY}")).is_ok());
        // Unknown critical attribute: invalid.
        assert_eq!(
            parse(&format!("addr=a@b.org; x=1; keydata={KEY}")),
            Err(HeaderError::Critical("x".into()))
        );
        // keydata must be last.
        assert_eq!(
            parse(&format!("keydata={KEY}; addr=a@b.org")),
            Err(HeaderError::KeydataNotLast)
        );
        assert_eq!(
            parse(&format!("addr=a@b.org; keydata={KEY}; _x=1")),
            Err(HeaderError::KeydataNotLast)
        );
        // Other prefer-encrypt values mean nopreference.
        let h = parse(&format!("addr=a@b.org; prefer-encrypt=yes; keydata={KEY}")).unwrap();
        assert_eq!(h.prefer_encrypt, PreferEncrypt::NoPreference);
        assert_eq!(
            parse(&format!("prefer-encrypt=mutual; keydata={KEY}")),
            Err(HeaderError::Missing("addr"))
        );
        assert_eq!(parse("addr=a@b.org"), Err(HeaderError::Missing("keydata")));
        assert_eq!(
            parse("addr=a@b.org; keydata=!!!"),
            Err(HeaderError::BadKeydata)
        );
        assert!(matches!(
            parse(&format!("addr=a@b.org; keydata={}", "A".repeat(10_240))),
            Err(HeaderError::TooLarge(_))
        ));
    }

    #[test]
    fn selection_rules() {
        let a = format!("addr=alice@example.org; keydata={KEY}");
        let b = format!("addr=bob@example.org; keydata={KEY}");
        // addr must match From, case-insensitively.
        assert!(select_autocrypt([a.as_str()], "ALICE@example.org", ok).is_some());
        assert!(select_autocrypt([b.as_str()], "alice@example.org", ok).is_none());
        // An invalid second header does not hurt; a valid second one voids both.
        assert!(select_autocrypt([a.as_str(), b.as_str()], "alice@example.org", ok).is_some());
        assert!(select_autocrypt([a.as_str(), a.as_str()], "alice@example.org", ok).is_none());
        // A rejected key makes the header invalid.
        assert!(select_autocrypt([a.as_str()], "alice@example.org", |_| false).is_none());
        // Gossip: only for recipients, one per address.
        let rcpt = vec!["Bob@example.org".to_owned()];
        let g = select_gossip([a.as_str(), b.as_str()], Some(&rcpt), ok);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].addr, "bob@example.org");
        assert!(select_gossip([b.as_str(), b.as_str()], Some(&rcpt), ok).is_empty());
        assert_eq!(select_gossip([a.as_str(), b.as_str()], None, ok).len(), 2);
    }
}
