//! Membership attacks on protocol version 2, carried out on a real Dovecot
//! against the real `sma` binary by someone holding the account password
//! (the provider, or a thief of the password). Each test performs one
//! attack and shows that it now fails: removals cannot be undone or
//! suppressed by deleting folders and messages, impostor and unusable
//! announcements are refused by `pair`, signatures cannot be re-used for
//! another purpose, forged removal notices remove nobody, and a failing
//! SELECT of the own inbox is never taken for a removal.
//!
//! Two attacks that worked against the first version 2 code are here too:
//! `a_removed_devices_key_cannot_remove_a_member` (a removal notice signed
//! with a removed device's key) and
//! `a_removed_device_cannot_slip_in_an_account_key_through_a_late_member`
//! (ops a removed device writes after its removal, relayed by a member that
//! had not heard of the removal yet); both fail now (PROTOCOL 10.5,
//! `final_seq`).
//!
//! The in-process attacks that need a shifted clock (relay against
//! selective deletion, deleted announcements over 90+ days) are in
//! `crates/sma/tests/liveness_attacks.rs`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use common::{json_lines, messages_in, replay_into, server, stderr_json, Account, RawImap};
use rand::rngs::OsRng;
use serde_json::{json, Value};
use sma_crypto::{Certificate, DeviceKey};
use sma_proto::device::{build_announcement, verify_announcement, Identity};
use sma_proto::envelope::{peek_marker, Body, Envelope, Kind, Marker, Recipient};
use sma_proto::folders::Layout;
use sma_proto::hlc::Hlc;
use sma_proto::ids::MessageId;
use sma_proto::ops::SignedOp;
use sma_proto::payload::{self, AnnouncedState, Announcement, RemovalNotice, PAYLOAD_VERSION};
use sma_proto::state::{Change, MemberRecord, MemberStatus};
use sma_proto::DeviceId;

const ANNOUNCE: &str = "_Autocrypt_SMA";

// ---------------------------------------------------------------------------
// Helpers (the provider's tools and short-hands for running devices).

