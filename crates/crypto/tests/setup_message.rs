//! Autocrypt Setup Message: fixtures from other implementations, our own
//! export, and code handling.

mod common;

use common::{data, rng};
use sma_crypto::{
    setup_message::{self, PreferEncrypt},
    AccountKey, CryptoError, SetupCode,
};

struct Vector {
    file: &'static str,
    code: &'static str,
    fingerprint: &'static str,
}

const VECTORS: &[Vector] = &[
    Vector {
        file: "autocrypt-example-setup-message.eml",
        code: "1742-0185-6197-1303-7016-8412-3581-4441-0597",
        fingerprint: "EB85BB5FA33A75E15E944E63F231550C4F47E38E",
    },
    Vector {
        file: "k9-setup-message.eml",
        code: "0655-9868-8252-5455-4232-5158-1237-5333-2638",
        fingerprint: "EC353C9446B8A02B3AA570456A23E543954694A8",
    },
    Vector {
        file: "enigmail-setup-message.txt",
        code: "1742-0185-6197-1303-7016-8412-3581-4441-0597",
        fingerprint: "E60468CE44D77C3FCE9FD07271DBC5657FDE65A7",
    },
];

fn read(name: &str) -> String {
    std::fs::read_to_string(data(name)).unwrap()
}

#[test]
fn fixtures_import_with_their_codes() {
    for v in VECTORS {
        let text = read(v.file);
        let code = SetupCode::parse(v.code).unwrap();
        let key = setup_message::import(&text, &code).unwrap_or_else(|e| panic!("{}: {e}", v.file));
        assert_eq!(key.fingerprint().to_string(), v.fingerprint, "{}", v.file);
        // The imported key survives our own serializations.
        let again = AccountKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(again.fingerprint(), key.fingerprint());
        println!("{}: {}", v.file, key.algorithm());
    }
}

#[test]
fn fixture_details() {
    let code = SetupCode::parse(VECTORS[0].code).unwrap();
    let imported = setup_message::import_with_details(&read(VECTORS[0].file), &code).unwrap();
    assert_eq!(imported.prefer_encrypt.as_deref(), Some("mutual"));
    assert_eq!(imported.key.algorithm(), "ed25519+cv25519");
    assert_eq!(imported.key.user_ids(), vec!["alice@autocrypt.example"]);
    // Same key as the published cleartext.
    let clear =
        AccountKey::from_armored_secret(&read("autocrypt-example-setup-message-cleartext.key"))
            .unwrap();
    assert_eq!(clear.fingerprint(), imported.key.fingerprint());
    let enigmail = setup_message::import(
        &read(VECTORS[2].file),
        &SetupCode::parse(VECTORS[2].code).unwrap(),
    )
    .unwrap();
    assert_eq!(enigmail.algorithm(), "rsa3072+rsa3072");
}

#[test]
fn fixtures_reject_wrong_code() {
    let wrong = SetupCode::parse("1742-0185-6197-1303-7016-8412-3581-4441-0598").unwrap();
    let wrong_begin = SetupCode::parse("9999-0185-6197-1303-7016-8412-3581-4441-0597").unwrap();
    for v in VECTORS {
        let text = read(v.file);
        for code in [&wrong, &wrong_begin] {
            assert!(
                matches!(
                    setup_message::import(&text, code),
                    Err(CryptoError::WrongPassphrase)
                ),
                "{}",
                v.file
            );
        }
    }
}

#[test]
fn fixture_as_bare_block_and_html() {
    let text = read(VECTORS[0].file);
    let code = SetupCode::parse(VECTORS[0].code).unwrap();
    let start = text.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let end = text.find("-----END PGP MESSAGE-----").unwrap() + 25;
    let block = &text[start..end];
    let want = VECTORS[0].fingerprint;
    let fp = |t: &str| {
        setup_message::import(t, &code)
            .unwrap()
            .fingerprint()
            .to_string()
    };
    assert_eq!(fp(block), want);
    assert_eq!(fp(&block.replace('\n', "\r\n")), want);
    let html = format!("<html><body><pre>{block}</pre></body></html>");
    assert_eq!(fp(&html), want);
}

