//! Autocrypt Level 1 Setup Message: export the account key to, and import
//! it from, other Autocrypt mail programs.
//!
//! Export follows the Autocrypt Level 1 specification: the ASCII-armored
//! transferable secret key (with an `Autocrypt-Prefer-Encrypt` armor
//! header) is symmetrically encrypted (SKESK v4, S2K iterated+salted
//! SHA-256, AES-128, SEIPD v1 with MDC) under the 36-digit setup code in
//! its dashed form, armored with `Passphrase-Format: numeric9x4` and
//! `Passphrase-Begin: <first two digits>`, and wrapped in an HTML
//! attachment `autocrypt-setup-message.html` of type
//! `application/autocrypt-setup` in a `multipart/mixed` message carrying
//! `Autocrypt-Setup-Message: v1`.
//!
//! Import accepts the whole message (any transfer encoding), just the
//! armored block, or an HTML wrapper around it; AES-128/192/256.

use std::io::Read;

use pgp::{
    armor::{BlockType, Dearmor, Headers},
    composed::{decrypt_session_key_with_password, Message, MessageBuilder, PlainSessionKey},
    crypto::{hash::HashAlgorithm, sym::SymmetricKeyAlgorithm},
    packet::{
        Packet, PacketParser, PacketTrait, SymEncryptedProtectedData, SymKeyEncryptedSessionKey,
    },
    types::{Password, Seipdv1ReadMode, StringToKey},
};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

pub use crate::prefer::PreferEncrypt;
use crate::{
    armor,
    code::SetupCode,
    error::{guard, internal, malformed, CryptoError},
    keys::{self, AccountKey},
};

/// S2K iteration count byte (encodes 16 777 216 hashed octets), as GnuPG's
/// and rPGP's default.
const S2K_COUNT: u8 = 224;
/// Upper bound for the decrypted payload (a secret key, a few KiB).
const MAX_PAYLOAD: usize = 4 * 1024 * 1024;
const CRLF: &str = "\r\n";

/// The result of [`import_with_details`].
#[derive(Debug)]
pub struct ImportedSetup {
    /// The account key.
    pub key: AccountKey,
    /// The `Autocrypt-Prefer-Encrypt` armor header of the key, if any
    /// (`mutual`, `nopreference`, or whatever the sender wrote).
    pub prefer_encrypt: Option<String>,
}

/// Builds a complete RFC 5322 Autocrypt Setup Message (CRLF line endings,
/// 7-bit) for `key`, with `From`/`To` = `addr` and the given `Date` header
/// value, and returns it together with the freshly generated setup code.
/// `Autocrypt-Prefer-Encrypt` is `mutual`; see
/// [`export_with_prefer_encrypt`].
pub fn export(
    rng: &mut (impl CryptoRng + RngCore),
    key: &AccountKey,
    addr: &str,
    date_rfc2822: &str,
) -> Result<(String, SetupCode), CryptoError> {
    export_with_prefer_encrypt(rng, key, addr, date_rfc2822, PreferEncrypt::Mutual)
}

/// [`export`] with an explicit `Autocrypt-Prefer-Encrypt` value.
pub fn export_with_prefer_encrypt(
    rng: &mut (impl CryptoRng + RngCore),
    key: &AccountKey,
    addr: &str,
    date_rfc2822: &str,
    prefer: PreferEncrypt,
) -> Result<(String, SetupCode), CryptoError> {
    keys::check_addr(addr)?;
    check_date(date_rfc2822)?;
    let code = SetupCode::generate(rng);
    let armored = encrypt_block(rng, key, &code, prefer)?;

    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let message_id = hex::encode(id);
    rng.fill_bytes(&mut id);
    let boundary = format!("sma-{}", hex::encode(id));

    let mail = SetupMail {
        addr,
        date: date_rfc2822,
        message_id: &message_id,
        boundary: &boundary,
        armored: &armored,
    };
    Ok((mail.render(), code))
}

