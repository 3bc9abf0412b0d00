//! Reading the Autocrypt-relevant parts of a whole received RFC 5322
//! message (for mail-program hooks: `sma keys observe --message FILE`).

use mail_parser::{Address, MessageParser, MimeHeaders};

use crate::autocrypt::header::{
    canonical_addr, select_autocrypt, select_gossip, AUTOCRYPT, AUTOCRYPT_GOSSIP,
};
use crate::autocrypt::update::{effective_date, Observation};
use crate::error::InvalidMessage;
use crate::timefmt;

/// Why a message must not update the peer state (Level 1 §"Updating
/// Autocrypt Peer State").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// `Auto-Submitted: auto-replied`.
    AutoReplied,
    /// `Content-Type: multipart/report` (delivery or disposition report).
    Report,
    /// More than one address (or none) in `From`.
    NotOneFrom,
}

impl Ignored {
    /// A short machine-readable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::AutoReplied => "auto-replied",
            Ignored::Report => "multipart-report",
            Ignored::NotOneFrom => "not-one-from-address",
        }
    }
}

/// What the update algorithm needs from a received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The single From address, canonicalised (empty if not exactly one).
    pub from: String,
    /// The `Date` header, if present and parseable (Unix seconds).
    pub date: Option<u64>,
    /// Raw values of every `Autocrypt` header.
    pub autocrypt: Vec<String>,
    /// Raw values of every `Autocrypt-Gossip` header (top level, and the
    /// root part of the body as found in a decrypted payload).
    pub gossip: Vec<String>,
    /// Addresses of `To`, `Cc` and `Reply-To`, canonicalised.
    pub recipients: Vec<String>,
    /// Set when Level 1 says the message must be ignored.
    pub ignored: Option<Ignored>,
}

fn addresses(a: Option<&Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| x.address())
            .map(canonical_addr)
            .collect()
    })
    .unwrap_or_default()
}

/// Parses `raw` defensively (never panics).
pub fn read_message(raw: &[u8]) -> Result<ReceivedMessage, InvalidMessage> {
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or(InvalidMessage::Unparseable)?;
    let raw_values = |part: usize, name: &str| -> Vec<String> {
        msg.parts
            .get(part)
            .map(|p| {
                p.headers
                    .iter()
                    .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
                    .filter_map(|h| {
                        msg.raw_message
                            .get(h.offset_start as usize..h.offset_end as usize)
                            .and_then(|b| std::str::from_utf8(b).ok())
                            .map(|s| s.trim().to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let froms = addresses(msg.from());
    let mut recipients = addresses(msg.to());
    recipients.extend(addresses(msg.cc()));
    recipients.extend(addresses(msg.reply_to()));
    let mut gossip = raw_values(0, AUTOCRYPT_GOSSIP);
    if msg.parts.len() > 1 {
        gossip.extend(raw_values(1, AUTOCRYPT_GOSSIP));
    }
    let auto_replied = msg
        .header_raw("Auto-Submitted")
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("auto-replied"));
    let report = msg.content_type().is_some_and(|ct| {
        ct.c_type.eq_ignore_ascii_case("multipart")
            && ct
                .c_subtype
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    let ignored = if froms.len() != 1 {
        Some(Ignored::NotOneFrom)
    } else if auto_replied {
        Some(Ignored::AutoReplied)
    } else if report {
        Some(Ignored::Report)
    } else {
        None
    };
    Ok(ReceivedMessage {
        from: if froms.len() == 1 {
            froms[0].clone()
        } else {
            String::new()
        },
        date: msg.header_raw("Date").and_then(timefmt::parse_rfc5322),
        autocrypt: raw_values(0, AUTOCRYPT),
        gossip,
        recipients,
        ignored,
    })
}

impl ReceivedMessage {
    /// The observation to feed the update algorithm, received at `receipt`
    /// (Unix seconds); `None` when the message is to be ignored. `key_ok`
    /// says whether decoded keydata is a usable OpenPGP key.
    pub fn observation(&self, receipt: u64, key_ok: impl Fn(&[u8]) -> bool) -> Option<Observation> {
        if self.ignored.is_some() {
            return None;
        }
        Some(Observation {
            from: self.from.clone(),
            effective_date: effective_date(self.date, receipt),
            autocrypt: select_autocrypt(
                self.autocrypt.iter().map(String::as_str),
                &self.from,
                &key_ok,
            ),
            gossip: select_gossip(
                self.gossip.iter().map(String::as_str),
                Some(&self.recipients),
                &key_ok,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "xjMEWJe8DxYJKwYBBAHaRw8BAQdA";

    fn message(extra: &str) -> String {
        format!(
            "From: Bob <Bob@Example.org>\r\nTo: alice@example.org, Carol <carol@example.org>\r\n\
             Date: Thu, 26 Nov 2026 14:11:58 +0000\r\nSubject: hi\r\n\
             Autocrypt: addr=bob@example.org; prefer-encrypt=mutual;\r\n keydata={KEY}\r\n\
             Autocrypt-Gossip: addr=carol@example.org; keydata={KEY}\r\n\
             Autocrypt-Gossip: addr=mallory@example.org; keydata={KEY}\r\n{extra}\r\nbody\r\n"
        )
    }

    #[test]
    fn reads_headers_and_applies_selection() {
        let m = read_message(message("").as_bytes()).unwrap();
        assert_eq!(m.from, "bob@example.org");
        assert_eq!(m.date, Some(1_795_702_318));
        assert_eq!(m.autocrypt.len(), 1);
        assert_eq!(m.gossip.len(), 2);
        let o = m.observation(1_900_000_000, |_| true).unwrap();
        assert_eq!(o.effective_date, 1_795_702_318);
        assert!(o.autocrypt.is_some());
        // Gossip for a non-recipient is dropped.
        assert_eq!(o.gossip.len(), 1);
        assert_eq!(o.gossip[0].addr, "carol@example.org");
        // A future Date counts as the time of receipt.
        assert_eq!(
            m.observation(1_000, |_| true).unwrap().effective_date,
            1_000
        );
    }

    #[test]
    fn ignores_auto_replies_and_reports() {
        let m = read_message(message("Auto-Submitted: auto-replied\r\n").as_bytes()).unwrap();
        assert_eq!(m.ignored, Some(Ignored::AutoReplied));
        assert!(m.observation(0, |_| true).is_none());
        let m = read_message(
            message("Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.ignored, Some(Ignored::Report));
        let two = message("").replace("From: Bob <Bob@Example.org>", "From: a@x.org, b@x.org");
        assert_eq!(
            read_message(two.as_bytes()).unwrap().ignored,
            Some(Ignored::NotOneFrom)
        );
    }
}