#[test]
fn export_import_roundtrip() {
    let mut r = rng(42);
    let key = AccountKey::generate(&mut r, "alice@example.org", 1_700_000_000).unwrap();
    let (mail, code) = setup_message::export(
        &mut r,
        &key,
        "alice@example.org",
        "Tue, 14 Nov 2023 22:13:20 +0000",
    )
    .unwrap();
    // Shape of the message.
    assert!(mail.contains("\r\nAutocrypt-Setup-Message: v1\r\n"));
    assert!(mail.starts_with("From: alice@example.org\r\nTo: alice@example.org\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
    assert!(mail.contains("Content-Type: multipart/mixed; boundary="));
    assert!(mail.contains("Content-Type: application/autocrypt-setup\r\n"));
    assert!(mail.contains("filename=\"autocrypt-setup-message.html\""));
    assert!(mail.contains("-----BEGIN PGP MESSAGE-----\r\nPassphrase-Format: numeric9x4\r\n"));
    assert!(mail.contains(&format!("\r\nPassphrase-Begin: {}\r\n\r\n", code.begin())));
    assert!(mail.lines().all(|l| l.len() <= 78));
    assert!(mail.is_ascii());
    assert!(!mail.replace("\r\n", "").contains('\n'), "bare LF in mail");
    assert!(!mail.contains("PRIVATE KEY"), "secret key leaked in clear");

    let back = setup_message::import(&mail, &code).unwrap();
    assert_eq!(back.fingerprint(), key.fingerprint());
    assert_eq!(back.to_bytes(), key.to_bytes());
    let details = setup_message::import_with_details(&mail, &code).unwrap();
    assert_eq!(details.prefer_encrypt.as_deref(), Some("mutual"));

    // Code typed without dashes, with line breaks.
    let typed = code.display_grouped().replace('-', "\n");
    assert!(setup_message::import(&mail, &SetupCode::parse(&typed).unwrap()).is_ok());

    // Wrong code.
    let other = SetupCode::generate(&mut r);
    assert!(matches!(
        setup_message::import(&mail, &other),
        Err(CryptoError::WrongPassphrase)
    ));
}

#[test]
fn export_with_nopreference_and_argument_checks() {
    let mut r = rng(43);
    let key = AccountKey::generate(&mut r, "bob@example.org", 1_700_000_000).unwrap();
    let (mail, code) = setup_message::export_with_prefer_encrypt(
        &mut r,
        &key,
        "bob@example.org",
        "Tue, 14 Nov 2023 22:13:20 +0000",
        PreferEncrypt::NoPreference,
    )
    .unwrap();
    let d = setup_message::import_with_details(&mail, &code).unwrap();
    assert_eq!(d.prefer_encrypt.as_deref(), Some("nopreference"));
    assert!(setup_message::export(&mut r, &key, "bob@example.org\r\nBcc: x@y", "d").is_err());
    assert!(setup_message::export(&mut r, &key, "bob@example.org", "Mon\r\nX: y").is_err());
}

#[test]
fn tampered_or_garbage_setup_messages_fail_cleanly() {
    let mut r = rng(44);
    let key = AccountKey::generate(&mut r, "carol@example.org", 1_700_000_000).unwrap();
    let (mail, code) = setup_message::export(
        &mut r,
        &key,
        "carol@example.org",
        "Tue, 14 Nov 2023 22:13:20 +0000",
    )
    .unwrap();
    for text in [
        "",
        "hello",
        "-----BEGIN PGP MESSAGE-----\n\n-----END PGP MESSAGE-----\n",
    ] {
        assert!(matches!(
            setup_message::import(text, &code),
            Err(CryptoError::Malformed(_))
        ));
    }
    // Flip characters inside the base64 body: never a different key.
    let start = mail.find("Passphrase-Begin").unwrap() + 25;
    let end = mail.find("-----END PGP MESSAGE-----").unwrap();
    for i in (start..end).step_by(41) {
        let mut m = mail.clone().into_bytes();
        m[i] ^= 0x01;
        let Ok(text) = String::from_utf8(m) else {
            continue;
        };
        if let Ok(k) = setup_message::import(&text, &code) {
            assert_eq!(k.fingerprint(), key.fingerprint());
        }
    }
}
