//! Servers whose expunge only archives (Gmail), against the in-memory
//! server's model of them (`Server::archive_like_gmail`): `init` finds out
//! by the capability or by its probe, every deletion goes through the
//! Trash, and All Mail and Trash stay free of sma's messages. The
//! acceptance tests against a Dovecot configured like Gmail live in
//! `crates/cli/tests/gmail.rs`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use sma::clock::SystemClock;
use sma::init::InitOptions;
use sma::pair::PairEvent;
use sma::{Detection, Device, Role, ServerConfig};
use sma_crypto::PairingCode;
use sma_imap::memory::MemoryServer;
use sma_proto::folders::Layout;
use sma_proto::state::{Change, PeerState};
use tempfile::TempDir;

const ALL_MAIL: &str = "[Gmail].All Mail";
const TRASH: &str = "[Gmail].Trash";
const WAIT: Duration = Duration::from_secs(20);
/// Application messages (and as many keyring changes) exchanged.
const ROUNDS: usize = 60;

fn server_config() -> ServerConfig {
    ServerConfig {
        host: "memory.invalid".into(),
        port: 143,
        security: sma_imap::Security::Plain,
        ca_file: None,
        allow_insecure: false,
        user: "alice@example.org".into(),
        oauth2_token_command: None,
        jmap_url: None,
    }
}

async fn init(server: &MemoryServer, home: &Path, name: &str, seed: u64) -> Device {
    let opts = InitOptions {
        home: home.to_owned(),
        server: server_config(),
        name: name.into(),
        layout: Layout::Flat,
        account_key: None,
    };
    let mut t = server.connect();
    let rng = Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(seed));
    sma::init::init_on(&mut t, opts, Arc::new(SystemClock), rng)
        .await
        .expect("init");
    let rng = Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(seed + 1000));
    Device::open_with(home, Arc::new(SystemClock), rng).expect("open")
}

async fn pair(server: &MemoryServer, member: &mut Device, joiner: &mut Device) {
    let code = Arc::new(Mutex::new(None::<String>));
    let shown = code.clone();
    let target = joiner.id().clone();
    let (mut tm, mut tj) = (server.connect(), server.connect());
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
        joiner
            .join(&mut tj, &PairingCode::parse(&typed).expect("code"), WAIT)
            .await
    };
    let (paired, joined) = tokio::join!(pairing, joining);
    paired.expect("pair");
    joined.expect("join");
}

/// Messages in `folder` (0 if it does not exist).
fn count(server: &MemoryServer, folder: &str) -> usize {
    server.lock().folder(folder).map_or(0, |f| f.messages.len())
}

/// Messages in All Mail and Trash together.
fn archived(server: &MemoryServer) -> usize {
    count(server, ALL_MAIL) + count(server, TRASH)
}

struct Group {
    server: MemoryServer,
    _dirs: (TempDir, TempDir),
    a: Device,
    b: Device,
}

/// A founder and a paired member on `server`.
async fn group(server: MemoryServer) -> Group {
    let (da, db) = (TempDir::new().expect("tmp"), TempDir::new().expect("tmp"));
    let mut a = init(&server, da.path(), "laptop", 1).await;
    let mut b = init(&server, db.path(), "phone", 2).await;
    pair(&server, &mut a, &mut b).await;
    assert_eq!(b.info().role, Role::Member);
    Group {
        server,
        _dirs: (da, db),
        a,
        b,
    }
}

/// Keyring changes and application messages back and forth, each
/// followed by rounds on both devices.
async fn exchange(g: &mut Group, rounds: usize) {
    for i in 0..rounds {
        let mut p = PeerState::new(&format!("c{i}@example.net"));
        p.last_seen = 1_700_000_000 + i as u64;
        g.a.record_change(Change::Peer(p)).expect("change");
        let to = g.b.id().clone();
        let mut t = g.server.connect();
        g.a.send(&mut t, Some(&to), "text", format!("hello {i}").as_bytes())
            .await
            .expect("send");
        g.a.sync(&mut t).await.expect("a sync");
        let mut t = g.server.connect();
        let got = g.b.recv(&mut t, Duration::ZERO).await.expect("recv");
        assert_eq!(got.len(), 1, "round {i}");
        g.b.delivered(&got).expect("delivered");
        g.b.sync(&mut t).await.expect("b sync");
    }
    assert_eq!(g.b.core().group().keyring().len(), rounds);
}

fn gmail(advertise: bool) -> MemoryServer {
    let server = MemoryServer::new();
    server.lock().archive_like_gmail(ALL_MAIL, TRASH, advertise);
    server
}

#[tokio::test]
async fn the_model_archives_an_expunged_message() {
    // The premise of every other test here.
    let server = gmail(true);
    let mut t = server.connect();
    use sma_imap::Transport as _;
    let uid = t.append("INBOX", &[], b"Subject: x\r\n\r\n").await.unwrap();
    t.select("INBOX").await.unwrap();
    t.delete_messages(&[uid.unwrap()]).await.unwrap();
    assert_eq!(count(&server, ALL_MAIL), 1);
}

