//! The hostile provider: tests that act as someone holding the IMAP password
//! (the provider, or a thief of the password). They forge announcements,
//! inject pairing messages, replay, tamper, impersonate removed devices,
//! send oversized, garbage, truncated and future-version messages, and
//! delete the announcements folder. Each time the device rejects or ignores
//! the input (with a log line where the spec asks for one), its state does
//! not change, and it keeps working: nothing already delivered is lost.

mod common;

use std::collections::BTreeSet;

use base64::Engine as _;
use common::{json_lines, messages_in, replay_into, Account, RawImap};
use rand::rngs::OsRng;
use serde_json::Value;
use sma_crypto::DeviceKey;
use sma_proto::core::CoreState;
use sma_proto::device::{build_announcement, verify_announcement, Identity};
use sma_proto::envelope::{peek_marker, Body, Envelope, Kind, Marker, Recipient};
use sma_proto::folders::Layout;
use sma_proto::ids::{MessageId, RandomId};
use sma_proto::payload::{
    self, AnnouncedState, AppBody, PairHello, PairReply, PairWelcome, SealedContent,
};
use sma_proto::state::{Change, MemberRecord, MemberStatus};
use sma_proto::DeviceId;
use sma_proto::{Engine, Timestamp};

const ANNOUNCE: &str = "_Autocrypt_SMA";

