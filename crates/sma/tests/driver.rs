//! Fast tests of the driver against the in-memory IMAP server
//! (`sma_imap::memory`): the real driver, store, engine and crypto, without
//! a server process. The acceptance tests against Dovecot live in
//! `crates/cli/tests`; these check the driver's own decisions quickly.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rand::SeedableRng;
use sma::clock::SystemClock;
use sma::init::{InitOptions, InitReport};
use sma::pair::PairEvent;
use sma::{Device, DeviceId, Role, ServerConfig};
use sma_crypto::PairingCode;
use sma_imap::memory::{MemoryServer, MemoryTransport};
use sma_imap::UidRange;
use sma_proto::autocrypt::{AutocryptHeader, Observation};
use sma_proto::envelope::{peek_marker, Kind};
use sma_proto::folders::Layout;
use sma_proto::state::{Change, PeerState, PreferEncrypt};
use tempfile::TempDir;

const ACCOUNT: &str = "alice@example.org";
const WAIT: Duration = Duration::from_secs(20);

fn server_config() -> ServerConfig {
    ServerConfig {
        host: "memory.invalid".into(),
        port: 143,
        security: sma_imap::Security::Plain,
        ca_file: None,
        allow_insecure: false,
        user: ACCOUNT.into(),
        oauth2_token_command: None,
        jmap_url: None,
    }
}

/// Seeded randomness: a failure reproduces.
fn rng(seed: u64) -> Box<rand_chacha::ChaCha20Rng> {
    Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(seed))
}

/// Runs `sma init` for a device called `name` in `home` and opens it.
async fn init(server: &MemoryServer, home: &Path, name: &str, seed: u64) -> (InitReport, Device) {
    let opts = InitOptions {
        home: home.to_owned(),
        server: server_config(),
        name: name.into(),
        layout: Layout::Flat,
        account_key: None,
    };
    let mut t = server.connect();
    let report = sma::init::init_on(&mut t, opts, Arc::new(SystemClock), rng(seed))
        .await
        .expect("init");
    let dev = Device::open_with(home, Arc::new(SystemClock), rng(seed + 1000)).expect("open");
    (report, dev)
}

