//! Interoperability with GnuPG: our Setup Message, sealed messages and
//! detached signatures must be readable by `gpg`, and `gpg`'s signed and
//! encrypted messages must open with our code.
//!
//! GnuPG is required: these tests fail (never skip) without it.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use common::{device, rng};
use sma_crypto::{open, seal, setup_message, sign_detached, AccountKey, SigContext};

/// A throw-away GnuPG home directory; its agent is stopped on drop.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Self {
        match Command::new("gpg").arg("--version").output() {
            Ok(o) if o.status.success() => {}
            _ => panic!(
                "GnuPG (`gpg`) is required for the interoperability tests but was not found: \
                 run `scripts/imap-server install` (it installs gnupg)"
            ),
        }
        let home = tempfile::Builder::new()
            .prefix("sma-gpg-")
            .tempdir_in("/tmp")
            .unwrap();
        Gpg { home }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    fn write(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Runs gpg with `args` (batch mode, our home, status on fd 2).
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new("gpg");
        cmd.arg("--batch")
            .arg("--no-tty")
            .arg("--homedir")
            .arg(self.home.path())
            .arg("--status-fd")
            .arg("2")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn gpg");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "gpg {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn import(&self, key: &[u8]) {
        self.ok(&["--import"], Some(key));
    }

    fn secret_fingerprints(&self) -> Vec<String> {
        let out = self.ok(&["--with-colons", "--list-secret-keys"], None);
        primary_fprs(&String::from_utf8_lossy(&out.stdout))
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "gpg-agent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Fingerprints of primary keys in `--with-colons` output.
fn primary_fprs(colons: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut want_fpr = false;
    for line in colons.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.first() {
            Some(&"sec") | Some(&"pub") => want_fpr = true,
            Some(&"fpr") if want_fpr => {
                out.push(fields.get(9).unwrap_or(&"").to_string());
                want_fpr = false;
            }
            Some(&"ssb") | Some(&"sub") => want_fpr = false,
            _ => {}
        }
    }
    out
}

fn status_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("[GNUPG:] ").map(str::to_owned))
        .collect()
}

fn has_status(out: &Output, prefix: &str) -> bool {
    status_lines(out).iter().any(|l| l.starts_with(prefix))
}