/// Refuses an empty or multi-line `Date` value (it goes into a header).
fn check_date(date_rfc2822: &str) -> Result<(), CryptoError> {
    if date_rfc2822.is_empty()
        || !date_rfc2822
            .chars()
            .all(|c| c == ' ' || c.is_ascii_graphic())
    {
        return Err(CryptoError::InvalidArgument(
            "date must be a single-line RFC 5322 date".into(),
        ));
    }
    Ok(())
}

/// The explanation in the text part of a Setup Message.
const SETUP_TEXT: &[&str] = &[
    "This message contains all information to transfer your Autocrypt",
    "settings along with your secret key securely from your original",
    "device.",
    "",
    "To set up your new device for Autocrypt, please follow the",
    "instructions that should be presented by your new device.",
    "",
    "You can keep this message and use it as a backup for your secret",
    "key. If you want to do this, you should write down the Setup Code",
    "and store it securely.",
];

/// The HTML attachment's text before the armored block.
const SETUP_HTML_INTRO: &[&str] = &[
    "<html><body>",
    "<p>",
    "This is the Autocrypt setup file used to transfer settings and",
    "keys between clients. You can decrypt it using the Setup Code",
    "presented on your old device, and then import the contained key",
    "into your keyring.",
    "</p>",
    "",
    "<pre>",
];

/// The parts of a Setup Message mail, checked and ready to render.
struct SetupMail<'a> {
    /// `From` and `To`.
    addr: &'a str,
    /// The `Date` value.
    date: &'a str,
    /// The local part of the `Message-ID`.
    message_id: &'a str,
    /// The MIME boundary.
    boundary: &'a str,
    /// The armored, encrypted key ([`encrypt_block`]).
    armored: &'a str,
}

impl SetupMail<'_> {
    /// The complete message: headers, a text part and the HTML attachment
    /// with the armored key (CRLF line endings, 7-bit).
    fn render(&self) -> String {
        let mut m = String::with_capacity(self.armored.len() + 2048);
        self.push_headers(&mut m);
        self.push_body(&mut m);
        m
    }

    fn push_headers(&self, m: &mut String) {
        let boundary = self.boundary;
        for (name, value) in [
            ("From", self.addr),
            ("To", self.addr),
            ("Date", self.date),
            ("Subject", "Autocrypt Setup Message"),
            ("Message-ID", &format!("<{}@sma.invalid>", self.message_id)),
            ("Autocrypt-Setup-Message", "v1"),
            ("MIME-Version", "1.0"),
            (
                "Content-Type",
                &format!("multipart/mixed; boundary=\"{boundary}\""),
            ),
        ] {
            m.push_str(&format!("{name}: {value}{CRLF}"));
        }
        m.push_str(CRLF);
    }

    fn push_body(&self, m: &mut String) {
        let boundary = self.boundary;
        m.push_str(&format!("--{boundary}{CRLF}"));
        m.push_str(&format!("Content-Type: text/plain; charset=utf-8{CRLF}"));
        m.push_str(&format!("Content-Transfer-Encoding: 7bit{CRLF}{CRLF}"));
        m.push_str(&SETUP_TEXT.join(CRLF));
        m.push_str(CRLF);
        m.push_str(&format!("--{boundary}{CRLF}"));
        m.push_str(&format!("Content-Type: application/autocrypt-setup{CRLF}"));
        m.push_str(&format!(
            "Content-Disposition: attachment; filename=\"autocrypt-setup-message.html\"{CRLF}"
        ));
        m.push_str(&format!("Content-Transfer-Encoding: 7bit{CRLF}{CRLF}"));
        m.push_str(&SETUP_HTML_INTRO.join(CRLF));
        m.push_str(CRLF);
        m.push_str(self.armored);
        m.push_str(&format!("</pre></body></html>{CRLF}"));
        m.push_str(&format!("--{boundary}--{CRLF}"));
    }
}

