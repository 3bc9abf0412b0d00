//! The RFC 5322 envelope shared by every SMA message: building and defensive parsing.

mod header;

pub use header::{
    Kind, Marker, Recipient, MARKER_HEADER, MESSAGE_SIZE_CAP, PROTOCOL_VERSION, WELCOME_SIZE_CAP,
};

use base64::Engine as _;
use mail_parser::{MessageParser, MimeHeaders};

use crate::error::InvalidMessage;
use crate::timefmt;

/// The neutral subject every SMA message carries.
pub const SUBJECT: &str = "Autocrypt SMA message";
/// Media type of the signed announcement document.
pub const ANNOUNCE_TYPE: &str = "application/vnd.autocrypt-sma.announce+json";
/// Media type of pairing payloads.
pub const PAIRING_TYPE: &str = "application/vnd.autocrypt-sma.pairing+json";
/// Media type of removal notices.
pub const REMOVE_TYPE: &str = "application/vnd.autocrypt-sma.remove+json";

/// Media type of the plain JSON part of a message of `kind`.
fn plain_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Remove => REMOVE_TYPE,
        _ => PAIRING_TYPE,
    }
}

/// The body of an SMA message, by shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// `multipart/signed`: a JSON document and an armored detached signature over it.
    Signed {
        /// The signed document bytes.
        payload: Vec<u8>,
        /// Armored OpenPGP detached signature.
        signature: String,
    },
    /// A single JSON part (pairing messages, removal notices).
    Plain {
        /// The JSON bytes.
        payload: Vec<u8>,
    },
    /// PGP/MIME `multipart/encrypted`: an armored OpenPGP message.
    Encrypted {
        /// The armored OpenPGP message.
        armored: String,
    },
}

/// One SMA message: routing header, account, date and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The account address (From and To).
    pub account: String,
    /// Date in Unix seconds (0 when the header was missing or unparseable).
    pub date: u64,
    /// The marker header.
    pub marker: Marker,
    /// The body.
    pub body: Body,
}

impl Envelope {
    /// The Message-ID derived from the marker id.
    pub fn message_id_header(&self) -> String {
        message_id_for(&self.marker.id)
    }

    /// Serialises the message (CRLF line ends, 7-bit, base64 parts).
    pub fn to_bytes(&self) -> Vec<u8> {
        let boundary = format!("sma-{}", self.marker.id);
        let mut out = String::with_capacity(1024);
        let mut h = |name: &str, value: &str| {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        };
        h("From", &format!("<{}>", self.account));
        h("To", &format!("<{}>", self.account));
        h("Date", &timefmt::rfc5322(self.date));
        h("Subject", SUBJECT);
        h("Message-ID", &self.message_id_header());
        h("Auto-Submitted", "auto-generated");
        h(MARKER_HEADER, &self.marker.to_header_value());
        h("MIME-Version", "1.0");
        match &self.body {
            Body::Signed { payload, signature } => {
                h(
                    "Content-Type",
                    &format!(
                        "multipart/signed; protocol=\"application/pgp-signature\"; micalg=pgp-sha256; boundary=\"{boundary}\""
                    ),
                );
                out.push_str("\r\n");
                push_part(&mut out, &boundary, ANNOUNCE_TYPE, payload);
                push_text_part(&mut out, &boundary, "application/pgp-signature", signature);
                out.push_str(&format!("--{boundary}--\r\n"));
            }
            Body::Plain { payload } => {
                h("Content-Type", plain_type(self.marker.kind));
                h("Content-Transfer-Encoding", "base64");
                out.push_str("\r\n");
                push_base64(&mut out, payload);
            }
            Body::Encrypted { armored } => {
                h(
                    "Content-Type",
                    &format!(
                        "multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"{boundary}\""
                    ),
                );
                out.push_str("\r\n");
                push_text_part(
                    &mut out,
                    &boundary,
                    "application/pgp-encrypted",
                    "Version: 1",
                );
                push_text_part(&mut out, &boundary, "application/octet-stream", armored);
                out.push_str(&format!("--{boundary}--\r\n"));
            }
        }
        out.into_bytes()
    }