fn inbox(id: &str) -> String {
    format!("{ANNOUNCE}_{id}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Founds with the first name, pairs the others, syncs everyone twice;
/// returns the ids in the order of `names`.
fn group(acc: &Account, names: &[&str]) -> Vec<String> {
    for n in names {
        acc.init(n);
    }
    for n in &names[1..] {
        acc.pair(names[0], n);
    }
    for _ in 0..2 {
        for n in names {
            acc.ok(n, &["sync"]);
        }
    }
    names.iter().map(|n| acc.device_id(n)).collect()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `sync -v` that must succeed; returns its JSON line and its log.
fn sync(acc: &Account, dev: &str) -> (Value, String) {
    let out = acc.run(dev, &["sync", "-v"]);
    assert!(
        out.status.success(),
        "sync on {dev} failed: {}",
        describe(&out)
    );
    let mut lines = json_lines(&out.stdout);
    (
        lines.remove(0),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that must fail because the device was removed (exit 4).
fn assert_removed(acc: &Account, dev: &str, args: &[&str]) {
    let out = acc.run(dev, args);
    assert_eq!(
        out.status.code(),
        Some(4),
        "sma {args:?} on {dev}: {}",
        describe(&out)
    );
    assert_eq!(stderr_json(&out)["kind"], "removed");
}

fn body_file(acc: &Account, body: &str) -> String {
    let file = acc.dir.path().join(format!("body-{body}"));
    std::fs::write(&file, body).expect("body file");
    file.to_str().expect("utf-8").to_owned()
}

/// `send --to` that must succeed; returns the message id.
fn send(acc: &Account, from: &str, to: &str, body: &str) -> String {
    let out = acc.ok(from, &["send", "--to", to, &body_file(acc, body)]);
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

/// The fingerprint of the current account key as `dev` knows it.
fn account_key(acc: &Account, dev: &str) -> String {
    acc.ok(dev, &["account-key", "show"])[0]["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned()
}

/// The row of `id` in `dev`'s `devices`.
fn device_row(acc: &Account, dev: &str, id: &str) -> Value {
    acc.ok(dev, &["devices"])
        .into_iter()
        .find(|d| d["device_id"] == id)
        .unwrap_or_else(|| panic!("{dev} does not list {id}"))
}

fn state_of(acc: &Account, dev: &str, id: &str) -> String {
    device_row(acc, dev, id)["state"]
        .as_str()
        .expect("state")
        .to_owned()
}

fn status(acc: &Account, dev: &str) -> Value {
    acc.ok(dev, &["status"]).remove(0)
}

/// The markers of the SMA messages in `folder` (read from the server's
/// disk); other files are skipped.
fn markers(acc: &Account, folder: &str) -> Vec<Marker> {
    messages_in(acc, folder)
        .iter()
        .filter_map(|m| peek_marker(m).ok())
        .collect()
}

/// The raw messages in `folder` whose marker satisfies `pred`.
fn raw_where(acc: &Account, folder: &str, pred: impl Fn(&Marker) -> bool) -> Vec<Vec<u8>> {
    messages_in(acc, folder)
        .into_iter()
        .filter(|m| peek_marker(m).is_ok_and(|k| pred(&k)))
        .collect()
}

/// As the provider: deletes the messages of `folder` whose marker
/// satisfies `pred`; returns how many.
fn expunge_where(acc: &Account, folder: &str, pred: impl Fn(&Marker) -> bool) -> usize {
    let ids: Vec<String> = markers(acc, folder)
        .into_iter()
        .filter(|m| pred(m))
        .map(|m| m.id.to_string())
        .collect();
    if ids.is_empty() {
        return 0;
    }
    let mut imap = RawImap::for_account(acc);
    let n = ids
        .iter()
        .map(|id| imap.expunge_message_id(folder, id))
        .sum();
    imap.logout();
    n
}

fn from(id: &str) -> impl Fn(&Marker) -> bool + '_ {
    move |m: &Marker| m.from.as_str() == id
}

/// A device identity the attacker made (a key nobody in the group knows).
fn fresh_identity(acc: &Account) -> Identity {
    let id = DeviceId::random(&mut OsRng);
    let key = DeviceKey::generate(&mut OsRng, id.as_str(), now()).expect("key");
    Identity {
        id,
        account: acc.user.clone(),
        key,
    }
}

/// The verified announcements of `id` in *A*, with their certificates.
fn announcements_of(acc: &Account, id: &str) -> Vec<(Envelope, Announcement, Certificate)> {
    raw_where(acc, ANNOUNCE, from(id))
        .iter()
        .filter_map(|raw| {
            let env = Envelope::parse(raw).ok()?;
            let (ann, cert) = verify_announcement(&env).ok()?;
            Some((env, ann, cert))
        })
        .collect()
}

/// A member record of `id` built from its announcement in *A*, with
/// `status`.
fn record_of(acc: &Account, id: &str, status: MemberStatus) -> MemberRecord {
    let (_, ann, cert) = announcements_of(acc, id)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no announcement of {id}"));
    common::member_record(ann, &cert, status, now())
}

/// A plain SMA message as anyone with the password can write one.
fn plain_message(acc: &Account, kind: Kind, from: &str, to: &str, json: &[u8]) -> Vec<u8> {
    Envelope {
        account: acc.user.clone(),
        date: now(),
        marker: Marker {
            kind,
            from: DeviceId::parse(from).expect("id"),
            to: Recipient::Device(DeviceId::parse(to).expect("id")),
            id: MessageId::random(&mut OsRng),
        },
        body: Body::Plain {
            payload: json.to_vec(),
        },
    }
    .to_bytes()
}

/// A removal notice for `victim` carrying `ops`, as a message in its inbox.
fn notice_message(acc: &Account, from: &str, victim: &str, ops: Vec<SignedOp>) -> Vec<u8> {
    let notice = RemovalNotice {
        v: PAYLOAD_VERSION,
        device_id: DeviceId::parse(victim).expect("id"),
        ops,
    };
    plain_message(acc, Kind::Remove, from, victim, &payload::to_json(&notice))
}

/// An op by `origin`, signed with `key`, setting `rec` as given.
fn op_removing(key: &DeviceKey, origin: &DeviceId, seq: u64, rec: MemberRecord) -> SignedOp {
    let stamp = Hlc {
        ms: now() * 1000,
        counter: 0,
        device: origin.clone(),
    };
    SignedOp::sign(key, origin, seq, stamp, Change::Member(rec)).expect("sign op")
}

/// Whether any file of a device home contains `needle`.
fn home_contains(home: &Path, needle: &str) -> bool {
    std::fs::read_dir(home)
        .expect("home exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

/// Every message file of the account: (path, bytes).
fn everything_on_server(acc: &Account) -> Vec<(String, Vec<u8>)> {
    server().all_messages_on_disk(acc.index)
}

/// Reads one JSON line of a running `sma` (e.g. the `code` event of `pair`).
fn read_event(child: &mut std::process::Child) -> Value {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read event line");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad event line {line:?}: {e}"))
}

fn elapsed(started: std::time::Instant, what: &str) {
    eprintln!("{what}: {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------
// 1. Removal undone, remover silenced.

/// L removes LOST with a new account key; the provider deletes L's sync
/// message to P, L's announcement and L's whole inbox. L recreates its
/// folders (no exit 4, an incident in `status`) and sends the removal to P
/// again. P learns it and the new key. A replay of LOST's announcement in a
/// recreated, empty inbox makes nobody seal anything to LOST again; LOST
/// learns nothing new, its own messages are not opened, and it stops once a
/// member's removal notice reaches it.
#[test]
fn removal_survives_a_silenced_remover_and_a_replayed_announcement() {
    let started = std::time::Instant::now();
    let acc = Account::new();
    let ids = group(&acc, &["l", "p", "lost"]);
    let (l, p, lost) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let old_key = account_key(&acc, "l");
    assert_eq!(account_key(&acc, "lost"), old_key);
    // The provider keeps a copy of LOST's announcement for later.
    let lost_ann = raw_where(&acc, ANNOUNCE, from(&lost));
    assert_eq!(lost_ann.len(), 1, "one announcement of LOST");

    let out = acc.ok("l", &["remove", &lost, "--rotate-account-key"]);
    assert_eq!(out[0]["removed"], json!([lost]));
    assert_eq!(out[0]["pending_acks"], json!([p]));
    let new_key = account_key(&acc, "l");
    assert_ne!(new_key, old_key, "the account key was rotated");

    // The provider silences L: its sync message in P's inbox, its
    // announcement and its whole inbox folder go.
    let p_inbox = inbox(&p);
    let l_inbox = inbox(&l);
    assert!(
        expunge_where(&acc, &p_inbox, |m| m.kind == Kind::Sync
            && m.from.as_str() == l)
            >= 1,
        "L's removal sync was in P's inbox"
    );
    assert_eq!(expunge_where(&acc, ANNOUNCE, from(&l)), 1);
    let mut imap = RawImap::for_account(&acc);
    assert!(imap.delete_folder(&l_inbox));
    imap.logout();
    assert!(!acc.folders().iter().any(|(n, _)| n == &l_inbox));
    // P, syncing meanwhile, learns nothing (and L's inbox is missing).
    sync(&acc, "p");
    assert_eq!(state_of(&acc, "p", &lost), "active");
    assert_eq!(account_key(&acc, "p"), old_key);

    // L's next sync: not removed, its folders are back, an incident is
    // recorded, and the removal goes to P again.
    let (_, log) = sync(&acc, "l");
    assert!(
        acc.folders().iter().any(|(n, _)| n == &l_inbox),
        "L recreated its inbox"
    );
    assert_eq!(
        announcements_of(&acc, &l).len(),
        1,
        "L announced itself again"
    );
    let st = status(&acc, "l");
    let incidents = st["incidents"].as_array().expect("incidents");
    assert!(
        incidents
            .iter()
            .any(|i| i["what"].as_str().is_some_and(|w| w.contains("vanished"))),
        "status lists the incident: {st}"
    );
    assert_eq!(
        st["pending_removals"][0]["device_id"], lost,
        "the removal is still pending: {st}"
    );
    assert!(
        markers(&acc, &p_inbox)
            .iter()
            .any(|m| m.kind == Kind::Sync && m.from.as_str() == l),
        "L sent its sync message to P again: {log}"
    );
    let (report, _) = sync(&acc, "p");
    assert!(report["applied"].as_u64() >= Some(2), "{report}");
    assert_eq!(state_of(&acc, "p", &lost), "removed");
    assert_eq!(account_key(&acc, "p"), new_key, "P has the new key");
    // P's acknowledgement reaches L: the removal has landed.
    sync(&acc, "l");
    assert_eq!(status(&acc, "l")["pending_removals"], json!([]));

    // The provider re-creates LOST's inbox empty (the removal notice in it
    // is gone) and replays LOST's announcement.
    let lost_inbox = inbox(&lost);
    let mut imap = RawImap::for_account(&acc);
    assert!(imap.delete_folder(&lost_inbox));
    let created = imap.command(&format!("CREATE \"{lost_inbox}\""));
    assert!(created.contains(" OK"), "{created}");
    imap.logout();
    replay_into(&acc, ANNOUNCE, &lost_ann[0]);
    assert_eq!(acc.count(&lost_inbox), 0);
    // P's syncs and sends append nothing for LOST.
    sync(&acc, "p");
    let sent = acc.ok("p", &["send", "--all", &body_file(&acc, "to everyone")]);
    assert_eq!(sent[0]["to"], json!([l]), "send --all goes to L only");
    sync(&acc, "p");
    sync(&acc, "l");
    assert_eq!(acc.count(&lost_inbox), 0, "nothing was sealed to LOST");
    assert_eq!(state_of(&acc, "p", &lost), "removed");
    assert_eq!(state_of(&acc, "l", &lost), "removed");
    assert_eq!(recv(&acc, "l"), vec!["to everyone"]);

    // LOST itself (without the notice) learns nothing it can read, and what
    // it sends is deleted unopened.
    sync(&acc, "lost");
    let lost_sent = acc.ok("lost", &["send", "--all", &body_file(&acc, "from lost")]);
    assert_eq!(lost_sent[0]["to"].as_array().map(Vec::len), Some(2));
    assert_eq!(account_key(&acc, "lost"), old_key);
    for dev in ["l", "p"] {
        let (_, log) = sync(&acc, dev);
        assert!(
            log.contains("from a device that is removed; not opened"),
            "{dev} deletes LOST's message unopened: {log}"
        );
        assert!(recv(&acc, dev).is_empty());
    }

    // A member's expiry pass deletes the replayed announcement and leaves
    // its removal notice again: LOST stops.
    let out = acc.ok("p", &["gc"]);
    assert_eq!(out[0]["removed"], json!([]));
    assert!(
        announcements_of(&acc, &lost).is_empty(),
        "the replayed announcement was deleted"
    );
    assert!(markers(&acc, &lost_inbox)
        .iter()
        .all(|m| m.kind == Kind::Remove));
    for raw in messages_in(&acc, &lost_inbox) {
        let env = Envelope::parse(&raw).expect("notice parses");
        assert!(
            matches!(env.body, Body::Plain { .. }),
            "only plain notices in LOST's inbox"
        );
    }
    assert_removed(&acc, "lost", &["sync"]);
    assert_removed(&acc, "lost", &["sync"]);
    assert!(
        !home_contains(&acc.home("lost"), &new_key),
        "LOST learnt the new account key"
    );
    assert!(
        everything_on_server(&acc)
            .iter()
            .all(|(_, b)| !b.windows(new_key.len()).any(|w| w == new_key.as_bytes())),
        "the new key is nowhere in clear on the server"
    );
    elapsed(started, "removal_survives_a_silenced_remover");
}

// ---------------------------------------------------------------------------
// 2. Relay beats selective deletion (shown here with a deletion done once;
//    the persistent deletion with a shifted clock is in the sma crate's
//    `liveness_attacks.rs`).

/// A removes LOST; the provider deletes A's sync message to C once. A's
/// next sync finds it missing and sends it again; C learns the removal.
#[test]
fn a_deleted_removal_sync_is_sent_again() {
    let started = std::time::Instant::now();
    let acc = Account::new();
    let ids = group(&acc, &["a", "b", "c", "lost"]);
    let (a, c, lost) = (ids[0].clone(), ids[2].clone(), ids[3].clone());
    acc.ok("a", &["remove", &lost]);
    let c_inbox = inbox(&c);
    let from_a = |m: &Marker| m.kind == Kind::Sync && m.from.as_str() == a;
    assert_eq!(expunge_where(&acc, &c_inbox, from_a), 1);
    sync(&acc, "b");
    sync(&acc, "c");
    assert_eq!(state_of(&acc, "c", &lost), "active", "C has not heard yet");
    let (_, log) = sync(&acc, "a");
    assert!(log.contains("vanished"), "{log}");
    assert_eq!(
        markers(&acc, &c_inbox).iter().filter(|m| from_a(m)).count(),
        1,
        "A sent it again"
    );
    sync(&acc, "c");
    assert_eq!(state_of(&acc, "c", &lost), "removed");
    sync(&acc, "a");
    assert_eq!(status(&acc, "a")["pending_removals"], json!([]));
    elapsed(started, "a_deleted_removal_sync_is_sent_again");
}

/// The thief of LOST is also the provider. After `remove LOST
/// --rotate-account-key`, it deletes the removal notice in LOST's inbox
/// (so the stolen device keeps running) and deletes A's removal sync in
/// B's inbox once, and on LOST imports an account key of its own. B, not
/// yet knowing of the removal, accepts LOST's op; once B learns the
/// removal it relays that op to A and C. A and C must not take an op
/// that LOST wrote after its removal: the group keeps A's new key.
///
/// STILL WORKS (hence ignored): B applies LOST's account-key op (same
/// generation as A's rotation, later stamp, so it wins the merge), learns
/// the removal, and relays the op at once (its origin is no longer
/// active). A and C accept it — `Engine::accept_op` in
/// `crates/proto/src/engine/accept.rs` takes relayed ops of any origin the
/// state knows, removed or not — and the thief's key becomes the group's
/// account key everywhere. Nothing tells an op LOST wrote before its
/// removal from one it wrote after.
#[test]
fn a_removed_device_cannot_slip_in_an_account_key_through_a_late_member() {
    let started = std::time::Instant::now();
    let acc = Account::new();
    let ids = group(&acc, &["a", "b", "c", "lost"]);
    let (a, b, lost) = (ids[0].clone(), ids[1].clone(), ids[3].clone());
    acc.ok("a", &["remove", &lost, "--rotate-account-key"]);
    let new_key = account_key(&acc, "a");
    // The provider keeps the stolen device running and B uninformed.
    assert_eq!(
        expunge_where(&acc, &inbox(&lost), |m| m.kind == Kind::Remove),
        1
    );
    assert_eq!(
        expunge_where(&acc, &inbox(&b), |m| m.kind == Kind::Sync
            && m.from.as_str() == a),
        1
    );
    // The thief, on LOST, makes its own key the next account key.
    let thief_key = sma_crypto::AccountKey::generate(&mut OsRng, &acc.user, now()).expect("key");
    let thief_fpr = thief_key.fingerprint().to_string();
    let (setup, code) = sma_crypto::setup_message::export(
        &mut OsRng,
        &thief_key,
        &acc.user,
        "Thu, 01 Jan 2026 00:00:00 +0000",
    )
    .expect("setup message");
    let file = acc.dir.path().join("thief-setup.eml");
    std::fs::write(&file, setup).expect("setup file");
    acc.ok(
        "lost",
        &[
            "setup-message",
            "import",
            file.to_str().expect("utf-8"),
            "--setup-code",
            &code.display_grouped(),
        ],
    );
    assert_eq!(account_key(&acc, "lost"), thief_fpr);
    sync(&acc, "lost");
    // B takes LOST's op: from where B stands, LOST is still a member.
    sync(&acc, "b");
    assert_eq!(state_of(&acc, "b", &lost), "active");
    assert_eq!(account_key(&acc, "b"), thief_fpr);
    // A sends its removal to B again; B learns it and relays what it holds.
    sync(&acc, "a");
    sync(&acc, "b");
    assert_eq!(state_of(&acc, "b", &lost), "removed");
    sync(&acc, "b");
    for dev in ["a", "c", "a", "c"] {
        sync(&acc, dev);
    }
    for dev in ["a", "c"] {
        assert_eq!(
            account_key(&acc, dev),
            new_key,
            "{dev} took the account key LOST made after its removal (the thief's: {thief_fpr})"
        );
    }
    elapsed(started, "a_removed_device_cannot_slip_in_an_account_key");
}

// ---------------------------------------------------------------------------
// 4. Look-alike announcement.

/// The provider announces a pending device's id under another key with a
/// heartbeat ten years ahead: `pair` refuses (with and without --device),
/// naming both fingerprints, and sends nothing. Once the forgery is gone,
/// pairing works and shows the fingerprint `init` printed.
#[test]
fn a_look_alike_announcement_blocks_pairing_until_it_is_gone() {
    let started = std::time::Instant::now();
    let acc = Account::new();
    acc.init("a");
    let j_init = acc.init("j");
    let j = j_init["device_id"].as_str().expect("id").to_owned();
    let j_short = j_init["fingerprint"]
        .as_str()
        .expect("init prints the fingerprint")
        .to_owned();
    let (_, _, real_cert) = announcements_of(&acc, &j).remove(0);
    let real_fpr = real_cert.fingerprint().to_string();
    assert!(
        real_fpr.starts_with(&j_short.replace(' ', "")),
        "{real_fpr} {j_short}"
    );

    let mut impostor = fresh_identity(&acc);
    impostor.id = DeviceId::parse(&j).expect("id");
    let forged_fpr = impostor.fingerprint();
    let later = now() + 10 * 365 * 86_400;
    let forged = build_announcement(
        &mut OsRng,
        &impostor,
        "j",
        now(),
        later,
        AnnouncedState::Pending,
        Layout::Flat,
        false,
    )
    .expect("announcement");
    let forged_id = peek_marker(&forged).expect("marker").id.to_string();
    replay_into(&acc, ANNOUNCE, &forged);

    let j_inbox = inbox(&j);
    let before = everything_on_server(&acc);
    for args in [
        &["pair", "--device", &j, "--timeout", "5"][..],
        &["pair", "--timeout", "5"],
    ] {
        let out = acc.run("a", args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        assert!(
            json_lines(&out.stdout).is_empty(),
            "no code is shown: {}",
            describe(&out)
        );
        let err = stderr_json(&out);
        let text = err["error"].as_str().expect("error text");
        assert!(
            text.contains(&real_fpr) && text.contains(&forged_fpr) && text.contains("impostor"),
            "the error names both fingerprints: {text}"
        );
        assert_eq!(acc.count(&j_inbox), 0, "no hello was sent");
    }
    assert_eq!(everything_on_server(&acc), before, "nothing was written");

    let mut imap = RawImap::for_account(&acc);
    assert_eq!(imap.expunge_message_id(ANNOUNCE, &forged_id), 1);
    imap.logout();
    let mut child = acc.spawn_pair("a", &["--device", &j]);
    let code = read_event(&mut child);
    assert_eq!(code["event"], "code");
    assert_eq!(code["device_id"], j);
    assert_eq!(code["fingerprint"], j_short, "pair shows what init printed");
    let joined = acc.ok(
        "j",
        &["join", "--code", code["code"].as_str().expect("code")],
    );
    assert_eq!(joined[0]["event"], "waiting");
    assert_eq!(joined[0]["fingerprint"], j_short);
    assert_eq!(joined.last().expect("joined")["event"], "joined");
    let out = child.wait_with_output().expect("pair output");
    assert!(out.status.success(), "{}", describe(&out));
    sync(&acc, "a");
    assert_eq!(state_of(&acc, "a", &j), "active");
    assert_eq!(state_of(&acc, "j", &j), "active");
    elapsed(started, "a_look_alike_announcement_blocks_pairing");
}

/// The provider deletes a pending device's announcement and puts one with
/// the same id and its own key in its place. `pair` then shows a
/// fingerprint that is not the one `init` printed on the device; and a
/// person who types the code anyway pairs nobody (the code is bound to the
/// announced key): both sides fail with exit 3 and nobody is admitted.
#[test]
fn a_replaced_announcement_pairs_nobody() {
    let started = std::time::Instant::now();
    let acc = Account::new();
    let a = acc.init("a")["device_id"].as_str().expect("id").to_owned();
    let j_init = acc.init("j");
    let j = j_init["device_id"].as_str().expect("id").to_owned();
    let j_short = j_init["fingerprint"].as_str().expect("fpr").to_owned();
    assert_eq!(expunge_where(&acc, ANNOUNCE, from(&j)), 1);
    let mut impostor = fresh_identity(&acc);
    impostor.id = DeviceId::parse(&j).expect("id");
    let forged = build_announcement(
        &mut OsRng,
        &impostor,
        "j",
        now(),
        now(),
        AnnouncedState::Pending,
        Layout::Flat,
        false,
    )
    .expect("announcement");
    replay_into(&acc, ANNOUNCE, &forged);

    let mut child = acc.spawn_pair("a", &["--device", &j, "--timeout", "30"]);
    let code = read_event(&mut child);
    assert_eq!(code["event"], "code");
    assert_ne!(
        code["fingerprint"], j_short,
        "a person comparing fingerprints sees the difference"
    );
    assert!(impostor
        .fingerprint()
        .starts_with(&code["fingerprint"].as_str().expect("fpr").replace(' ', "")));
    // The person types the code on the real device anyway.
    let joined = acc.run(
        "j",
        &[
            "join",
            "--code",
            code["code"].as_str().expect("code"),
            "--timeout",
            "30",
        ],
    );
    let paired = child.wait_with_output().expect("pair output");
    assert_eq!(paired.status.code(), Some(3), "{}", describe(&paired));
    assert_eq!(joined.status.code(), Some(3), "{}", describe(&joined));
    assert_eq!(status(&acc, "j")["role"], "pending");
    let active: Vec<Value> = acc
        .ok("a", &["devices"])
        .into_iter()
        .filter(|d| d["state"] == "active")
        .map(|d| d["device_id"].clone())
        .collect();
    assert_eq!(active, vec![json!(a)], "nobody was admitted");
    elapsed(started, "a_replaced_announcement_pairs_nobody");
}

// ---------------------------------------------------------------------------
// 5. Certificate without an encryption subkey.

/// A throw-away GnuPG home; its agent is stopped on drop.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        let home = tempfile::Builder::new()
            .prefix("sma-gpg-")
            .tempdir_in("/tmp")
            .expect("gpg home");
        Gpg { home }
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut child = Command::new("gpg")
            .arg("--batch")
            .arg("--no-tty")
            .arg("--homedir")
            .arg(self.home.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("GnuPG (`gpg`) is required: run `scripts/imap-server install`");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("write to gpg");
        let out = child.wait_with_output().expect("gpg");
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// A pending announcement of `id` whose certificate is a lone Ed25519
/// signing primary key made by GnuPG (no encryption subkey), validly
/// signed for the announcement context. Returns the message and the
/// certificate's fingerprint.
fn sign_only_announcement(acc: &Account, gpg: &Gpg, id: &DeviceId) -> (Vec<u8>, String) {
    let uid = format!("sma-device-{id}");
    gpg.run(
        &[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            &uid,
            "ed25519",
            "sign",
            "never",
        ],
        b"",
    );
    let cert = String::from_utf8(gpg.run(&["--armor", "--export", &uid], b"")).expect("armor");
    let parsed = Certificate::from_armored(&cert).expect("sma parses the GnuPG certificate");
    assert!(
        !parsed.can_encrypt(),
        "the certificate has no encryption subkey"
    );
    let ann = Announcement {
        v: PAYLOAD_VERSION,
        device_id: id.clone(),
        name: "sign-only".into(),
        software: "gpg".into(),
        cert,
        created: now(),
        heartbeat: now(),
        state: AnnouncedState::Pending,
        layout: Layout::Flat,
        founder: false,
    };
    let doc = payload::to_json(&ann);
    let signature = String::from_utf8(gpg.run(
        &[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--armor",
            "--detach-sign",
            "--digest-algo",
            "SHA256",
            "--sig-notation",
            "context@sma.invalid=sma-announce",
            "--local-user",
            &uid,
        ],
        &doc,
    ))
    .expect("armor");
    let bytes = Envelope {
        account: acc.user.clone(),
        date: now(),
        marker: Marker {
            kind: Kind::Announce,
            from: id.clone(),
            to: Recipient::All,
            id: MessageId::random(&mut OsRng),
        },
        body: Body::Signed {
            payload: doc.to_vec(),
            signature,
        },
    }
    .to_bytes();
    // The forgery is a valid announcement: only its key is unusable.
    let env = Envelope::parse(&bytes).expect("parses");
    let (_, cert) = verify_announcement(&env).expect("a valid announcement");
    (bytes, cert.fingerprint().to_string())
}

/// `pair` refuses a pending device whose certificate cannot be encrypted
/// to, with a clear error, and writes nothing to the server.
#[test]
fn a_certificate_without_an_encryption_subkey_is_not_paired() {
    let started = std::time::Instant::now();
    let acc = Account::new();
    acc.init("a");
    let gpg = Gpg::new();
    let x = DeviceId::random(&mut OsRng);
    let (ann, _) = sign_only_announcement(&acc, &gpg, &x);
    replay_into(&acc, ANNOUNCE, &ann);
    let x_inbox = inbox(x.as_str());
    let mut imap = RawImap::for_account(&acc);
    let created = imap.command(&format!("CREATE \"{x_inbox}\""));
    assert!(created.contains(" OK"), "{created}");
    imap.logout();
    // `devices` shows it pending, like any announced device.
    assert_eq!(state_of(&acc, "a", x.as_str()), "pending");

    let before = everything_on_server(&acc);
    for args in [
        &["pair", "--device", x.as_str(), "--timeout", "5"][..],
        &["pair", "--timeout", "5"],
    ] {
        let out = acc.run("a", args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        assert!(json_lines(&out.stdout).is_empty(), "no code shown");
        let err = stderr_json(&out)["error"]
            .as_str()
            .expect("error")
            .to_owned();
        assert!(
            err.contains("without an encryption subkey") && err.contains(x.as_str()),
            "unclear error: {err}"
        );
    }
    assert_eq!(everything_on_server(&acc), before, "nothing was sent");
    assert_eq!(acc.count(&x_inbox), 0);
    // The member is unaffected: a real device is paired afterwards.
    acc.init("b");
    let b = acc.device_id("b");
    acc.pair("a", "b");
    assert_eq!(state_of(&acc, "a", &b), "active");
    assert_eq!(state_of(&acc, "a", x.as_str()), "pending");
    elapsed(started, "a_certificate_without_an_encryption_subkey");
}

// ---------------------------------------------------------------------------
// 6. An announcement signature re-wrapped as a sealed payload's.

/// An armored OpenPGP message encrypted to `recipient` (its first
/// encryption subkey) whose decrypted packets are: `signature` (a detached
/// signature packet, re-used as-is) and a binary literal data packet with
/// `data`. With `one_pass`, a one-pass-signature packet comes first and the
/// signature after the literal data; else the signature comes first.
fn rewrap(data: &[u8], sig: &pgp::packet::Signature, recipient: &str, one_pass: bool) -> String {
    use pgp::composed::{Deserializable, SignedPublicKey};
    use pgp::crypto::sym::SymmetricKeyAlgorithm;
    use pgp::packet::{
        LiteralData, OnePassSignature, PacketTrait, PublicKeyEncryptedSessionKey,
        SymEncryptedProtectedData,
    };

    let literal = LiteralData::from_bytes("", data.to_vec().into()).expect("literal");
    let mut inner = Vec::new();
    if one_pass {
        let issuer = sig
            .issuer_key_id()
            .into_iter()
            .next()
            .cloned()
            .expect("issuer key id");
        let ops = OnePassSignature::v3(
            sig.typ().expect("type"),
            sig.hash_alg().expect("hash"),
            sig.config().expect("v4 signature").pub_alg,
            issuer,
        );
        ops.to_writer_with_header(&mut inner).expect("ops");
        literal.to_writer_with_header(&mut inner).expect("literal");
        sig.to_writer_with_header(&mut inner).expect("sig");
    } else {
        sig.to_writer_with_header(&mut inner).expect("sig");
        literal.to_writer_with_header(&mut inner).expect("literal");
    }
    let (cert, _) = SignedPublicKey::from_armor_single(recipient.as_bytes()).expect("cert");
    let sub = cert.public_subkeys.first().expect("encryption subkey");
    let alg = SymmetricKeyAlgorithm::AES256;
    let session_key = alg.new_session_key(OsRng);
    let pkesk = PublicKeyEncryptedSessionKey::from_session_key_v3(OsRng, &session_key, alg, sub)
        .expect("pkesk");
    let seipd =
        SymEncryptedProtectedData::encrypt_seipdv1(OsRng, alg, session_key.as_ref(), &inner)
            .expect("seipd");
    let mut bin = Vec::new();
    pkesk.to_writer_with_header(&mut bin).expect("pkesk");
    seipd.to_writer_with_header(&mut bin).expect("seipd");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bin);
    let mut armored = String::from("-----BEGIN PGP MESSAGE-----\n\n");
    for chunk in b64.as_bytes().chunks(64) {
        armored.push_str(std::str::from_utf8(chunk).expect("ascii"));
        armored.push('\n');
    }
    armored.push_str("-----END PGP MESSAGE-----\n");
    armored
}

/// The provider takes a member's real announcement (JSON and detached
/// signature), wraps them as a signed OpenPGP message encrypted to another
/// member and delivers it as a sync message from the first (once with the
/// signature before the literal data, once as a one-pass-signed message);
/// likewise an op and its signature taken from a removal notice. The
/// signatures are the member's own, but made for announcements and ops, so
/// the victim quarantines each message (naming the wrong purpose), applies
/// nothing and keeps working.
#[test]
fn an_announcement_signature_rewrapped_as_a_sealed_payload_is_quarantined() {
    let started = std::time::Instant::now();
    let acc = Account::new();
    let ids = group(&acc, &["a", "b", "x"]);
    let (a, b) = (ids[0].clone(), ids[1].clone());
    use pgp::composed::{Deserializable, DetachedSignature};
    let x = ids[2].clone();
    // a's announcement: its JSON and its (armored, detached) signature.
    let (env, _, _) = announcements_of(&acc, &a).remove(0);
    let Body::Signed { payload, signature } = &env.body else {
        panic!("an announcement is signed");
    };
    let (ann_sig, _) =
        DetachedSignature::from_armor_single(signature.as_bytes()).expect("signature");
    // An op a signed (its JSON and binary signature), from the removal
    // notice a leaves in x's inbox: public to the provider too.
    acc.ok("a", &["remove", &x]);
    sync(&acc, "b");
    let notice = raw_where(&acc, &inbox(&x), |m| m.kind == Kind::Remove).remove(0);
    let Body::Plain { payload: notice } = Envelope::parse(&notice).expect("notice").body else {
        panic!("a notice is plain");
    };
    let notice: RemovalNotice = payload::from_json(&notice).expect("notice JSON");
    let op = &notice.ops[0];
    assert_eq!(op.origin().as_str(), a);
    let op_sig = base64::engine::general_purpose::STANDARD
        .decode(
            serde_json::to_value(op).expect("op JSON")["sig"]
                .as_str()
                .expect("sig"),
        )
        .expect("base64");
    let op_sig = DetachedSignature::from_bytes(&op_sig[..]).expect("op signature");

    let (_, b_ann, _) = announcements_of(&acc, &b).remove(0);
    let b_inbox = inbox(&b);
    let mut ids_sent = Vec::new();
    let wrapped = [
        (payload.as_slice(), &ann_sig.signature, false),
        (payload.as_slice(), &ann_sig.signature, true),
        (op.raw().as_bytes(), &op_sig.signature, false),
    ];
    for (data, sig, one_pass) in wrapped {
        let armored = rewrap(data, sig, &b_ann.cert, one_pass);
        let id = MessageId::random(&mut OsRng);
        ids_sent.push(id.to_string());
        let msg = Envelope {
            account: acc.user.clone(),
            date: now(),
            marker: Marker {
                kind: Kind::Sync,
                from: DeviceId::parse(&a).expect("id"),
                to: Recipient::Device(DeviceId::parse(&b).expect("id")),
                id,
            },
            body: Body::Encrypted { armored },
        }
        .to_bytes();
        replay_into(&acc, &b_inbox, &msg);
    }
    let devices_before = acc.ok("b", &["devices"]);
    let (report, log) = sync(&acc, "b");
    assert_eq!(report["applied"], 0, "{report}");
    assert_eq!(
        log.matches("quarantined").count(),
        3,
        "one log line per re-wrapped message: {log}"
    );
    assert_eq!(
        log.matches("another purpose").count(),
        3,
        "rejected for its signature's context: {log}"
    );
    let left: BTreeSet<String> = markers(&acc, &b_inbox)
        .iter()
        .map(|m| m.id.to_string())
        .collect();
    assert!(
        ids_sent.iter().all(|id| !left.contains(id)),
        "all are deleted"
    );
    let devices_after = acc.ok("b", &["devices"]);
    let states = |v: &[Value]| -> Vec<(Value, Value)> {
        v.iter()
            .map(|d| (d["device_id"].clone(), d["state"].clone()))
            .collect()
    };
    assert_eq!(states(&devices_after), states(&devices_before));
    send(&acc, "a", &b, "still fine");
    assert_eq!(recv(&acc, "b"), vec!["still fine"]);
    elapsed(started, "an_announcement_signature_rewrapped");
}

// ---------------------------------------------------------------------------
// 7. Forged removal notices.

/// Removal notices in a member's inbox that do not prove its removal: an op
/// by a key nobody knows, an op claiming a member's id but signed with
/// another key, a real notice (about another device) altered to name the
/// victim, and a real notice replayed unchanged. The member stays a member,
/// each is deleted with a log line, and it keeps working.
#[test]
fn forged_removal_notices_remove_nobody() {
    let started = std::time::Instant::now();
    let acc = Account::new();
    let ids = group(&acc, &["a", "b", "x"]);
    let (a, b, x) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let b_removed = record_of(&acc, &b, MemberStatus::Removed);
    let x_fpr = record_of(&acc, &x, MemberStatus::Active).fingerprint;
    // A real notice: a removes x (x's inbox keeps a's notice).
    acc.ok("a", &["remove", &x]);
    sync(&acc, "b");
    let real = raw_where(&acc, &inbox(&x), |m| m.kind == Kind::Remove);
    assert_eq!(real.len(), 1);
    let real_payload = match Envelope::parse(&real[0]).expect("notice").body {
        Body::Plain { payload } => String::from_utf8(payload).expect("utf-8"),
        _ => panic!("a notice is plain"),
    };

    let stranger = fresh_identity(&acc);
    let mut pretender = fresh_identity(&acc);
    pretender.id = DeviceId::parse(&a).expect("id");
    let forged = [
        // 1. signed by a key nobody in the group knows
        notice_message(
            &acc,
            stranger.id.as_str(),
            &b,
            vec![op_removing(
                &stranger.key,
                &stranger.id,
                1,
                b_removed.clone(),
            )],
        ),
        // 2. claims to come from member a, signed with another key
        notice_message(
            &acc,
            &a,
            &b,
            vec![op_removing(
                &pretender.key,
                &pretender.id,
                1_000,
                b_removed.clone(),
            )],
        ),
        // 3. a's real notice about x, altered to name b
        plain_message(
            &acc,
            Kind::Remove,
            &a,
            &b,
            real_payload
                .replace(&x, &b)
                .replace(&x_fpr, &b_removed.fingerprint)
                .as_bytes(),
        ),
        // 4. a's real notice about x, unchanged, in b's inbox
        plain_message(&acc, Kind::Remove, &a, &b, real_payload.as_bytes()),
    ];
    let b_inbox = inbox(&b);
    for m in &forged {
        replay_into(&acc, &b_inbox, m);
    }
    // Whoever sends such a notice may have deleted b's announcement too.
    assert_eq!(expunge_where(&acc, ANNOUNCE, from(&b)), 1);
    let out = acc.run("b", &["sync", "-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("removal notice that does not prove our removal; deleted")
            .count(),
        4,
        "one log line per forged notice: {log}"
    );
    assert!(
        log.matches("forged removal notice; deleted").count() >= 2,
        "bad signatures are named: {log}"
    );
    assert!(
        markers(&acc, &b_inbox)
            .iter()
            .all(|m| m.kind != Kind::Remove),
        "the forgeries are deleted"
    );
    let announced = markers(&acc, ANNOUNCE)
        .iter()
        .filter(|m| m.kind == Kind::Announce && m.from.as_str() == b)
        .count();
    assert_eq!(announced, 1, "b announced itself again: {log}");
    assert_eq!(status(&acc, "b")["role"], "member");
    assert_eq!(state_of(&acc, "b", &b), "active");
    sync(&acc, "a");
    assert_eq!(state_of(&acc, "a", &b), "active");
    send(&acc, "a", &b, "still a member");
    assert_eq!(recv(&acc, "b"), vec!["still a member"]);
    elapsed(started, "forged_removal_notices_remove_nobody");
}

/// The thief of a removed device holds its device key: a removal notice
/// whose op that key signs (origin: the removed device) must not remove a
/// remaining member.
///
/// STILL WORKS (hence ignored): b reads the notice, verifies the op against
/// LOST's certificate (LOST is still in b's member list, as `removed`),
/// applies it, and stops with exit 4 ("removed ... by device LOST"). The
/// notice path (`InboxPass::accept_notice` in
/// `crates/proto/src/engine/inbox.rs`) accepts ops of any origin the state
/// knows, whatever its status; unlike a relayed op, no active member
/// vouches that it accepted the op while its origin was active.
#[test]
fn a_removed_devices_key_cannot_remove_a_member() {
    let started = std::time::Instant::now();
    let acc = Account::new();
    let ids = group(&acc, &["a", "b", "lost"]);
    let (b, lost) = (ids[1].clone(), ids[2].clone());
    // The thief has LOST (and so its device key).
    let lost_key = {
        let dev = sma::Device::open(&acc.home("lost")).expect("open LOST");
        dev.engine().identity().key.clone()
    };
    acc.ok("a", &["remove", &lost]);
    sync(&acc, "b");
    assert_eq!(state_of(&acc, "b", &lost), "removed");
    assert_eq!(state_of(&acc, "a", &lost), "removed");

    let lost_id = DeviceId::parse(&lost).expect("id");
    let b_removed = record_of(&acc, &b, MemberStatus::Removed);
    let notice = notice_message(
        &acc,
        &lost,
        &b,
        vec![op_removing(&lost_key, &lost_id, 1_000, b_removed)],
    );
    replay_into(&acc, &inbox(&b), &notice);
    let out = acc.run("b", &["sync", "-v"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a removed device removed member b: {}",
        describe(&out)
    );
    assert_eq!(status(&acc, "b")["role"], "member");
    assert_eq!(state_of(&acc, "b", &b), "active");
    sync(&acc, "a");
    assert_eq!(state_of(&acc, "a", &b), "active");
    send(&acc, "a", &b, "still a member");
    assert_eq!(recv(&acc, "b"), vec!["still a member"]);
    elapsed(started, "a_removed_devices_key_cannot_remove_a_member");
}

// ---------------------------------------------------------------------------
// 8. A NO on SELECT of the own inbox is not a removal.

/// The own inbox cannot be selected (the server answers NO: its directory
/// is unreadable to the server), then it is gone (NO [NONEXISTENT]). The
/// device never records that it was removed: the first sync fails (exit
/// 1), the second recreates the inbox, and the honest server works again.
#[test]
fn a_no_on_select_of_the_own_inbox_is_not_a_removal() {
    use std::os::unix::fs::PermissionsExt;
    let started = std::time::Instant::now();
    let acc = Account::new();
    let ids = group(&acc, &["a", "b"]);
    let b = ids[1].clone();
    let b_inbox = inbox(&b);
    let dir = server().maildir(acc.index).join(format!(".{b_inbox}"));
    assert!(dir.is_dir(), "{}", dir.display());

    // 1. Unselectable: SELECT answers NO (no permission).
    let mode = std::fs::metadata(&dir).expect("meta").permissions().mode();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let out = acc.run("b", &["sync", "-v"]);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod back");
    // Dovecot answers NO [SERVERBUG]: the round fails (exit 1), nothing
    // more.
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr_json(&out);
    assert_eq!(err["kind"], "failed", "{err}");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("SELECT") && !e.contains("was removed")),
        "{err}"
    );
    assert_eq!(status(&acc, "b")["role"], "member");
    sync(&acc, "b");
    send(&acc, "a", &b, "after NO");
    assert_eq!(recv(&acc, "b"), vec!["after NO"]);

    // 2. Gone: SELECT answers NO [NONEXISTENT]; the inbox is recreated.
    let hidden = dir.with_file_name(format!(".{b_inbox}-hidden"));
    std::fs::rename(&dir, &hidden).expect("hide the inbox");
    let (_, log) = sync(&acc, "b");
    assert!(log.contains("vanished"), "{log}");
    assert!(dir.is_dir(), "the inbox was recreated");
    let st = status(&acc, "b");
    assert_eq!(st["role"], "member");
    assert!(!st["incidents"].as_array().expect("incidents").is_empty());
    // 3. The honest server again.
    send(&acc, "a", &b, "after NONEXISTENT");
    assert_eq!(recv(&acc, "b"), vec!["after NONEXISTENT"]);
    assert_eq!(state_of(&acc, "a", &b), "active");
    let _ = std::fs::remove_dir_all(&hidden);
    elapsed(started, "a_no_on_select_of_the_own_inbox");
}