/// Pairs `joiner` through `member`: runs both sides at once, handing the
/// code from one to the other as a person would.
async fn pair(server: &MemoryServer, member: &mut Device, joiner: &mut Device) {
    let code = Arc::new(Mutex::new(None::<String>));
    let shown = code.clone();
    let target = joiner.id().clone();
    let mut tm = server.connect();
    let mut tj = server.connect();
    let pairing = member.pair(&mut tm, Some(&target), WAIT, move |ev| {
        if let PairEvent::Code { code, .. } = ev {
            *shown.lock().expect("code lock") = Some(code.clone());
        }
    });
    let joining = async {
        let typed = loop {
            if let Some(c) = code.lock().expect("code lock").clone() {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let code = PairingCode::parse(&typed).expect("shown code parses");
        joiner.join(&mut tj, &code, WAIT).await
    };
    let (paired, joined) = tokio::join!(pairing, joining);
    paired.expect("pair");
    joined.expect("join");
}

/// How many messages `folder` holds (`None`: no such folder).
fn folder_len(server: &MemoryServer, folder: &str) -> Option<usize> {
    server
        .lock()
        .folder_counts()
        .into_iter()
        .find(|(name, _)| name == folder)
        .map(|(_, n)| n)
}

/// A founder and one paired member on a fresh server.
struct Pair2 {
    server: MemoryServer,
    _dirs: (TempDir, TempDir),
    a: Device,
    b: Device,
}

async fn two_members() -> Pair2 {
    let server = MemoryServer::new();
    let (da, db) = (TempDir::new().expect("tmp"), TempDir::new().expect("tmp"));
    let (ra, mut a) = init(&server, da.path(), "laptop", 1).await;
    let (rb, mut b) = init(&server, db.path(), "phone", 2).await;
    assert_eq!(ra.role, Role::Founder, "the first device founds the group");
    assert_eq!(rb.role, Role::Pending, "the second waits to be paired");
    pair(&server, &mut a, &mut b).await;
    Pair2 {
        server,
        _dirs: (da, db),
        a,
        b,
    }
}

/// Runs `sync` on each device in turn, `rounds` times.
async fn sync_all(server: &MemoryServer, devices: &mut [&mut Device], rounds: usize) {
    for _ in 0..rounds {
        for d in devices.iter_mut() {
            let mut t: MemoryTransport = server.connect();
            d.sync(&mut t).await.expect("sync");
        }
    }
}

#[tokio::test]
async fn founder_pairs_and_both_see_each_other() {
    let mut p = two_members().await;
    assert_eq!(p.b.info().role, Role::Member);
    sync_all(&p.server, &mut [&mut p.a, &mut p.b], 2).await;
    for d in [&p.a, &p.b] {
        let members: Vec<&DeviceId> = d.core().group().active_members().map(|m| &m.id).collect();
        assert_eq!(members.len(), 2, "{} sees both members", d.info().name);
    }
    assert_eq!(
        p.a.core().group(),
        p.b.core().group(),
        "both devices hold the same group state"
    );
}

#[tokio::test]
async fn application_message_arrives_once_and_is_deleted() {
    let mut p = two_members().await;
    sync_all(&p.server, &mut [&mut p.a, &mut p.b], 1).await;
    let mut t = p.server.connect();
    let to = p.b.id().clone();
    p.a.send(&mut t, Some(&to), "text", b"hello phone")
        .await
        .expect("send");
    let mut t = p.server.connect();
    let got = p.b.recv(&mut t, Duration::ZERO).await.expect("recv");
    p.b.delivered(&got).expect("delivered");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, p.a.id().to_string());
    assert_eq!(got[0].kind, "text");
    let mut t = p.server.connect();
    let again = p.b.recv(&mut t, Duration::ZERO).await.expect("recv again");
    assert!(
        again.is_empty(),
        "a delivered message is not handed out twice"
    );
    let inbox = p.b.inbox();
    let left = folder_len(&p.server, &inbox);
    assert_eq!(left, Some(0), "the processed message left the inbox");
}

/// The `send` command seals its message before the sync and stages it
/// (a JMAP session uploads it meanwhile); when the sync changes nothing the
/// message was sealed for, the staged bytes are the ones delivered.
#[tokio::test]
async fn a_send_delivers_the_message_it_staged_when_the_sync_changed_nothing() {
    let mut p = two_members().await;
    sync_all(&p.server, &mut [&mut p.a, &mut p.b], 1).await;
    let mut t = p.server.connect();
    let to = p.b.id().clone();
    let report =
        p.a.sync_and_send(&mut t, Some(&to), "text", b"staged")
            .await
            .expect("send");
    let staged = p.server.lock().staged.clone();
    assert_eq!(staged.len(), 1, "one message staged");
    let inbox = p.b.inbox();
    let held: Vec<Vec<u8>> = p
        .server
        .lock()
        .folder(&inbox)
        .expect("b's inbox")
        .messages
        .values()
        .map(|m| m.bytes.to_vec())
        .collect();
    let marker = peek_marker(&staged[0]).expect("a marker");
    assert_eq!(marker.id.to_string(), report.message_id);
    assert!(
        held.iter().any(|m| m.as_slice() == staged[0].as_slice()),
        "the staged bytes are what reached the inbox"
    );
    let mut t = p.server.connect();
    let got = p.b.recv(&mut t, Duration::ZERO).await.expect("recv");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].kind, "text");
}

/// A message staged before the sync is sealed again when the sync
/// changed its recipients: here a member paired by another member, whom
/// the sender learns of only in the sync, so a broadcast reaches it too.
#[tokio::test]
async fn a_send_seals_again_when_the_sync_brought_another_recipient() {
    let mut p = two_members().await;
    sync_all(&p.server, &mut [&mut p.a, &mut p.b], 1).await;
    let dc = TempDir::new().expect("tmp");
    let (_, mut c) = init(&p.server, dc.path(), "tablet", 3).await;
    pair(&p.server, &mut p.b, &mut c).await;
    let mut t = p.server.connect();
    p.b.sync(&mut t).await.expect("b tells the others");
    assert!(
        !p.a.engine().peers().contains(c.id()),
        "a does not know c before its sync"
    );
    let mut t = p.server.connect();
    let report =
        p.a.sync_and_send(&mut t, None, "text", b"to everyone")
            .await
            .expect("send");
    let staged = p.server.lock().staged.clone();
    assert_eq!(
        staged.len(),
        1,
        "the message sealed before the sync was staged"
    );
    let staged_id = peek_marker(&staged[0]).expect("a marker").id.to_string();
    assert_ne!(
        staged_id, report.message_id,
        "the staged message (sealed to b alone) is not the one sent"
    );
    assert!(
        report.to.contains(c.id()) && report.to.contains(p.b.id()),
        "{:?}",
        report.to
    );
    for d in [&mut p.b, &mut c] {
        let mut t = p.server.connect();
        let got = d.recv(&mut t, Duration::ZERO).await.expect("recv");
        assert_eq!(got.len(), 1, "{} got the broadcast", d.info().name);
    }
}

