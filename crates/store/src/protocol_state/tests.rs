use std::collections::BTreeSet;
use std::path::PathBuf;

use rand_core::SeedableRng;
use rusqlite::Connection;
use sma_crypto::DeviceKey;
use sma_proto::device::Identity;
use sma_proto::state::Change;
use sma_proto::{DeviceId, Engine, Timestamp};

use super::*;

fn me() -> DeviceId {
    DeviceId::parse("00000000000000aa").expect("device id")
}

fn identity() -> Identity {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    Identity {
        id: me(),
        account: "a@example.org".into(),
        key: DeviceKey::generate(&mut rng, me().as_str(), 1_700_000_000).expect("key"),
    }
}

fn engine() -> Engine {
    Engine::new(identity(), CoreState::default()).expect("engine")
}

fn observe(e: &mut Engine, addr: &str, last_seen: u64) {
    let mut peer = PeerState::new(addr);
    peer.last_seen = last_seen;
    e.commit(Change::Peer(peer), Timestamp::from_secs(last_seen))
        .expect("commit");
}

fn rows(store: &Store, table: &str) -> i64 {
    store
        .read()
        .conn
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

#[test]
fn saves_incrementally_and_reloads_equal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("db");
    let mut store = Store::open(&path).expect("open");
    assert_eq!(store.read().load_core().expect("load"), None);
    let mut e = engine();
    for i in 0..50 {
        observe(&mut e, &format!("p{i}@example.org"), 100 + i);
    }
    assert!(e.has_unsaved_ops());
    store.save_core(e.core_mut()).expect("save");
    assert!(!e.has_unsaved_ops());
    assert_eq!(
        e.core().group().keyring_changes().map(BTreeSet::len),
        Some(0)
    );
    assert_eq!(
        (rows(&store, "keyring"), rows(&store, "relay_log")),
        (50, 50)
    );

    // One update and one new peer; then the log is pruned of old ops.
    observe(&mut e, "P3@example.org", 999);
    observe(&mut e, "new@example.org", 1000);
    assert_eq!(
        e.core().group().keyring_changes().map(BTreeSet::len),
        Some(2),
        "exactly the two touched addresses are dirty"
    );
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let later = Timestamp::from_secs(100 * 86_400);
    assert!(e
        .outgoing_syncs(&mut rng, later, 86_400)
        .expect("prune")
        .is_empty());
    assert!(e.core().book().log().is_empty());
    assert!(
        !e.has_unsaved_ops(),
        "pruned ops need no save before a send"
    );
    store.save_core(e.core_mut()).expect("save");
    assert_eq!(
        (rows(&store, "keyring"), rows(&store, "relay_log")),
        (51, 0)
    );

    drop(store);
    let store = Store::open(&path).expect("reopen");
    let loaded = store.read().load_core().expect("load").expect("saved");
    assert_eq!(&loaded, e.core());
    assert_eq!(loaded.group().keyring()["p3@example.org"].last_seen, 999);
    assert_eq!(loaded.group().keyring_changes().map(BTreeSet::len), Some(0));
}

#[test]
fn failed_transaction_keeps_the_changes_for_the_next_save() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("db");
    let mut store = Store::open(&path).expect("open");
    let mut e = engine();
    store.save_core(e.core_mut()).expect("save");
    observe(&mut e, "a@example.org", 5);
    let failed: std::result::Result<(), StoreError> =
        store.save_core_with(e.core_mut(), Durability::Flushed, |db| {
            db.set_meta("x", "y")?;
            Err(StoreError::Corrupt {
                path: PathBuf::new(),
                what: "test",
                detail: String::new(),
            })
        });
    assert!(failed.is_err());
    assert!(e.has_unsaved_ops(), "marks survive a rollback");
    assert_eq!(rows(&store, "keyring"), 0);
    store.save_core(e.core_mut()).expect("save");
    let loaded = store.read().load_core().expect("load").expect("saved");
    assert_eq!(loaded.group().keyring().len(), 1);
    assert_eq!(loaded.book().log().len(), 1);
}