/// The armored `PGP MESSAGE` (CRLF) with the encrypted secret key.
fn encrypt_block(
    rng: &mut (impl CryptoRng + RngCore),
    key: &AccountKey,
    code: &SetupCode,
    prefer: PreferEncrypt,
) -> Result<String, CryptoError> {
    let mut headers = Headers::new();
    headers.insert(
        "Autocrypt-Prefer-Encrypt".into(),
        vec![prefer.as_str().into()],
    );
    let payload = keys::armor_secret(&key.key, Some(&headers))?;
    let passphrase = Zeroizing::new(code.display_grouped());

    let mut builder = MessageBuilder::from_bytes("", payload.as_bytes().to_vec())
        .seipd_v1(&mut *rng, SymmetricKeyAlgorithm::AES128);
    builder
        .encrypt_with_password(
            StringToKey::new_iterated(&mut *rng, HashAlgorithm::Sha256, S2K_COUNT),
            &Password::from(passphrase.as_str()),
        )
        .map_err(internal)?;
    let binary = builder.to_vec(&mut *rng).map_err(internal)?;
    Ok(armor::write(
        "PGP MESSAGE",
        &[
            ("Passphrase-Format", "numeric9x4"),
            ("Passphrase-Begin", &code.begin()),
        ],
        &binary,
        CRLF,
    ))
}

/// Decrypts a Setup Message with `code` and returns the account key.
/// Wrong code → [`CryptoError::WrongPassphrase`]; no armored message found
/// → [`CryptoError::Malformed`]; a modified ciphertext that still passes
/// the code check → [`CryptoError::Tampered`].
pub fn import(text: &str, code: &SetupCode) -> Result<AccountKey, CryptoError> {
    import_with_details(text, code).map(|i| i.key)
}

