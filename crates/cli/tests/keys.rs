//! Acceptance: the replicated Autocrypt keyring (`keys ...`), the outgoing
//! `autocrypt-header`, and Autocrypt Setup Message import/export, on a real
//! Dovecot through the real `sma` binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;
use sma_crypto::AccountKey;

use common::{json_lines, one, path_str, run_with_input, stderr_json, Account};

/// A correspondent with a real Autocrypt key.
struct Peer {
    addr: &'static str,
    key: AccountKey,
}

impl Peer {
    fn new(addr: &'static str) -> Peer {
        let key = AccountKey::generate(&mut rand::rngs::OsRng, addr, 1_700_000_000).expect("key");
        Peer { addr, key }
    }

    fn keydata(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.public_bytes())
    }

    fn header(&self, mutual: bool) -> String {
        format!(
            "addr={}; {}keydata={}",
            self.addr,
            if mutual {
                "prefer-encrypt=mutual; "
            } else {
                ""
            },
            self.keydata()
        )
    }

    fn fpr(&self) -> String {
        self.key.fingerprint().to_string()
    }
}

fn listed<'a>(list: &'a [Value], addr: &str) -> &'a Value {
    list.iter()
        .find(|v| v["addr"] == addr)
        .unwrap_or_else(|| panic!("{addr} not in {list:?}"))
}

fn recommend(acc: &Account, dev: &str, addrs: &[&str]) -> String {
    let mut args = vec!["keys", "recommend"];
    args.extend_from_slice(addrs);
    one(acc.ok(dev, &args))["recommendation"]
        .as_str()
        .expect("recommendation")
        .to_owned()
}

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crypto/tests/data")
}