/// `watch` hands a message out as soon as the round's inbox pass is
/// committed: the hand-out sees the message waiting in the store while it
/// is still on the server, and the round deletes it afterwards.
#[tokio::test]
async fn a_round_hands_out_before_it_deletes_on_the_server() {
    let mut p = two_members().await;
    sync_all(&p.server, &mut [&mut p.a, &mut p.b], 1).await;
    let mut t = p.server.connect();
    let to = p.b.id().clone();
    p.a.send(&mut t, Some(&to), "text", b"early")
        .await
        .expect("send");
    let inbox = p.b.inbox();
    let on_server_before = folder_len(&p.server, &inbox).expect("inbox");
    assert!(on_server_before >= 1, "the message waits in b's inbox");
    let mut handed_out = Vec::new();
    let mut on_server_during = None;
    let mut t = p.server.connect();
    p.b.sync_round_handing_out(&mut t, u64::MAX, |dev, _events| {
        on_server_during = folder_len(&p.server, &inbox);
        let waiting = dev.pending_messages()?;
        dev.delivered(&waiting)?;
        handed_out = waiting;
        Ok(())
    })
    .await
    .expect("round");
    assert_eq!(handed_out.len(), 1, "the committed message is handed out");
    assert_eq!(handed_out[0].kind, "text");
    assert_eq!(handed_out[0].from, p.a.id().to_string());
    assert_eq!(
        on_server_during,
        Some(on_server_before),
        "nothing was deleted on the server before the hand-out"
    );
    assert_eq!(
        folder_len(&p.server, &inbox),
        Some(0),
        "the round deleted what it processed after the hand-out"
    );
    let mut t = p.server.connect();
    let again = p.b.recv(&mut t, Duration::ZERO).await.expect("recv");
    assert!(
        again.is_empty(),
        "a handed-out message is not handed out twice"
    );
}

#[tokio::test]
async fn removed_device_stops_at_its_notice() {
    let mut p = two_members().await;
    sync_all(&p.server, &mut [&mut p.a, &mut p.b], 1).await;
    let mut t = p.server.connect();
    let target = p.b.id().clone();
    let report = p.a.remove(&mut t, &target, false).await.expect("remove");
    assert_eq!(report.removed, vec![target.to_string()]);
    let mut t = p.server.connect();
    let err =
        p.b.sync(&mut t)
            .await
            .expect_err("the removed device must stop");
    assert_eq!(err.kind().exit_code(), 4, "removal is exit 4: {err}");
    assert!(
        sma::lifecycle::check_not_removed(p.b.home()).is_err(),
        "the removal is remembered on disk"
    );
    let mut t = p.server.connect();
    p.a.sync(&mut t).await.expect("the remaining member syncs");
    assert_eq!(p.a.core().group().active_members().count(), 1);
}

#[tokio::test]
async fn vanished_inbox_is_recreated_and_sync_resumes() {
    let mut p = two_members().await;
    sync_all(&p.server, &mut [&mut p.a, &mut p.b], 1).await;
    let inbox = p.b.inbox();
    p.server
        .lock()
        .delete(None, &inbox)
        .expect("the provider deletes the inbox");
    sync_all(&p.server, &mut [&mut p.b], 1).await;
    assert!(
        folder_len(&p.server, &inbox).is_some(),
        "sync recreates its own inbox"
    );
    let mut t = p.server.connect();
    let to = p.b.id().clone();
    p.a.send(&mut t, Some(&to), "text", b"after the loss")
        .await
        .expect("send");
    let mut t = p.server.connect();
    let got = p.b.recv(&mut t, Duration::ZERO).await.expect("recv");
    assert_eq!(
        got.len(),
        1,
        "messages flow again after the inbox came back"
    );
}

#[tokio::test]
async fn forged_plaintext_in_inbox_is_quarantined_not_fatal() {
    let mut p = two_members().await;
    sync_all(&p.server, &mut [&mut p.a, &mut p.b], 1).await;
    let inbox = p.b.inbox();
    let forged =
        b"From: mallory@example.org\r\nSubject: sma\r\nX-SMA: 2\r\n\r\nnot a sealed message\r\n";
    p.server
        .lock()
        .append(&inbox, forged)
        .expect("the provider appends");
    let mut t = p.server.connect();
    let report =
        p.b.sync(&mut t)
            .await
            .expect("a forged message does not stop sync");
    assert_eq!(report.applied, 0, "nothing from a forgery is applied");
    assert_eq!(p.b.core().group().active_members().count(), 2);
}

