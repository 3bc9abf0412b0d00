//! Acceptance: founding, pairing, messaging and the server footprint, on a
//! real Dovecot through the real `sma` binary.

mod common;

use std::collections::BTreeMap;

use common::{read_code, run_with_input, server, stderr_json, Account};

/// Decodes the base64 bodies of `recv` lines.
fn bodies(lines: &[serde_json::Value]) -> Vec<(String, String)> {
    use base64::Engine as _;
    lines
        .iter()
        .map(|l| {
            let body = base64::engine::general_purpose::STANDARD
                .decode(l["body_b64"].as_str().expect("body_b64"))
                .expect("base64");
            (
                l["from"].as_str().expect("from").to_owned(),
                String::from_utf8(body).expect("utf-8"),
            )
        })
        .collect()
}

fn send(acc: &Account, dev: &str, to: Option<&str>, body: &str) {
    let mut cmd = acc.cmd(dev);
    cmd.arg("send");
    match to {
        Some(id) => cmd.args(["--to", id]),
        None => cmd.arg("--all"),
    };
    let out = run_with_input(cmd, body.as_bytes());
    assert!(
        out.status.success(),
        "send failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn four_devices_pair_and_exchange_messages_exactly_once() {
    let acc = Account::new();
    let a = acc.init("a");
    assert_eq!(a["role"], "founder");
    assert_eq!(a["account"], acc.user.as_str());
    assert_eq!(a["folders"]["announce"], "_Autocrypt_SMA");
    for d in ["b", "c", "d"] {
        assert_eq!(acc.init(d)["role"], "pending");
    }
    acc.pair("a", "b");
    // A device paired by a member that is not the founder.
    acc.pair("b", "c");
    acc.pair("a", "d");
    let ids: BTreeMap<&str, String> = ["a", "b", "c", "d"]
        .iter()
        .map(|d| (*d, acc.device_id(d)))
        .collect();
    for d in ["a", "b", "c", "d"] {
        acc.ok(d, &["sync"]);
    }
    for d in ["a", "b", "c", "d"] {
        let devices = acc.ok(d, &["devices"]);
        assert_eq!(devices.len(), 4, "{d} sees {devices:?}");
        assert!(
            devices.iter().all(|v| v["state"] == "active"),
            "{d}: {devices:?}"
        );
        assert_eq!(devices.iter().filter(|v| v["self"] == true).count(), 1);
    }
    // Every member holds the same account key.
    let fprs: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|d| acc.ok(d, &["account-key", "show"])[0]["fingerprint"].clone())
        .collect();
    assert!(fprs
        .iter()
        .all(|f| f == &fprs[0] && f.as_str().is_some_and(|s| s.len() == 40)));

    send(&acc, "c", None, "broadcast from c");
    send(&acc, "a", Some(&ids["d"]), "unicast a to d");
    for d in ["a", "b", "d"] {
        let got = bodies(&acc.ok(d, &["recv"]));
        let mut want = vec![(ids["c"].clone(), "broadcast from c".to_owned())];
        if d == "d" {
            want.push((ids["a"].clone(), "unicast a to d".to_owned()));
        }
        let mut got_sorted = got.clone();
        got_sorted.sort();
        want.sort();
        assert_eq!(got_sorted, want, "device {d}");
        // Delivered exactly once.
        assert!(
            acc.ok(d, &["recv"]).is_empty(),
            "device {d} got a message twice"
        );
    }
    assert!(
        acc.ok("c", &["recv"]).is_empty(),
        "the sender does not receive its own broadcast"
    );

    // Footprint: processed messages are gone, one announcement per device,
    // nothing in INBOX, nothing subscribed, every message marked, no secret
    // key in clear.
    for d in ["a", "b", "c", "d"] {
        acc.ok(d, &["sync"]);
    }
    let folders = acc.folders();
    for (name, count) in &folders {
        if name == "_Autocrypt_SMA" {
            assert_eq!(*count, 4, "one announcement per device: {folders:?}");
        } else if name.starts_with("_Autocrypt_SMA_") {
            // At most one unprocessed ack per sender may remain.
            assert!(*count <= 3, "inbox {name} holds {count}: {folders:?}");
        } else {
            assert_eq!(*count, 0, "{name} must stay empty: {folders:?}");
        }
    }
    assert_eq!(
        folders
            .iter()
            .filter(|(n, _)| n.starts_with("_Autocrypt_SMA_"))
            .count(),
        4
    );
    assert!(server()
        .subscriptions_on_disk(acc.index)
        .iter()
        .all(|s| !s.contains("Autocrypt")));
    let secret_file = acc.dir.path().join("account-secret.asc");
    acc.ok(
        "a",
        &[
            "account-key",
            "export",
            "--secret",
            "--out",
            common::path_str(&secret_file),
        ],
    );
    let armored = std::fs::read_to_string(&secret_file).expect("exported key");
    assert!(armored.contains("BEGIN PGP PRIVATE KEY BLOCK"));
    // A long line of the armored secret key must not appear anywhere on the server.
    let probe = armored
        .lines()
        .filter(|l| l.len() >= 60 && !l.contains(':'))
        .nth(1)
        .expect("armor body line")
        .to_owned();
    for (path, bytes) in server().all_messages_on_disk(acc.index) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("Autocrypt-SMA: v=2;"),
            "{path} lacks the marker header"
        );
        assert!(text.contains("Auto-Submitted: auto-generated"), "{path}");
        assert!(
            !text.contains("PRIVATE KEY"),
            "{path} holds a secret key in clear"
        );
        assert!(
            !text.contains(&probe),
            "{path} holds account key material in clear"
        );
    }
}