    /// Parses raw message bytes defensively. Never panics; every failure is
    /// an [`InvalidMessage`] the caller can log and skip.
    pub fn parse(raw: &[u8]) -> Result<Envelope, InvalidMessage> {
        if raw.len() > WELCOME_SIZE_CAP {
            return Err(InvalidMessage::TooLarge {
                size: raw.len(),
                cap: WELCOME_SIZE_CAP,
            });
        }
        let msg = MessageParser::default()
            .parse(raw)
            .ok_or(InvalidMessage::Unparseable)?;
        let marker_raw = msg
            .header_raw(MARKER_HEADER)
            .ok_or(InvalidMessage::NotSma)?;
        let marker = Marker::parse(&unfold(marker_raw))?;
        let cap = marker.kind.size_cap();
        if raw.len() > cap {
            return Err(InvalidMessage::TooLarge {
                size: raw.len(),
                cap,
            });
        }
        let account = msg
            .header_raw("From")
            .map(|f| {
                unfold(f)
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
            .unwrap_or_default();
        let date = msg
            .header_raw("Date")
            .and_then(|d| timefmt::parse_rfc5322(&unfold(d)))
            .unwrap_or(0);
        let find = |ctype: &str| -> Option<&[u8]> {
            msg.parts.iter().find_map(|p| {
                let ct = p.content_type()?;
                let full = match &ct.c_subtype {
                    Some(sub) => format!("{}/{}", ct.c_type, sub),
                    None => ct.c_type.to_string(),
                };
                full.eq_ignore_ascii_case(ctype).then(|| p.contents())
            })
        };
        let body = match marker.kind {
            Kind::Announce => Body::Signed {
                payload: find(ANNOUNCE_TYPE)
                    .ok_or(InvalidMessage::Missing("announcement part"))?
                    .to_vec(),
                signature: text(
                    find("application/pgp-signature")
                        .ok_or(InvalidMessage::Missing("signature part"))?,
                )?,
            },
            k if k.is_plain() => Body::Plain {
                payload: find(plain_type(k))
                    .ok_or(InvalidMessage::Missing("plain JSON part"))?
                    .to_vec(),
            },
            _ => Body::Encrypted {
                armored: text(
                    find("application/octet-stream")
                        .ok_or(InvalidMessage::Missing("encrypted part"))?,
                )?,
            },
        };
        Ok(Envelope {
            account,
            date,
            marker,
            body,
        })
    }
}

/// The Message-ID header value for a message id.
pub fn message_id_for(id: &crate::ids::MessageId) -> String {
    format!("<{id}@sma.invalid>")
}

/// Reads just the marker of a raw header block (for FETCH of headers only).
pub fn peek_marker(header_bytes: &[u8]) -> Result<Marker, InvalidMessage> {
    let msg = MessageParser::default()
        .parse_headers(header_bytes)
        .ok_or(InvalidMessage::Unparseable)?;
    let raw = msg
        .header_raw(MARKER_HEADER)
        .ok_or(InvalidMessage::NotSma)?;
    Marker::parse(&unfold(raw))
}

/// Reads the `Date` header of a raw header block, in Unix seconds.
pub fn peek_date(header_bytes: &[u8]) -> Option<u64> {
    let msg = MessageParser::default().parse_headers(header_bytes)?;
    timefmt::parse_rfc5322(&unfold(msg.header_raw("Date")?))
}

fn text(b: &[u8]) -> Result<String, InvalidMessage> {
    let s = std::str::from_utf8(b).map_err(|_| InvalidMessage::BadField("text part encoding"))?;
    Ok(s.replace("\r\n", "\n").trim_end().to_owned())
}

fn unfold(s: &str) -> String {
    s.replace("\r\n", "").replace('\n', "").trim().to_owned()
}

fn push_part(out: &mut String, boundary: &str, ctype: &str, bytes: &[u8]) {
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    ));
    push_base64(out, bytes);
}

fn push_text_part(out: &mut String, boundary: &str, ctype: &str, text: &str) {
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
    ));
    for line in text.lines() {
        out.push_str(line);
        out.push_str("\r\n");
    }
}

fn push_base64(out: &mut String, bytes: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    for chunk in b64.as_bytes().chunks(76) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, MessageId};

    fn marker(kind: Kind) -> Marker {
        Marker {
            kind,
            from: DeviceId::parse("0000000000000001").unwrap(),
            to: Recipient::Device(DeviceId::parse("0000000000000002").unwrap()),
            id: MessageId::parse(&"cd".repeat(16)).unwrap(),
        }
    }

    fn roundtrip(env: Envelope) {
        let bytes = env.to_bytes();
        assert!(bytes.iter().all(|b| b.is_ascii()));
        let back = Envelope::parse(&bytes).unwrap();
        assert_eq!(back, env);
        assert_eq!(peek_marker(&bytes).unwrap(), env.marker);
    }

    #[test]
    fn every_body_shape_roundtrips() {
        roundtrip(Envelope {
            account: "alice@example.org".into(),
            date: 1_795_702_318,
            marker: marker(Kind::Announce),
            body: Body::Signed {
                payload: br#"{"v":1}"#.to_vec(),
                signature: "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----"
                    .into(),
            },
        });
        roundtrip(Envelope {
            account: "alice@example.org".into(),
            date: 1_795_702_318,
            marker: marker(Kind::PairHello),
            body: Body::Plain {
                payload: vec![b'x'; 300],
            },
        });
        roundtrip(Envelope {
            account: "alice@example.org".into(),
            date: 1_795_702_318,
            marker: marker(Kind::Sync),
            body: Body::Encrypted {
                armored: "-----BEGIN PGP MESSAGE-----\n\nwcBMA\n-----END PGP MESSAGE-----".into(),
            },
        });
    }

    #[test]
    fn hostile_inputs_are_errors_not_panics() {
        assert!(Envelope::parse(b"").is_err());
        assert!(Envelope::parse(b"\x00\xff\xfe garbage").is_err());
        assert_eq!(
            Envelope::parse(b"From: a@b\r\nSubject: hi\r\n\r\nbody").unwrap_err(),
            InvalidMessage::NotSma
        );
        let mut sync = Envelope {
            account: "a@b".into(),
            date: 0,
            marker: marker(Kind::Sync),
            body: Body::Encrypted {
                armored: "x".into(),
            },
        }
        .to_bytes();
        sync.truncate(sync.len() / 2);
        // Truncated MIME either fails or yields a body the crypto layer rejects.
        let _ = Envelope::parse(&sync);
        let big = Envelope {
            account: "a@b".into(),
            date: 0,
            marker: marker(Kind::App),
            body: Body::Encrypted {
                armored: "A".repeat(MESSAGE_SIZE_CAP),
            },
        }
        .to_bytes();
        assert!(matches!(
            Envelope::parse(&big),
            Err(InvalidMessage::TooLarge { .. })
        ));
    }
}