/// Keyring observations of `n` correspondents with `key_bytes` of random
/// key data each.
fn observations(n: usize, key_bytes: usize) -> Vec<Observation> {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    (0..n)
        .map(|i| {
            let from = format!("peer{i}@example.net");
            let mut keydata = vec![0u8; key_bytes];
            rand::RngCore::fill_bytes(&mut rng, &mut keydata);
            Observation {
                from: from.clone(),
                effective_date: 1_700_000_000,
                autocrypt: Some(AutocryptHeader {
                    addr: from,
                    prefer_encrypt: PreferEncrypt::Mutual,
                    keydata,
                }),
                gossip: Vec::new(),
            }
        })
        .collect()
}

#[tokio::test]
async fn a_keyring_too_large_for_one_welcome_arrives_in_parts() {
    let server = MemoryServer::new();
    let (da, db) = (TempDir::new().expect("tmp"), TempDir::new().expect("tmp"));
    let (_, mut a) = init(&server, da.path(), "laptop", 1).await;
    // About 12 MiB of keyring and as much of log, random keys that do not
    // compress: far over the 16 MiB cap of one welcome message, so the
    // welcome travels as the welcome and several parts.
    a.observe_all(observations(7_000, 1_200)).expect("observe");
    let (_, mut b) = init(&server, db.path(), "phone", 2).await;
    pair(&server, &mut a, &mut b).await;
    assert_eq!(b.core().group().keyring().len(), 7_000);
    assert_eq!(
        b.core().group().keyring(),
        a.core().group().keyring(),
        "the joiner holds the whole keyring"
    );
    let inbox = b.inbox();
    let left: Vec<String> = server
        .lock()
        .all_messages()
        .filter(|(folder, _, _)| *folder == inbox)
        .filter(|(_, _, m)| {
            peek_marker(&m.bytes[..m.header_len]).is_ok_and(|mk| mk.kind == Kind::PairWelcome)
        })
        .map(|(_, uid, _)| uid.to_string())
        .collect();
    assert!(
        left.is_empty(),
        "the welcome and all its parts were deleted after joining ({} left)",
        left.len()
    );
}

#[tokio::test]
async fn resuming_selects_again_and_retries_after_a_lost_connection() {
    use sma_imap::{Resuming, Transport};
    let server = MemoryServer::new();
    server.lock().create("box").expect("create");
    server
        .lock()
        .append("box", b"Subject: one\r\n\r\nbody\r\n")
        .expect("append");
    let mut t = server.connect();
    let mut r = Resuming::new(&mut t);
    r.select("box").await.expect("select");
    assert_eq!(server.lock().kill_all(), 1, "the session was alive");
    let headers = r.fetch_headers(UidRange::all()).await.expect("resumed");
    assert_eq!(headers.len(), 1, "the folder was selected again");
    assert_eq!(r.reconnects(), 1);

    // A slow restart: the first sessions opened cannot reach the server
    // when their first command goes out (a login sent before the greeting
    // returns before the server answered). Backing off, not giving up.
    assert_eq!(server.lock().go_down(2), 1);
    let again = r.fetch_headers(UidRange::all()).await.expect("resumed");
    assert_eq!(again.len(), 1);
    assert_eq!(r.reconnects(), 4, "two sessions refused, the third works");

    // A folder whose UIDVALIDITY changed meanwhile: its UIDs may name other
    // messages now, so the operation is not run again.
    assert_eq!(server.lock().kill_all(), 1);
    server.lock().delete(None, "box").expect("delete");
    server.lock().create("box").expect("create again");
    let err = r
        .delete_messages(&[headers[0].uid])
        .await
        .expect_err("no retry on other UIDs");
    assert!(err.is_connection_lost(), "the original error: {err}");
}