#[test]
fn wrong_code_is_rejected_on_both_sides_and_a_fresh_pair_works() {
    let acc = Account::new();
    acc.init("a");
    acc.init("b");
    let mut pair = acc.spawn_pair("a", &["--timeout", "60"]);
    let code = read_code(&mut pair);
    // The last digit changed: the first names the member's request
    // (PROTOCOL 9.1), so the joiner answers it and the member rejects it.
    let last = code.chars().last().expect("a digit");
    let other = if last == '0' { '1' } else { '0' };
    let wrong = format!("{}{other}", &code[..code.len() - 1]);
    let joined = acc.run("b", &["join", "--code", &wrong]);
    assert_eq!(joined.status.code(), Some(3), "joiner exits 3");
    assert_eq!(stderr_json(&joined)["kind"], "rejected");
    let out = pair.wait_with_output().expect("pair");
    assert_eq!(
        out.status.code(),
        Some(3),
        "member exits 3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Malformed code: usage error.
    assert_eq!(
        acc.run("b", &["join", "--code", "12-34"]).status.code(),
        Some(2)
    );
    // Both still usable.
    acc.pair("a", "b");
    let devices = acc.ok("a", &["devices"]);
    assert_eq!(devices.len(), 2);
    // No pairing leftovers in either inbox once both synced.
    acc.ok("a", &["sync"]);
    acc.ok("b", &["sync"]);
    for (name, count) in acc.folders() {
        if name.starts_with("_Autocrypt_SMA_") {
            assert!(count <= 1, "{name} holds {count} messages after pairing");
        }
    }
}

#[test]
fn three_devices_broadcasting_concurrently_receive_everything_once() {
    const N: usize = 30;
    let acc = Account::new();
    acc.init("a");
    acc.init("b");
    acc.init("c");
    acc.pair("a", "b");
    acc.pair("a", "c");
    for d in ["a", "b", "c"] {
        acc.ok(d, &["sync"]);
    }
    let ids: BTreeMap<&str, String> = ["a", "b", "c"]
        .iter()
        .map(|d| (*d, acc.device_id(d)))
        .collect();
    // Three processes at a time append to each other's inboxes.
    std::thread::scope(|s| {
        for d in ["a", "b", "c"] {
            let acc = &acc;
            s.spawn(move || {
                for i in 0..N {
                    send(acc, d, None, &format!("{d}-{i}"));
                }
            });
        }
    });
    for d in ["a", "b", "c"] {
        let mut got = bodies(&acc.ok(d, &["recv"]));
        got.sort();
        let mut want: Vec<(String, String)> = ["a", "b", "c"]
            .iter()
            .filter(|o| **o != d)
            .flat_map(|o| (0..N).map(move |i| (o, i)))
            .map(|(o, i)| (ids[o].clone(), format!("{o}-{i}")))
            .collect();
        want.sort();
        assert_eq!(
            got, want,
            "device {d} must get each other message exactly once"
        );
        assert!(acc.ok(d, &["recv"]).is_empty());
    }
}

#[test]
fn replayed_and_forged_messages_are_not_delivered() {
    let acc = Account::new();
    acc.init("a");
    acc.init("b");
    acc.pair("a", "b");
    let b_id = acc.device_id("b");
    send(&acc, "a", Some(&b_id), "only once");
    // Copy the message file before b processes it, then put it back: a replay.
    let inbox = format!("_Autocrypt_SMA_{b_id}");
    let copy: Vec<Vec<u8>> = server()
        .all_messages_on_disk(acc.index)
        .into_iter()
        .filter(|(p, b)| p.contains(&inbox) && String::from_utf8_lossy(b).contains("kind=app"))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(copy.len(), 1);
    assert_eq!(bodies(&acc.ok("b", &["recv"])).len(), 1);
    replay_into(&acc, &inbox, &copy[0]);
    assert!(
        acc.ok("b", &["recv"]).is_empty(),
        "a replay was delivered again"
    );
    assert_eq!(acc.count(&inbox), 0, "the replay is deleted");
}

/// Appends raw bytes to a folder as someone holding the IMAP password would.
fn replay_into(acc: &Account, folder: &str, bytes: &[u8]) {
    use std::io::{Read, Write};
    let s = server();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", s.plain_port())).expect("connect");
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok();
    let mut buf = [0u8; 4096];
    let mut read_until = |tcp: &mut std::net::TcpStream, tag: &str| {
        let mut acc_text = String::new();
        loop {
            let n = tcp.read(&mut buf).expect("read");
            assert!(n > 0, "server closed: {acc_text}");
            acc_text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if acc_text.contains(tag) {
                return acc_text;
            }
        }
    };
    read_until(&mut tcp, "\r\n");
    write!(tcp, "a LOGIN {} {}\r\n", acc.user, acc.password).unwrap();
    assert!(read_until(&mut tcp, "a ").contains("a OK"));
    write!(tcp, "b APPEND {folder} {{{}+}}\r\n", bytes.len()).unwrap();
    tcp.write_all(bytes).unwrap();
    tcp.write_all(b"\r\n").unwrap();
    let resp = read_until(&mut tcp, "b ");
    assert!(resp.contains("b OK"), "append failed: {resp}");
    write!(tcp, "c LOGOUT\r\n").unwrap();
}

#[test]
fn watch_delivers_messages_as_events_and_removes_them() {
    let acc = Account::new();
    acc.init("a");
    acc.init("b");
    acc.pair("a", "b");
    let b_id = acc.device_id("b");
    let mut cmd = acc.cmd("b");
    cmd.arg("watch");
    let (mut watch, rx) = common::spawn_lines(cmd);
    send(&acc, "a", Some(&b_id), "first");
    send(&acc, "a", None, "second");
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while got.len() < 2 && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(1)) {
            let v: serde_json::Value =
                serde_json::from_str(&line).expect("watch prints JSON lines");
            assert!(v["event"].is_string(), "every line is an event: {line}");
            if v["event"] == "message" {
                got.push(v);
            }
        }
    }
    // Interrupt as a person would (Ctrl-C): watch stops cleanly.
    let _ = std::process::Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status();
    let status = watch.wait().expect("watch exit");
    assert!(status.success(), "watch exits 0 on Ctrl-C: {status:?}");
    assert_eq!(got.len(), 2, "watch delivered {got:?}");
    let mut texts = bodies(&got).into_iter().map(|(_, b)| b).collect::<Vec<_>>();
    texts.sort();
    assert_eq!(texts, ["first", "second"]);
    assert!(got
        .iter()
        .all(|v| v["kind"] == "text" && v["sent_at"].is_string()));
    assert!(
        acc.ok("b", &["recv"]).is_empty(),
        "watch removed what it delivered"
    );
}