/// [`import`], also returning the `Autocrypt-Prefer-Encrypt` setting.
pub fn import_with_details(text: &str, code: &SetupCode) -> Result<ImportedSetup, CryptoError> {
    guard(|| {
        let mut last_err = CryptoError::Malformed("no armored PGP MESSAGE found".into());
        for candidate in candidates(text) {
            let Some(block) = armor::extract(&candidate, "PGP MESSAGE") else {
                continue;
            };
            match dearmor(&block) {
                Ok((binary, headers)) => return decrypt(&binary, &headers, code),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    })
}

/// Texts that may contain the armored block: the decoded MIME parts of a
/// mail (handles base64 / quoted-printable), then the raw input.
fn candidates(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(msg) = mail_parser::MessageParser::default().parse(text.as_bytes()) {
        for part in &msg.parts {
            let content = String::from_utf8_lossy(part.contents());
            if content.contains("-----BEGIN PGP MESSAGE-----") {
                out.push(content.into_owned());
            }
        }
    }
    out.push(text.to_owned());
    out
}

fn dearmor(block: &str) -> Result<(Vec<u8>, Headers), CryptoError> {
    let mut d = Dearmor::new(block.as_bytes());
    let mut bytes = Vec::new();
    d.read_to_end(&mut bytes).map_err(malformed)?;
    if d.typ != Some(BlockType::Message) {
        return Err(CryptoError::Malformed("not a PGP MESSAGE block".into()));
    }
    Ok((bytes, d.headers.clone()))
}

fn decrypt(
    binary: &[u8],
    headers: &Headers,
    code: &SetupCode,
) -> Result<ImportedSetup, CryptoError> {
    if let Some(begin) = headers.get("Passphrase-Begin").and_then(|v| v.first()) {
        if begin.trim() != code.begin() {
            return Err(CryptoError::WrongPassphrase);
        }
    }
    let mut skesks: Vec<SymKeyEncryptedSessionKey> = Vec::new();
    let mut seipd: Option<SymEncryptedProtectedData> = None;
    for packet in PacketParser::new(binary) {
        match packet.map_err(malformed)? {
            Packet::Marker(_) | Packet::Padding(_) if seipd.is_none() => {}
            Packet::SymKeyEncryptedSessionKey(p) if seipd.is_none() => skesks.push(p),
            Packet::SymEncryptedProtectedData(p) if seipd.is_none() => seipd = Some(p),
            other => {
                return Err(CryptoError::Malformed(format!(
                    "unexpected {:?} packet in setup message",
                    other.tag()
                )))
            }
        }
    }
    let seipd = seipd.ok_or_else(|| CryptoError::Malformed("no encrypted data packet".into()))?;
    if seipd.version() != 1 || skesks.is_empty() {
        return Err(CryptoError::Malformed(
            "expected SKESK + SEIPD version 1".into(),
        ));
    }

    // The spec's passphrase is the dashed form; some writers used the bare
    // digits, so try those second.
    let dashed = Zeroizing::new(code.display_grouped());
    let bare = Zeroizing::new(String::from_utf8_lossy(code.digits()).into_owned());
    for pw in [dashed.as_str(), bare.as_str()] {
        let pw = Password::from(pw);
        for esk in &skesks {
            let Ok(session_key) = decrypt_session_key_with_password(esk, &pw) else {
                continue;
            };
            let PlainSessionKey::V3_4 { sym_alg, key } = &session_key else {
                continue;
            };
            let sym_alg = *sym_alg;
            if !quick_check(&seipd, sym_alg, key.as_ref()) {
                continue;
            }
            let mode = Seipdv1ReadMode::CheckFirst {
                max_message_size: binary.len(),
            };
            let inner = seipd
                .decrypt(key.as_ref(), Some(sym_alg), mode)
                .map(Zeroizing::new)
                .map_err(|_| CryptoError::Tampered)?;
            return parse_payload(&inner);
        }
    }
    Err(CryptoError::WrongPassphrase)
}

/// OpenPGP CFB quick check: the last two octets of the random prefix
/// repeat. A wrong passphrase fails it with probability 1 - 2^-16; the MDC
/// then catches the rest (reported as `Tampered`).
fn quick_check(seipd: &SymEncryptedProtectedData, alg: SymmetricKeyAlgorithm, key: &[u8]) -> bool {
    if !matches!(
        alg,
        SymmetricKeyAlgorithm::AES128
            | SymmetricKeyAlgorithm::AES192
            | SymmetricKeyAlgorithm::AES256
    ) || key.len() != alg.key_size()
    {
        return false;
    }
    let bs = alg.block_size();
    let data = seipd.data();
    if data.len() < bs + 2 {
        return false;
    }
    let mut prefix = Zeroizing::new(data[..bs + 2].to_vec());
    let iv = vec![0u8; bs];
    if alg.decrypt_with_iv_regular(key, &iv, &mut prefix).is_err() {
        return false;
    }
    prefix[bs - 2..bs] == prefix[bs..bs + 2]
}

/// Reads the literal data of the decrypted message and parses the armored
/// (or, leniently, binary) transferable secret key in it.
fn parse_payload(inner: &[u8]) -> Result<ImportedSetup, CryptoError> {
    let mut msg = Message::from_bytes(inner).map_err(malformed)?;
    if msg.is_compressed() {
        msg = msg.decompress().map_err(malformed)?;
    }
    let mut payload = Zeroizing::new(Vec::new());
    (&mut msg)
        .take(MAX_PAYLOAD as u64 + 1)
        .read_to_end(&mut payload)
        .map_err(malformed)?;
    if payload.len() > MAX_PAYLOAD {
        return Err(CryptoError::PlaintextTooLarge { max: MAX_PAYLOAD });
    }
    let text = Zeroizing::new(String::from_utf8_lossy(&payload).into_owned());
    match armor::extract(&text, "PGP PRIVATE KEY BLOCK") {
        Some(block) => {
            let block = Zeroizing::new(block);
            let (key, headers) = keys::dearmor_secret(&block)?;
            let prefer_encrypt = headers
                .get("Autocrypt-Prefer-Encrypt")
                .and_then(|v| v.first())
                .map(|s| s.trim().to_owned());
            Ok(ImportedSetup {
                key: AccountKey::from_pgp(key)?,
                prefer_encrypt,
            })
        }
        None => Ok(ImportedSetup {
            key: AccountKey::from_bytes(&payload)?,
            prefer_encrypt: None,
        }),
    }
}