fn extract_block(mail: &str) -> &str {
    let start = mail.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let end = mail.find("-----END PGP MESSAGE-----").unwrap() + "-----END PGP MESSAGE-----".len();
    &mail[start..end]
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn our_setup_message_decrypts_with_gnupg() {
    let gpg = Gpg::new();
    let mut r = rng(7);
    let key = AccountKey::generate(&mut r, "alice@example.org", 1_700_000_000).unwrap();
    let (mail, code) = setup_message::export(
        &mut r,
        &key,
        "alice@example.org",
        "Tue, 14 Nov 2023 22:13:20 +0000",
    )
    .unwrap();
    let file = gpg.write("setup.asc", extract_block(&mail).as_bytes());
    let pass = code.display_grouped();
    let out = gpg.ok(
        &[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            &pass,
            "--decrypt",
            p(&file),
        ],
        None,
    );
    // SEIPD v1 with MDC (method 2), AES-128 (algorithm 7).
    assert!(
        has_status(&out, "DECRYPTION_INFO 2 7"),
        "{:?}",
        status_lines(&out)
    );
    assert!(has_status(&out, "DECRYPTION_OKAY"));
    let payload = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(payload.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
    assert!(payload.contains("Autocrypt-Prefer-Encrypt: mutual"));

    gpg.import(payload.as_bytes());
    assert_eq!(
        gpg.secret_fingerprints(),
        vec![key.fingerprint().to_string()]
    );

    // And a wrong code is refused by GnuPG too.
    let bad = gpg.run(
        &[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "0000-0000-0000-0000-0000-0000-0000-0000-0000",
            "--decrypt",
            p(&file),
        ],
        None,
    );
    assert!(!bad.status.success());
}

#[test]
fn sealed_message_decrypts_and_verifies_with_gnupg() {
    let gpg = Gpg::new();
    let (alice, bob) = (device(1), device(2));
    gpg.import(&bob.to_bytes());
    gpg.import(&alice.certificate().to_bytes());
    let msg = seal(
        &mut rng(8),
        &alice,
        &[&bob.certificate()],
        b"hello from sma",
        SigContext::Sealed,
    )
    .unwrap();
    let file = gpg.write("sealed.asc", msg.as_bytes());
    let out = gpg.ok(&["--decrypt", p(&file)], None);
    assert_eq!(out.stdout, b"hello from sma");
    // SEIPD v1 with MDC, AES-256 (algorithm 9), valid signature by alice.
    assert!(
        has_status(&out, "DECRYPTION_INFO 2 9"),
        "{:?}",
        status_lines(&out)
    );
    assert!(has_status(
        &out,
        &format!("VALIDSIG {}", alice.fingerprint())
    ));
    assert!(has_status(&out, "GOODSIG"));
}

#[test]
fn detached_signature_verifies_with_gnupg() {
    let gpg = Gpg::new();
    let alice = device(1);
    gpg.import(&alice.certificate().to_bytes());
    let data = gpg.write("data.json", br#"{"v":1}"#);
    let sig = gpg.write(
        "data.json.asc",
        sign_detached(&alice, br#"{"v":1}"#, SigContext::Announcement)
            .unwrap()
            .as_bytes(),
    );
    let out = gpg.ok(&["--verify", p(&sig), p(&data)], None);
    assert!(has_status(
        &out,
        &format!("VALIDSIG {}", alice.fingerprint())
    ));
    let other = gpg.write("other.json", br#"{"v":2}"#);
    assert!(!gpg
        .run(&["--verify", p(&sig), p(&other)], None)
        .status
        .success());
}

#[test]
fn gnupg_signed_and_encrypted_message_opens() {
    let gpg = Gpg::new();
    let (alice, bob) = (device(1), device(2));
    gpg.import(&alice.to_bytes());
    gpg.import(&bob.certificate().to_bytes());
    let input = gpg.write("plain.txt", b"hello from gnupg");
    let make = |name: &str, notation: Option<&str>| {
        let out_path = gpg.path(name);
        let mut args = vec![
            "--trust-model".to_owned(),
            "always".into(),
            "--armor".into(),
            "--local-user".into(),
            alice.fingerprint().to_string(),
            "--recipient".into(),
            bob.fingerprint().to_string(),
            "--output".into(),
            p(&out_path).to_owned(),
        ];
        if let Some(n) = notation {
            args.extend(["--sig-notation".to_owned(), n.to_owned()]);
        }
        args.extend([
            "--sign".to_owned(),
            "--encrypt".into(),
            p(&input).to_owned(),
        ]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        gpg.ok(&refs, None);
        std::fs::read_to_string(&out_path).unwrap()
    };
    let armored = make("msg.asc", Some("context@sma.invalid=sma-sealed"));
    let plain = open(
        &bob,
        &alice.certificate(),
        &armored,
        1 << 20,
        SigContext::Sealed,
    )
    .unwrap();
    assert_eq!(*plain, b"hello from gnupg");
    // Signed by someone else: refused.
    assert!(open(
        &bob,
        &device(3).certificate(),
        &armored,
        1 << 20,
        SigContext::Sealed
    )
    .is_err());
    // Signed without sma's context notation: not a sealed payload.
    let plain_sig = make("plain.asc", None);
    assert!(matches!(
        open(
            &bob,
            &alice.certificate(),
            &plain_sig,
            1 << 20,
            SigContext::Sealed
        ),
        Err(sma_crypto::CryptoError::WrongContext { .. })
    ));
}

#[test]
fn primary_fprs_parses_colons() {
    let colons = "sec:u:255:22:AAAA:1:::u:::scESC:::+:::ed25519:::0:\n\
                  fpr:::::::::EB85BB5FA33A75E15E944E63F231550C4F47E38E:\n\
                  ssb:u:255:18:BBBB:1::::::e:::+:::cv25519::\n\
                  fpr:::::::::1111111111111111111111111111111111111111:\n";
    assert_eq!(
        primary_fprs(colons),
        vec!["EB85BB5FA33A75E15E944E63F231550C4F47E38E"]
    );
}