#[test]
fn observations_replicate_and_drive_the_recommendation() {
    let acc = Account::new();
    acc.init("a");
    acc.init("b");
    acc.pair("a", "b");
    let bob = Peer::new("bob@example.org");
    let carol = Peer::new("carol@example.org");

    // A message with a valid header (From in another case).
    let r = one(acc.ok(
        "a",
        &[
            "keys",
            "observe",
            "--from",
            "Bob@Example.org",
            "--date",
            "Fri, 1 Mar 2024 10:00:00 +0000",
            "--autocrypt",
            &bob.header(true),
        ],
    ));
    assert_eq!(r["autocrypt"], "valid");
    assert_eq!(r["updated"], serde_json::json!(["bob@example.org"]));
    let list = acc.ok("a", &["keys", "list"]);
    let b = listed(&list, "bob@example.org");
    assert_eq!(b["fingerprint"], bob.fpr().as_str());
    assert_eq!(b["prefer_encrypt"], "mutual");
    assert_eq!(b["last_seen"], "2024-03-01T10:00:00Z");
    assert_eq!(b["autocrypt_timestamp"], "2024-03-01T10:00:00Z");
    assert_eq!(b["gossip_fingerprint"], Value::Null);
    assert_eq!(recommend(&acc, "a", &["bob@example.org"]), "encrypt");
    assert_eq!(recommend(&acc, "a", &["nobody@example.org"]), "disable");
    assert_eq!(
        recommend(&acc, "a", &["bob@example.org", "nobody@example.org"]),
        "disable"
    );

    // Older message: ignored. Header for another address: invalid, only last_seen.
    let r = one(acc.ok(
        "a",
        &[
            "keys",
            "observe",
            "--from",
            "bob@example.org",
            "--date",
            "Thu, 1 Feb 2024 10:00:00 +0000",
        ],
    ));
    assert_eq!(r["updated"], serde_json::json!([]));
    let r = one(acc.ok(
        "a",
        &[
            "keys",
            "observe",
            "--from",
            "bob@example.org",
            "--date",
            "Sat, 2 Mar 2024 10:00:00 +0000",
            "--autocrypt",
            &carol.header(false),
        ],
    ));
    assert_eq!(r["autocrypt"], "invalid");
    // 40 days without a header: the key is stale, so discourage.
    acc.ok(
        "a",
        &[
            "keys",
            "observe",
            "--from",
            "bob@example.org",
            "--date",
            "Wed, 10 Apr 2024 10:00:00 +0000",
        ],
    );
    assert_eq!(recommend(&acc, "a", &["bob@example.org"]), "discourage");
    // Gossip about carol: a gossip key only, so discourage.
    let r = one(acc.ok(
        "a",
        &[
            "keys",
            "observe",
            "--from",
            "dave@example.org",
            "--date",
            "Thu, 11 Apr 2024 10:00:00 +0000",
            "--gossip",
            &carol.header(false),
        ],
    ));
    assert_eq!(r["gossip"], 1);
    let show = one(acc.ok("a", &["keys", "show", "carol@example.org"]));
    assert_eq!(show["gossip_fingerprint"], carol.fpr().as_str());
    assert_eq!(show["fingerprint"], Value::Null);
    assert_eq!(recommend(&acc, "a", &["carol@example.org"]), "discourage");
    let show = one(acc.ok("a", &["keys", "show", "bob@example.org"]));
    assert!(show["public_key"]
        .as_str()
        .expect("armored")
        .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    assert_eq!(show["last_seen"], "2024-04-10T10:00:00Z");

    // The next sync carries it all to b.
    acc.ok("a", &["sync"]);
    acc.ok("b", &["sync"]);
    assert_eq!(
        acc.ok("b", &["keys", "list"]),
        acc.ok("a", &["keys", "list"])
    );

    // A key imported on b, and b's prefer-encrypt setting, reach a.
    let erin = Peer::new("erin@example.org");
    let file = acc.dir.path().join("erin.asc");
    std::fs::write(&file, erin.key.public_armored()).expect("write key");
    let r = one(acc.ok(
        "b",
        &[
            "keys",
            "import",
            "erin@example.org",
            path_str(&file),
            "--prefer-encrypt",
            "mutual",
        ],
    ));
    assert_eq!(r["updated"], serde_json::json!(["erin@example.org"]));
    acc.ok("b", &["keys", "prefer-encrypt", "nopreference"]);
    acc.ok("b", &["sync"]);
    acc.ok("a", &["sync"]);
    let list = acc.ok("a", &["keys", "list"]);
    assert_eq!(
        listed(&list, "erin@example.org")["fingerprint"],
        erin.fpr().as_str()
    );
    assert_eq!(
        one(acc.ok("a", &["keys", "prefer-encrypt"]))["prefer_encrypt"],
        "nopreference"
    );
    assert_eq!(recommend(&acc, "a", &["erin@example.org"]), "available");

    // Bad input: usage errors (exit 2).
    let out = acc.run(
        "a",
        &["keys", "observe", "--from", "bob", "--date", "yesterday"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr_json(&out)["kind"], "usage");
    let out = acc.run("a", &["keys", "show", "nobody@example.org"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn whole_messages_and_the_outgoing_header() {
    let acc = Account::new();
    acc.init("a");
    let bob = Peer::new("bob@example.org");
    let carol = Peer::new("carol@example.org");
    let mallory = Peer::new("mallory@example.org");
    let folded: String = bob
        .header(true)
        .replace("keydata=", "keydata=\r\n ")
        .replace(';', ";\r\n");
    let message = format!(
        "From: Bob <bob@example.org>\r\nTo: {user}, carol@example.org\r\n\
         Date: Fri, 1 Mar 2024 10:00:00 +0000\r\nSubject: hello\r\nMIME-Version: 1.0\r\n\
         Autocrypt: {folded}\r\nAutocrypt-Gossip: {}\r\nAutocrypt-Gossip: {}\r\n\
         Content-Type: text/plain\r\n\r\nhello\r\n",
        carol.header(false),
        mallory.header(false),
        user = acc.user,
    );
    let file = acc.dir.path().join("msg.eml");
    std::fs::write(&file, &message).expect("write message");
    let r = one(acc.ok("a", &["keys", "observe", "--message", path_str(&file)]));
    assert_eq!(r["autocrypt"], "valid");
    assert_eq!(r["gossip"], 1, "gossip for a non-recipient is ignored");
    let list = acc.ok("a", &["keys", "list"]);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(
        listed(&list, "bob@example.org")["fingerprint"],
        bob.fpr().as_str()
    );
    assert_eq!(
        listed(&list, "carol@example.org")["gossip_fingerprint"],
        carol.fpr().as_str()
    );

    // An auto-reply on standard input is ignored.
    let reply = message.replace(
        "Subject: hello",
        "Subject: away\r\nAuto-Submitted: auto-replied",
    );
    let mut observe = acc.cmd("a");
    observe.args(["keys", "observe", "--message", "-"]);
    let out = run_with_input(observe, reply.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(one(json_lines(&out.stdout))["ignored"], "auto-replied");

    // Our own header parses as a valid Autocrypt header for the account.
    let h = one(acc.ok("a", &["autocrypt-header"]));
    let fpr = one(acc.ok("a", &["account-key", "show"]))["fingerprint"].clone();
    assert_eq!(h["fingerprint"], fpr);
    assert_eq!(h["prefer_encrypt"], "mutual");
    let value = h["autocrypt"].as_str().expect("value").to_owned();
    assert!(value.starts_with(&format!(
        "addr={}; prefer-encrypt=mutual; keydata=",
        acc.user
    )));
    // Without --json the output is the bare value, ready for a header line.
    let plain = Command::new(env!("CARGO_BIN_EXE_sma"))
        .arg("--home")
        .arg(acc.home("a"))
        .arg("autocrypt-header")
        .env_remove("SMA_HOME")
        .output()
        .expect("run sma");
    assert!(plain.status.success());
    assert_eq!(String::from_utf8_lossy(&plain.stdout).trim(), value);
    let r = one(acc.ok(
        "a",
        &[
            "keys",
            "observe",
            "--from",
            &acc.user,
            "--date",
            "Fri, 1 Mar 2024 11:00:00 +0000",
            "--autocrypt",
            &value,
        ],
    ));
    assert_eq!(r["autocrypt"], "valid");
    let me = one(acc.ok("a", &["keys", "show", &acc.user]));
    assert_eq!(me["fingerprint"], fpr);
}

#[test]
fn setup_message_import_becomes_the_next_account_key_everywhere() {
    let acc = Account::new();
    acc.init("a");
    acc.init("b");
    acc.pair("a", "b");
    let before = one(acc.ok("a", &["account-key", "show"]))["fingerprint"].clone();
    let file = vectors().join("k9-setup-message.eml");
    let f = path_str(&file);
    // Wrong code: exit 3, nothing changed. Malformed code: exit 2.
    let out = acc.run(
        "a",
        &[
            "setup-message",
            "import",
            f,
            "--setup-code",
            "1742-0185-6197-1303-7016-8412-3581-4441-0597",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stderr_json(&out)["kind"], "rejected");
    let out = acc.run(
        "a",
        &["setup-message", "import", f, "--setup-code", "12-34"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        one(acc.ok("a", &["account-key", "show"]))["fingerprint"],
        before
    );

    // The right code, typed into a pipe rather than given as an option.
    let mut import = acc.cmd("a");
    import.args(["setup-message", "import", f]);
    let out = run_with_input(import, b"0655-9868-8252-5455-4232-5158-1237-5333-2638\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = one(json_lines(&out.stdout));
    let k9 = "EC353C9446B8A02B3AA570456A23E543954694A8";
    assert_eq!(r["fingerprint"], k9);
    assert_eq!(r["generation"], 2);
    assert_eq!(
        one(acc.ok("a", &["account-key", "show"]))["fingerprint"],
        k9
    );
    acc.ok("a", &["sync"]);
    acc.ok("b", &["sync"]);
    assert_eq!(
        one(acc.ok("b", &["account-key", "show"]))["fingerprint"],
        k9
    );
}

#[test]
fn init_imports_each_setup_message_vector_and_refuses_a_wrong_code() {
    let cases = [
        (
            "autocrypt-example-setup-message.eml",
            "1742-0185-6197-1303-7016-8412-3581-4441-0597",
            "EB85BB5FA33A75E15E944E63F231550C4F47E38E",
        ),
        (
            "k9-setup-message.eml",
            "0655-9868-8252-5455-4232-5158-1237-5333-2638",
            "EC353C9446B8A02B3AA570456A23E543954694A8",
        ),
        (
            "enigmail-setup-message.txt",
            "1742-0185-6197-1303-7016-8412-3581-4441-0597",
            "E60468CE44D77C3FCE9FD07271DBC5657FDE65A7",
        ),
    ];
    for (file, code, fpr) in cases {
        let acc = Account::new();
        let path = vectors().join(file);
        let wrong = "1111-2222-3333-4444-5555-6666-7777-8888-9999";
        let out = acc.init_with(
            "a",
            &["--import-setup", path_str(&path), "--setup-code", wrong],
        );
        assert_eq!(
            out.status.code(),
            Some(3),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !acc.home("a").exists(),
            "{file}: a failed init left the home behind"
        );
        let out = acc.init_with(
            "a",
            &["--import-setup", path_str(&path), "--setup-code", code],
        );
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(one(json_lines(&out.stdout))["role"], "founder");
        let shown = one(acc.ok("a", &["account-key", "show"]));
        assert_eq!(shown["fingerprint"], fpr, "{file}");
        // A second device cannot found the same group again with a key.
        let out = acc.init_with(
            "b",
            &["--import-setup", path_str(&path), "--setup-code", code],
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !acc.home("b").exists(),
            "{file}: the refused init left a home"
        );
        // Nor a folder: the inbox created with its first read is gone.
        let status = one(acc.ok("a", &["status"]));
        let folders = status["folders"].as_array().expect("folders");
        assert_eq!(folders.len(), 2, "{file}: {folders:?}");
    }
}

#[test]
fn exported_setup_message_decrypts_with_gnupg() {
    let acc = Account::new();
    acc.init("a");
    let fpr = one(acc.ok("a", &["account-key", "show"]))["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();
    let out = acc.dir.path().join("setup.eml");
    let code = one(acc.ok("a", &["setup-message", "export", "--out", path_str(&out)]))
        ["setup_code"]
        .as_str()
        .expect("code")
        .to_owned();
    let mail = std::fs::read_to_string(&out).expect("read setup message");
    let start = mail
        .find("-----BEGIN PGP MESSAGE-----")
        .expect("armored block");
    let end = mail.find("-----END PGP MESSAGE-----").expect("armor end") + 25;
    let block = acc.dir.path().join("block.asc");
    std::fs::write(&block, &mail[start..end]).expect("write block");

    let home = tempfile::Builder::new()
        .prefix("sma-gpg-")
        .tempdir_in("/tmp")
        .expect("gpg home");
    let gpg = |args: &[&str]| {
        Command::new("gpg")
            .args(["--batch", "--no-tty", "--homedir"])
            .arg(home.path())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("GnuPG (`gpg`) is required for this test: {e}"))
    };
    let dec = gpg(&[
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        &code,
        "--decrypt",
        path_str(&block),
    ]);
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    let key = home.path().join("key.asc");
    std::fs::write(&key, &dec.stdout).expect("write key");
    let shown = gpg(&["--with-colons", "--show-keys", path_str(&key)]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let colons = String::from_utf8_lossy(&shown.stdout);
    let primary = colons
        .lines()
        .skip_while(|l| !l.starts_with("sec") && !l.starts_with("pub"))
        .find(|l| l.starts_with("fpr"))
        .and_then(|l| l.split(':').nth(9))
        .expect("primary fingerprint");
    assert_eq!(primary, fpr);
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home.path())
        .args(["--kill", "gpg-agent"])
        .output();
}