fn inbox(id: &str) -> String {
    format!("{ANNOUNCE}_{id}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Founds with `a`, pairs the others, syncs everyone; returns the ids.
fn group(acc: &Account, names: &[&str]) -> Vec<String> {
    for n in names {
        acc.init(n);
    }
    for n in &names[1..] {
        acc.pair(names[0], n);
    }
    for n in names {
        acc.ok(n, &["sync"]);
    }
    names.iter().map(|n| acc.device_id(n)).collect()
}

/// `sync` that must succeed; returns its JSON line and its stderr.
fn sync(acc: &Account, dev: &str) -> (Value, String) {
    let out = acc.run(dev, &["sync", "-v"]);
    assert!(
        out.status.success(),
        "sync on {dev} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A log that goes to a pipe or a file is plain text, no colour codes.
    assert!(
        !out.stderr.contains(&0x1b),
        "escape codes in a piped log: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = json_lines(&out.stdout);
    (
        lines.remove(0),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn send(acc: &Account, from: &str, to: &str, body: &str) -> String {
    let file = acc.dir.path().join(format!("body-{body}"));
    std::fs::write(&file, body).expect("body file");
    let out = acc.ok(from, &["send", "--to", to, file.to_str().expect("utf-8")]);
    out[0]["message_id"]
        .as_str()
        .expect("message id")
        .to_owned()
}

fn recv(acc: &Account, dev: &str) -> Vec<String> {
    acc.ok(dev, &["recv"])
        .iter()
        .map(|l| {
            let b = base64::engine::general_purpose::STANDARD
                .decode(l["body_b64"].as_str().expect("body_b64"))
                .expect("base64");
            String::from_utf8(b).expect("utf-8")
        })
        .collect()
}

/// The active members `dev` knows, sorted.
fn active(acc: &Account, dev: &str) -> Vec<String> {
    let mut v: Vec<String> = acc
        .ok(dev, &["devices"])
        .iter()
        .filter(|d| d["state"] == "active")
        .map(|d| d["device_id"].as_str().expect("id").to_owned())
        .collect();
    v.sort();
    v
}

fn keyring(acc: &Account, dev: &str) -> BTreeSet<String> {
    acc.ok(dev, &["keys", "list"])
        .iter()
        .filter_map(|k| k["addr"].as_str().map(str::to_owned))
        .collect()
}

/// Takes the message with id `id` out of `folder` before its owner sees it:
/// returns its bytes.
fn intercept(acc: &Account, folder: &str, id: &str) -> Vec<u8> {
    let bytes = messages_in(acc, folder)
        .into_iter()
        .find(|m| String::from_utf8_lossy(m).contains(id))
        .unwrap_or_else(|| panic!("message {id} not in {folder}"));
    let mut imap = RawImap::for_account(acc);
    assert_eq!(imap.expunge_message_id(folder, id), 1);
    imap.logout();
    bytes
}

fn fresh_identity(acc: &Account) -> Identity {
    let id = DeviceId::random(&mut OsRng);
    let key = DeviceKey::generate(&mut OsRng, id.as_str(), now()).expect("key");
    Identity {
        id,
        account: acc.user.clone(),
        key,
    }
}

/// A member record of `id` built from its announcement in *A*.
fn record_from_announcement(acc: &Account, id: &str) -> MemberRecord {
    for raw in messages_in(acc, ANNOUNCE) {
        let Ok(env) = Envelope::parse(&raw) else {
            continue;
        };
        let Ok((ann, cert)) = verify_announcement(&env) else {
            continue;
        };
        if ann.device_id.as_str() == id {
            return common::member_record(ann, &cert, MemberStatus::Active, now());
        }
    }
    panic!("no announcement of {id}");
}

fn plain_message(acc: &Account, kind: Kind, from: &DeviceId, to: &str, json: &[u8]) -> Vec<u8> {
    Envelope {
        account: acc.user.clone(),
        date: now(),
        marker: Marker {
            kind,
            from: from.clone(),
            to: Recipient::Device(DeviceId::parse(to).expect("id")),
            id: MessageId::random(&mut OsRng),
        },
        body: Body::Plain {
            payload: json.to_vec(),
        },
    }
    .to_bytes()
}

#[test]
fn forged_announcements_are_shown_pending_and_never_trusted() {
    let acc = Account::new();
    let ids = group(&acc, &["a", "b"]);
    // A stranger claiming to be a founding member, and one claiming b's id
    // with a fresh key.
    let stranger = fresh_identity(&acc);
    let mut impostor = fresh_identity(&acc);
    impostor.id = DeviceId::parse(&ids[1]).expect("id");
    for (who, name) in [(&stranger, "stranger"), (&impostor, "b")] {
        let bytes = build_announcement(
            &mut OsRng,
            who,
            name,
            now(),
            now() + 10,
            AnnouncedState::Member,
            Layout::Flat,
            true,
        )
        .expect("announcement");
        replay_into(&acc, ANNOUNCE, &bytes);
    }
    for dev in ["a", "b"] {
        sync(&acc, dev);
        let devices = acc.ok(dev, &["devices"]);
        let stranger_view = devices
            .iter()
            .find(|d| d["device_id"] == stranger.id.as_str())
            .expect("the stranger is listed");
        assert_eq!(stranger_view["state"], "pending", "{devices:?}");
        assert_eq!(active(&acc, dev), {
            let mut v = ids.clone();
            v.sort();
            v
        });
    }
    // Messages still flow both ways, sealed to the real b.
    send(&acc, "a", &ids[1], "still b");
    assert_eq!(recv(&acc, "b"), vec!["still b"]);
    // The forgeries are never deleted by readers (only ignored).
    let left = messages_in(&acc, ANNOUNCE)
        .iter()
        .filter(|m| peek_marker(m).is_ok_and(|k| k.from == stranger.id))
        .count();
    assert_eq!(left, 1);
}

#[test]
fn injected_pairing_messages_pair_nobody() {
    // Hello, reply and welcome, forged by someone who can write to the
    // folders but does not know the code.
    let acc = Account::new();
    acc.init("a");
    acc.init("c");
    let a_id = acc.device_id("a");
    let c_id = acc.device_id("c");
    // A hello from a device that does not exist, and a reply to a pairing
    // nobody runs.
    let fake = fresh_identity(&acc);
    // Its attempt fits the code typed below (first digit 1, PROTOCOL 9.1),
    // so the joiner does answer it.
    let attempt = std::iter::repeat_with(|| RandomId::random(&mut OsRng))
        .find(|a| sma_proto::pairing::code_selector(a) == 1)
        .expect("an attempt id");
    let hello = PairHello {
        attempt,
        account: acc.user.clone(),
        member_id: fake.id.clone(),
        joiner_id: DeviceId::parse(&c_id).expect("id"),
        member_cert: fake.cert().to_armored(),
        spake: vec![7; 33],
    };
    let bytes = plain_message(
        &acc,
        Kind::PairHello,
        &fake.id,
        &c_id,
        &payload::to_json(&hello),
    );
    replay_into(&acc, &inbox(&c_id), &bytes);
    let reply = PairReply {
        attempt: RandomId::random(&mut OsRng),
        member_id: DeviceId::parse(&a_id).expect("id"),
        joiner_id: fake.id.clone(),
        joiner_cert: fake.cert().to_armored(),
        spake: vec![9; 33],
        confirm: vec![1; 32],
    };
    let bytes = plain_message(
        &acc,
        Kind::PairReply,
        &fake.id,
        &a_id,
        &payload::to_json(&reply),
    );
    replay_into(&acc, &inbox(&a_id), &bytes);
    // The joiner answers the forged hello and gets nowhere.
    let out = acc.run("c", &["join", "--code", "1234-5678-9012", "--timeout", "5"]);
    assert!(!out.status.success(), "a forged hello must not pair");
    assert_eq!(acc.ok("c", &["status"])[0]["role"], "pending");
    // The member is unaffected by the stray reply.
    sync(&acc, "a");
    assert_eq!(active(&acc, "a"), vec![a_id.clone()]);
    // A welcome of another attempt, claiming to come from the real member:
    // the joiner opens only the welcome of the attempt it answered.
    let welcome = PairWelcome {
        attempt: RandomId::random(&mut OsRng),
        sealed: vec![3; 200],
        part: None,
    };
    let a = DeviceId::parse(&a_id).expect("id");
    let bytes = plain_message(
        &acc,
        Kind::PairWelcome,
        &a,
        &c_id,
        &payload::to_json(&welcome),
    );
    replay_into(&acc, &inbox(&c_id), &bytes);
    // A real pairing still works afterwards.
    acc.pair("a", "c");
    sync(&acc, "a");
    let mut want = vec![a_id, c_id];
    want.sort();
    assert_eq!(active(&acc, "a"), want);
    assert_eq!(active(&acc, "c"), want);
}

#[test]
fn replayed_sync_and_application_messages_change_nothing() {
    let acc = Account::new();
    let ids = group(&acc, &["a", "b"]);
    let key =
        sma_crypto::AccountKey::generate(&mut OsRng, "carol@example.net", now()).expect("key");
    let file = acc.dir.path().join("carol.asc");
    std::fs::write(&file, key.public_armored()).expect("key file");
    acc.ok(
        "a",
        &[
            "keys",
            "import",
            "carol@example.net",
            file.to_str().expect("utf-8"),
        ],
    );
    sync(&acc, "a");
    let b_inbox = inbox(&ids[1]);
    let sync_msg = messages_in(&acc, &b_inbox)
        .into_iter()
        .find(|m| peek_marker(m).is_ok_and(|k| k.kind == Kind::Sync))
        .expect("a sync message for b");
    let (first, _) = sync(&acc, "b");
    assert!(first["applied"].as_u64() >= Some(1), "{first}");
    assert!(keyring(&acc, "b").contains("carol@example.net"));
    replay_into(&acc, &b_inbox, &sync_msg);
    let (again, _) = sync(&acc, "b");
    assert_eq!(again["applied"], 0, "a replayed sync applied ops again");
    let id = peek_marker(&sync_msg).expect("marker").id.to_string();
    assert!(
        messages_in(&acc, &b_inbox)
            .iter()
            .all(|m| !String::from_utf8_lossy(m).contains(&id)),
        "the replay is deleted"
    );
    let app_id = send(&acc, "a", &ids[1], "once");
    let app = messages_in(&acc, &b_inbox)
        .into_iter()
        .find(|m| String::from_utf8_lossy(m).contains(&app_id))
        .expect("the app message");
    assert_eq!(recv(&acc, "b"), vec!["once"]);
    replay_into(&acc, &b_inbox, &app);
    assert!(recv(&acc, "b").is_empty(), "a replay was delivered again");
}

#[test]
fn tampered_ciphertext_and_forged_signatures_are_quarantined() {
    let acc = Account::new();
    let ids = group(&acc, &["a", "b"]);
    let b_inbox = inbox(&ids[1]);
    // A real message with one character of its ciphertext changed.
    let id = send(&acc, "a", &ids[1], "tampered");
    let original = intercept(&acc, &b_inbox, &id);
    let text = String::from_utf8(original).expect("7-bit message");
    let pos = common::inside_armor(&text, "-----BEGIN PGP MESSAGE-----");
    let mut bytes = text.into_bytes();
    bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
    replay_into(&acc, &b_inbox, &bytes);
    // A message claiming to come from a but sealed with another key.
    let mut forger = fresh_identity(&acc);
    forger.id = DeviceId::parse(&ids[0]).expect("id");
    let mut member = Engine::new(forger, CoreState::default()).expect("engine");
    member
        .commit(
            Change::Member(record_from_announcement(&acc, &ids[1])),
            Timestamp::from_secs(now()),
        )
        .expect("record");
    let b = DeviceId::parse(&ids[1]).expect("id");
    let forged = member
        .seal(
            &mut OsRng,
            Timestamp::from_secs(now()),
            (Kind::App, Recipient::Device(b.clone())),
            &[b],
            SealedContent::App(AppBody {
                app_kind: "text".into(),
                body: b"forged".to_vec(),
            }),
        )
        .expect("seal");
    replay_into(&acc, &b_inbox, &forged.bytes);
    let (_, log) = sync(&acc, "b");
    assert_eq!(
        log.matches("quarantined").count(),
        2,
        "one log line per rejected message: {log}"
    );
    assert!(recv(&acc, "b").is_empty());
    assert_eq!(acc.count(&b_inbox), 0, "both are deleted");
    // An announcement whose signature was altered is ignored.
    let ann = messages_in(&acc, ANNOUNCE)
        .into_iter()
        .find(|m| peek_marker(m).is_ok_and(|k| k.from.as_str() == ids[0]))
        .expect("a's announcement");
    let text = String::from_utf8(ann).expect("7-bit");
    let pos = common::inside_armor(&text, "-----BEGIN PGP SIGNATURE-----");
    let mut bad = text.into_bytes();
    bad[pos] = if bad[pos] == b'A' { b'B' } else { b'A' };
    replay_into(&acc, ANNOUNCE, &bad);
    let out = acc.run("b", &["devices"]);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("invalid announcement ignored").count(),
        1,
        "one log line for the forged announcement: {log}"
    );
    let mut want = ids.clone();
    want.sort();
    assert_eq!(active(&acc, "b"), want);
    // The device keeps working.
    send(&acc, "a", &ids[1], "after");
    assert_eq!(recv(&acc, "b"), vec!["after"]);
}

#[test]
fn messages_of_a_removed_device_are_not_applied() {
    let acc = Account::new();
    let ids = group(&acc, &["a", "b", "c"]);
    let a_inbox = inbox(&ids[0]);
    // c writes a keyring entry and a message for a; both are held back.
    let key = sma_crypto::AccountKey::generate(&mut OsRng, "evil@example.org", now()).expect("key");
    let file = acc.dir.path().join("evil.asc");
    std::fs::write(&file, key.public_armored()).expect("key file");
    acc.ok(
        "c",
        &[
            "keys",
            "import",
            "evil@example.org",
            file.to_str().expect("utf-8"),
        ],
    );
    acc.ok("c", &["sync"]);
    let app_id = send(&acc, "c", &ids[0], "from c");
    let held_app = intercept(&acc, &a_inbox, &app_id);
    // (`send` syncs first; c's sync message is in a's inbox once.)
    let sync_id = messages_in(&acc, &a_inbox)
        .iter()
        .filter_map(|m| peek_marker(m).ok())
        .find(|k| k.kind == Kind::Sync && k.from.as_str() == ids[2])
        .expect("c's sync to a")
        .id
        .to_string();
    let held_sync = intercept(&acc, &a_inbox, &sync_id);
    acc.ok("a", &["remove", &ids[2]]);
    replay_into(&acc, &a_inbox, &held_sync);
    replay_into(&acc, &a_inbox, &held_app);
    let (_, log) = sync(&acc, "a");
    assert_eq!(
        log.matches("from a device that is removed; not opened")
            .count(),
        2,
        "both messages of the removed device are deleted unopened: {log}"
    );
    assert!(
        recv(&acc, "a").is_empty(),
        "a removed device's message was delivered"
    );
    assert!(!keyring(&acc, "a").contains("evil@example.org"));
    let devices = acc.ok("a", &["devices"]);
    assert!(devices
        .iter()
        .any(|d| d["device_id"] == ids[2].as_str() && d["state"] == "removed"));
    // b applied c's change before it learnt of the removal. a fixed c's
    // final seq at what a held, so c's later op is indistinguishable from one
    // made with a stolen key: a refuses b's relay of it, and b keeps the
    // effect and says so (PROTOCOL.md section 10.5).
    acc.ok("b", &["sync"]);
    sync(&acc, "a");
    assert!(keyring(&acc, "b").contains("evil@example.org"));
    assert!(
        !keyring(&acc, "a").contains("evil@example.org"),
        "an op above the removal's final seq is refused even when relayed"
    );
    let status = acc.ok("b", &["status"]);
    let warnings = status[0]["sync_warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w["kind"] == "after_removal" && w["device_id"] == ids[2].as_str()),
        "b reports what it applied after c's removal: {status:?}"
    );
    // a and b keep working.
    send(&acc, "b", &ids[0], "from b");
    assert_eq!(recv(&acc, "a"), vec!["from b"]);
}

#[test]
fn oversized_garbage_truncated_and_future_messages_leave_the_device_working() {
    let acc = Account::new();
    let ids = group(&acc, &["a", "b"]);
    let b_inbox = inbox(&ids[1]);
    let marker = |v: &str, kind: &str, to: &str| {
        format!(
            "From: <{u}>\r\nTo: <{u}>\r\nSubject: x\r\nMessage-ID: <{id}@sma.invalid>\r\nAutocrypt-SMA: v={v}; kind={kind}; from={from}; to={to}; id={id}\r\n",
            u = acc.user,
            id = MessageId::random(&mut OsRng),
            from = ids[0],
        )
    };
    let mut oversized = marker("2", "app", &ids[1]);
    oversized.push_str("Content-Type: text/plain\r\n\r\n");
    oversized.push_str(&"x".repeat(76).repeat(20_000).replace("xx", "x\r\n"));
    let real_id = send(&acc, "a", &ids[1], "real");
    let real = intercept(&acc, &b_inbox, &real_id);
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("oversized", oversized.into_bytes()),
        (
            "garbage",
            b"\x01garbage\xff\xfe without any header".to_vec(),
        ),
        ("truncated", real[..real.len() / 2].to_vec()),
        (
            "no body",
            (marker("2", "app", &ids[1]) + "\r\n").into_bytes(),
        ),
        (
            "other recipient",
            (marker("2", "sync", "0123456789abcdef") + "\r\n").into_bytes(),
        ),
        (
            "future version",
            (marker("3", "app", &ids[1]) + "\r\nlater\r\n").into_bytes(),
        ),
        (
            "version 1",
            (marker("1", "app", &ids[1]) + "\r\nolder\r\n").into_bytes(),
        ),
        (
            "unknown kind",
            (marker("2", "frobnicate", &ids[1]) + "\r\nx\r\n").into_bytes(),
        ),
    ];
    for (_, bytes) in &inputs {
        replay_into(&acc, &b_inbox, bytes);
    }
    let (report, log) = sync(&acc, "b");
    assert_eq!(report["applied"], 0);
    assert!(log.contains("oversized"), "{log}");
    assert!(recv(&acc, "b").is_empty());
    // Other versions and unknown kinds are left for other software; the
    // rest is gone.
    let left: Vec<String> = messages_in(&acc, &b_inbox)
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.iter().any(|m| m.contains("v=3; kind=app")));
    assert!(left.iter().any(|m| m.contains("v=1; kind=app")));
    assert!(left.iter().any(|m| m.contains("kind=frobnicate")));
    // And the device keeps working.
    send(&acc, "a", &ids[1], "fine");
    assert_eq!(recv(&acc, "b"), vec!["fine"]);
}

#[test]
fn a_deleted_announcements_folder_is_recreated() {
    let acc = Account::new();
    let ids = group(&acc, &["a", "b"]);
    let mut imap = RawImap::for_account(&acc);
    assert!(imap.delete_folder(ANNOUNCE));
    imap.logout();
    // Members keep working without it.
    for dev in ["a", "b"] {
        sync(&acc, dev);
    }
    send(&acc, "a", &ids[1], "no announcements");
    assert_eq!(recv(&acc, "b"), vec!["no announcements"]);
    // With its inbox gone too, b recreates both and announces itself again
    // instead of concluding that it was removed.
    let mut imap = RawImap::for_account(&acc);
    imap.delete_folder(ANNOUNCE);
    assert!(imap.delete_folder(&inbox(&ids[1])));
    imap.logout();
    let (_, log) = sync(&acc, "b");
    assert!(log.contains("vanished"), "{log}");
    assert!(acc.count(ANNOUNCE) >= 1);
    let mut want = ids.clone();
    want.sort();
    assert_eq!(active(&acc, "a"), want);
    assert_eq!(active(&acc, "b"), want);
    // A new device finds the group again and is paired into it.
    acc.init("c");
    assert_eq!(acc.ok("c", &["status"])[0]["role"], "pending");
    acc.pair("b", "c");
    send(&acc, "a", &ids[1], "after");
    assert_eq!(recv(&acc, "b"), vec!["after"]);
}