#[test]
fn a_replaced_state_is_written_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = Store::open(&dir.path().join("db")).expect("open");
    let mut e = engine();
    observe(&mut e, "a@example.org", 5);
    observe(&mut e, "b@example.org", 6);
    store.save_core(e.core_mut()).expect("save");
    // A fresh state (a device stepping down, a welcome installed) knows
    // nothing of what is on disk: saving it replaces everything.
    let mut fresh = engine();
    observe(&mut fresh, "c@example.org", 7);
    store.save_core(fresh.core_mut()).expect("save");
    let loaded = store.read().load_core().expect("load").expect("saved");
    assert_eq!(
        loaded.group().keyring().keys().collect::<Vec<_>>(),
        ["c@example.org"]
    );
    assert_eq!(&loaded, fresh.core());
}

/// A protocol state as `sma` 0.1 (protocol version 1) wrote it in a schema
/// 2 store: one blob with the keyring and an unsigned own op.
const V1_BLOB: &str = r#"{"group":{"members":{},"keyring":{"p0@example.org":{"addr":"p0@example.org","last_seen":10}},"account_keys":{},"prefer_encrypt":{"value":"mutual","stamp":null}},"book":{"last_seq":1,"log":{"1":{"origin":"00000000000000aa","seq":1,"stamp":{"ms":10000,"counter":0,"device":"00000000000000aa"},"change":{"peer":{"addr":"p0@example.org","last_seen":10}}}},"peer_acks":{"00000000000000bb":1},"received":{"00000000000000bb":4},"ack_due":[],"last_sent":{"00000000000000bb":{"message_id":"0123456789abcdef0123456789abcdef","uid":3,"uid_validity":1,"upto":1,"at":11}},"assumed_acks":[],"gap_since":{}},"clock":{"last_ms":10000,"counter":0}}"#;

#[test]
fn a_version_1_store_opens_and_its_own_ops_get_signed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("db");
    {
        let conn = Connection::open(&path).expect("open");
        for sql in &crate::MIGRATIONS[..2] {
            conn.execute_batch(sql).expect("migrate");
        }
        conn.pragma_update(None, "user_version", 2)
            .expect("version");
        conn.execute("INSERT INTO core (id, json) VALUES (1, ?1)", [V1_BLOB])
            .expect("insert");
    }
    let mut store = Store::open(&path).expect("migrate to the current schema");
    assert_eq!((rows(&store, "keyring"), rows(&store, "relay_log")), (1, 1));
    let head: String = store
        .read()
        .conn
        .query_row("SELECT json FROM core", [], |r| r.get(0))
        .expect("head");
    assert!(
        !head.contains("p0@example.org"),
        "head keeps no keyring: {head}"
    );
    let core = store.read().load_core().expect("load").expect("saved");
    assert_eq!(
        core.book().applied()[&DeviceId::parse("00000000000000bb").unwrap()],
        4
    );
    let unsigned = core.book().log().values().next().expect("op");
    assert!(!unsigned.op.is_signed());
    let mut e = Engine::new(identity(), core).expect("engine");
    let op = &e.core().book().log().values().next().expect("op").op;
    op.verify(&identity().key.certificate())
        .expect("the version 1 op is now signed by its origin");
    let bb = DeviceId::parse("00000000000000bb").unwrap();
    assert_eq!(
        e.core().book().peer_has(&bb, &me()),
        1,
        "v1 acks carried over"
    );
    assert_eq!(
        e.core().book().last_sent(&bb).expect("sent").covers[&me()],
        1
    );
    store.save_core(e.core_mut()).expect("save");
    let again = store.read().load_core().expect("load").expect("saved");
    assert!(again.book().log().values().all(|e| e.op.is_signed()));
}