#[tokio::test]
async fn gmail_found_by_its_capability_keeps_all_mail_and_trash_free() {
    let mut g = group(gmail(true)).await;
    for d in [&g.a, &g.b] {
        let del = &d.info().delete;
        assert!(del.archives);
        assert_eq!(del.detected_by, Detection::Capability);
        assert_eq!(del.trash.as_deref(), Some(TRASH));
        assert_eq!(del.all_mail.as_deref(), Some(ALL_MAIL));
    }
    exchange(&mut g, ROUNDS).await;
    assert_eq!(
        archived(&g.server),
        0,
        "sma left messages in All Mail or Trash"
    );
    // Removing b leaves a removal notice in its inbox; b learns of it and
    // deletes its own folders, emptying its inbox through the Trash.
    let target = g.b.id().clone();
    let mut t = g.server.connect();
    g.a.remove(&mut t, &target, true).await.expect("remove");
    g.a.sync(&mut t).await.expect("sync");
    assert!(count(&g.server, &g.b.inbox()) > 0, "no removal notice");
    let mut tb = g.server.connect();
    let learnt = g.b.sync(&mut tb).await;
    assert!(
        matches!(learnt, Err(sma::Error::Removed { .. })),
        "{learnt:?}"
    );
    assert!(
        g.server.lock().folder(&g.b.inbox()).is_none(),
        "b's inbox folder is still there"
    );
    g.a.sync(&mut t).await.expect("sync");
    assert_eq!(archived(&g.server), 0, "the removal left messages behind");
}

#[tokio::test]
async fn the_probe_finds_a_server_that_archives_without_saying_so() {
    let mut g = group(gmail(false)).await;
    for d in [&g.a, &g.b] {
        let del = &d.info().delete;
        assert!(del.archives, "{del:?}");
        assert_eq!(del.detected_by, Detection::Probe);
        assert_eq!(del.trash.as_deref(), Some(TRASH));
    }
    assert_eq!(archived(&g.server), 0, "the probes were not cleaned up");
    exchange(&mut g, ROUNDS / 3).await;
    assert_eq!(archived(&g.server), 0);
}

#[tokio::test]
async fn without_uidplus_and_move_the_copies_are_found_by_message_id() {
    let server = gmail(false);
    server
        .lock()
        .set_capabilities(&["IMAP4rev1", "IDLE", "NAMESPACE", "X-GM-EXT-1"]);
    let mut g = group(server).await;
    assert_eq!(g.a.info().delete.detected_by, Detection::Capability);
    exchange(&mut g, ROUNDS / 3).await;
    assert_eq!(archived(&g.server), 0);
}

#[tokio::test]
async fn a_plain_server_is_probed_and_expunges_in_place() {
    let mut g = group(MemoryServer::new()).await;
    let del = g.a.info().delete.clone();
    assert!(!del.archives);
    assert_eq!(del.detected_by, Detection::Probe);
    assert_eq!(
        del.all_mail, None,
        "no \\All folder: nothing to archive into"
    );
    exchange(&mut g, 3).await;
}

#[tokio::test]
async fn without_the_trash_dance_sma_messages_pile_up_in_all_mail() {
    // The control: archiving switched on after init (the probe found no
    // \All folder), so the devices expunge in place.
    let mut g = group(MemoryServer::new()).await;
    g.server.lock().archive_like_gmail(ALL_MAIL, TRASH, false);
    exchange(&mut g, ROUNDS / 3).await;
    assert!(
        archived(&g.server) > 2 * ROUNDS / 3,
        "expected a pile in All Mail, found {}",
        archived(&g.server)
    );
}

#[tokio::test]
async fn checking_again_finds_a_server_that_started_archiving() {
    // What `doctor --fix` does: a device that found a plain server at
    // `init` checks again after the server changed, records it, and from
    // then on deletes through the Trash.
    let mut g = group(MemoryServer::new()).await;
    g.server.lock().archive_like_gmail(ALL_MAIL, TRASH, false);
    for d in [&mut g.a, &mut g.b] {
        let mut t = g.server.connect();
        let found = d.check_delete_behaviour(&mut t).await.expect("check");
        assert!(found.archives, "{found:?}");
        assert_eq!(found.detected_by, Detection::Probe);
        assert_eq!(d.info().delete, found, "not recorded");
    }
    assert_eq!(archived(&g.server), 0, "the probes were not cleaned up");
    exchange(&mut g, ROUNDS / 3).await;
    assert_eq!(archived(&g.server), 0);
    // Recorded in the home, not only in memory.
    let reopened = Device::open(g.a.home()).expect("reopen");
    assert!(reopened.info().delete.archives);
}