/// Pairing while the server drops every connection every few
/// milliseconds: both sides reconnect and resume where they were, and the
/// joiner becomes a member (the code allows one attempt, so starting over
/// would fail).
#[tokio::test]
async fn pairing_survives_dropped_connections() {
    for every_ms in [2u64, 7, 19] {
        let server = MemoryServer::new();
        let (da, db) = (TempDir::new().expect("tmp"), TempDir::new().expect("tmp"));
        let (_, mut a) = init(&server, da.path(), "laptop", 1).await;
        let (_, mut b) = init(&server, db.path(), "phone", 2).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let killer = {
            let (server, stop) = (server.clone(), stop.clone());
            tokio::spawn(async move {
                let mut kills = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(every_ms)).await;
                    kills += server.lock().kill_all();
                }
                kills
            })
        };
        pair(&server, &mut a, &mut b).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let kills = killer.await.expect("killer");
        assert!(
            kills >= 2,
            "every {every_ms} ms: only {kills} sessions were cut"
        );
        assert_eq!(b.info().role, Role::Member, "every {every_ms} ms");
        assert_eq!(
            b.core().group().active_members().count(),
            2,
            "every {every_ms} ms"
        );
        let left: Vec<_> = server
            .lock()
            .all_messages()
            .filter(|(_, _, m)| {
                peek_marker(&m.bytes[..m.header_len]).is_ok_and(|mk| {
                    matches!(
                        mk.kind,
                        Kind::PairHello | Kind::PairReply | Kind::PairConfirm | Kind::PairWelcome
                    )
                })
            })
            .map(|(folder, uid, _)| format!("{folder}/{uid}"))
            .collect();
        assert!(
            left.is_empty(),
            "every {every_ms} ms: pairing messages left: {left:?}"
        );
    }
}

/// Sends `body` from `a` to `to` as a `text` message and notes it in `sent`.
async fn send_text(
    server: &MemoryServer,
    a: &mut Device,
    to: &DeviceId,
    body: &str,
    sent: &mut Vec<String>,
) {
    let mut t = server.connect();
    a.send(&mut t, Some(to), "text", body.as_bytes())
        .await
        .expect("send");
    sent.push(body.to_owned());
}

/// A peer's inbox gets a new UIDVALIDITY right after our sync message is
/// appended to it (PROTOCOL 11.3; the sweep's seed 6722): the UID the
/// APPEND answered belongs to the old UIDVALIDITY and must never be
/// recorded with the new one, or replacing that sync message later deletes
/// whatever message the new numbering gives that UID — here one of our own
/// application messages, which would be lost.
#[tokio::test]
async fn a_uidvalidity_change_right_after_a_sync_append_deletes_nothing_else() {
    let mut p = two_members().await;
    sync_all(&p.server, &mut [&mut p.a, &mut p.b], 2).await;
    let to = p.b.id().clone();
    let inbox = p.b.inbox();
    // UIDs in b's inbox climb past the count of messages it will hold.
    for i in 0..8 {
        let mut t = p.server.connect();
        let body = format!("gap {i}");
        p.a.send(&mut t, Some(&to), "text", body.as_bytes())
            .await
            .expect("send");
        let mut t = p.server.connect();
        let got = p.b.recv(&mut t, Duration::ZERO).await.expect("recv");
        p.b.delivered(&got).expect("delivered");
    }
    let mut sent = Vec::new();
    send_text(&p.server, &mut p.a, &to, "first", &mut sent).await;
    // b is offline. a's next sync message is appended, then the provider
    // renumbers b's inbox.
    p.server.lock().reset_uid_validity_after_next_append(&inbox);
    p.a.record_change(Change::Peer(PeerState::new("carol@example.net")))
        .expect("record");
    let mut t = p.server.connect();
    let _ = p.a.sync(&mut t).await; // may see its connection cut
                                    // New messages fill the renumbered inbox past the UID that APPEND gave.
    for i in 0..30 {
        send_text(&p.server, &mut p.a, &to, &format!("after {i}"), &mut sent).await;
    }
    // a replaces its sync message (twice, so both branches of the
    // replacement run), then b reads everything.
    for peer in ["dave@example.com", "erin@example.com"] {
        p.a.record_change(Change::Peer(PeerState::new(peer)))
            .expect("record");
        let mut t = p.server.connect();
        p.a.sync(&mut t).await.expect("a sync");
    }
    let mut t = p.server.connect();
    let got = p.b.recv(&mut t, Duration::ZERO).await.expect("recv");
    p.b.delivered(&got).expect("delivered");
    let mut bodies: Vec<String> = got
        .iter()
        .map(|m| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&m.body_b64)
                .expect("base64");
            String::from_utf8(raw).expect("utf-8")
        })
        .collect();
    bodies.sort();
    sent.sort();
    assert_eq!(bodies, sent, "every application message arrives once");
    assert_eq!(
        p.b.core().group().keyring().len(),
        3,
        "every keyring change arrives"
    );
}
