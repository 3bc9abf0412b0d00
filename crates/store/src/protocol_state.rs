//! The protocol state on disk, written incrementally.
//!
//! The small part of [`CoreState`] (members, account keys, acks, clock) is
//! one JSON row, `core`. The two parts that grow with history are rows of
//! their own: `keyring` (one per correspondent address) and `op_log` (one
//! per own op). A save rewrites the small row and only the keyring entries
//! and log ops the state's [`Dirty`](sma_proto::dirty::Dirty) marks name,
//! so a commit costs the size of its change, not of the state.

use std::collections::BTreeMap;

use rusqlite::params;
use sma_proto::device::CoreState;
use sma_proto::dirty::Dirty;
use sma_proto::state::{Op, PeerState};

use crate::{Db, Durability, Result, Store, StoreError};

impl Db<'_> {
    fn corrupt(&self, what: &'static str, e: serde_json::Error) -> StoreError {
        StoreError::Corrupt {
            path: self.path.to_owned(),
            what,
            detail: e.to_string(),
        }
    }

    /// The protocol state, if saved, with nothing marked as changed.
    pub fn load_core(&self) -> Result<Option<CoreState>> {
        use rusqlite::OptionalExtension;
        let head: Option<String> = self
            .conn
            .query_row("SELECT json FROM core WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(head) = head else {
            return Ok(None);
        };
        let mut core: CoreState =
            serde_json::from_str(&head).map_err(|e| self.corrupt("protocol state", e))?;
        let keyring = self.load_rows(&ROWS_KEYRING, |peer: &PeerState| peer.addr.to_lowercase())?;
        let log = self.load_rows(&ROWS_LOG, |op: &Op| op.seq)?;
        core.group.keyring = keyring;
        core.book.log = log;
        core.mark_saved();
        Ok(Some(core))
    }

    /// Writes the state's small part and what its dirty marks name. The
    /// marks are left as they are: [`Store::save_core_with`] clears them
    /// once the transaction has committed.
    fn save_core(&self, core: &mut CoreState) -> Result<()> {
        // The head is the state without its two big maps (moved out and
        // back, so new fields are saved without being listed here).
        let keyring = std::mem::take(&mut core.group.keyring);
        let log = std::mem::take(&mut core.book.log);
        let head = serde_json::to_string(&*core);
        core.group.keyring = keyring;
        core.book.log = log;
        let head = head.map_err(|e| self.corrupt("protocol state", e))?;
        self.conn
            .execute(
                "INSERT INTO core (id, json) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET json = excluded.json",
                [head],
            )
            .map_err(|e| self.err(e))?;
        self.save_rows(
            &ROWS_KEYRING,
            &core.group.keyring,
            &core.group.keyring_dirty,
            |addr| rusqlite::types::Value::Text(addr.clone()),
        )?;
        self.save_rows(&ROWS_LOG, &core.book.log, &core.book.log_dirty, |seq| {
            rusqlite::types::Value::Integer(*seq as i64)
        })
    }

    /// Every row of a table, keyed by `key_of` its value.
    fn load_rows<K: Ord, V: serde::de::DeserializeOwned>(
        &self,
        rows: &RowTable,
        key_of: impl Fn(&V) -> K,
    ) -> Result<BTreeMap<K, V>> {
        let mut stmt = self.conn.prepare(rows.select).map_err(|e| self.err(e))?;
        let mut cursor = stmt.query([]).map_err(|e| self.err(e))?;
        let mut map = BTreeMap::new();
        while let Some(row) = cursor.next().map_err(|e| self.err(e))? {
            let json: String = row.get(0).map_err(|e| self.err(e))?;
            let value: V = serde_json::from_str(&json).map_err(|e| self.corrupt(rows.what, e))?;
            map.insert(key_of(&value), value);
        }
        Ok(map)
    }

    /// Writes the rows of `map` that `dirty` names (deleting those no
    /// longer in the map), or, when it names everything, replaces them all.
    fn save_rows<K: Ord, V: serde::Serialize>(
        &self,
        rows: &RowTable,
        map: &BTreeMap<K, V>,
        dirty: &Dirty<K>,
        key: impl Fn(&K) -> rusqlite::types::Value,
    ) -> Result<()> {
        let mut put = self
            .conn
            .prepare_cached(rows.put)
            .map_err(|e| self.err(e))?;
        let mut write = |k: &K, v: &V| -> Result<()> {
            let json = serde_json::to_string(v).map_err(|e| self.corrupt(rows.what, e))?;
            put.execute(params![key(k), json])
                .map_err(|e| self.err(e))?;
            Ok(())
        };
        match dirty.changed() {
            None => {
                self.conn.execute(rows.clear, []).map_err(|e| self.err(e))?;
                for (k, v) in map {
                    write(k, v)?;
                }
            }
            Some(changed) => {
                for k in changed {
                    match map.get(k) {
                        Some(v) => write(k, v)?,
                        None => {
                            self.conn
                                .execute(rows.delete, [key(k)])
                                .map_err(|e| self.err(e))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The statements of one table of rows keyed like a map of the state.
struct RowTable {
    what: &'static str,
    select: &'static str,
    put: &'static str,
    delete: &'static str,
    clear: &'static str,
}

const ROWS_KEYRING: RowTable = RowTable {
    what: "keyring entry",
    select: "SELECT json FROM keyring",
    put: "INSERT INTO keyring (addr, json) VALUES (?1, ?2)
          ON CONFLICT (addr) DO UPDATE SET json = excluded.json",
    delete: "DELETE FROM keyring WHERE addr = ?1",
    clear: "DELETE FROM keyring",
};

const ROWS_LOG: RowTable = RowTable {
    what: "logged op",
    select: "SELECT json FROM op_log",
    put: "INSERT INTO op_log (seq, json) VALUES (?1, ?2)
          ON CONFLICT (seq) DO UPDATE SET json = excluded.json",
    delete: "DELETE FROM op_log WHERE seq = ?1",
    clear: "DELETE FROM op_log",
};

impl Store {
    /// Runs `f` and saves `core` in one transaction; once it has committed,
    /// `core` is marked saved. If anything fails, nothing is written and the
    /// marks stay, so the next save writes those changes.
    pub fn save_core_with<T, E: From<StoreError>>(
        &mut self,
        core: &mut CoreState,
        durability: Durability,
        f: impl FnOnce(&Db<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let out = self.write_with(durability, |db| {
            let out = f(db)?;
            db.save_core(core)?;
            Ok::<_, E>(out)
        })?;
        core.mark_saved();
        Ok(out)
    }

    /// Saves `core` alone (see [`Store::save_core_with`]).
    pub fn save_core(&mut self, core: &mut CoreState) -> Result<()> {
        self.save_core_with(core, Durability::Flushed, |_| Ok::<_, StoreError>(()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use rusqlite::Connection;
    use sma_proto::state::Change;
    use sma_proto::DeviceId;

    use super::*;

    fn me() -> DeviceId {
        DeviceId::parse("00000000000000aa").expect("device id")
    }

    fn observe(core: &mut CoreState, addr: &str, last_seen: u64) {
        let stamp = core.clock.tick(last_seen * 1000, &me());
        let mut peer = PeerState::new(addr);
        peer.last_seen = last_seen;
        core.group.apply(&Change::Peer(peer.clone()));
        core.book.push(&me(), stamp, Change::Peer(peer));
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
        let mut core = CoreState::default();
        for i in 0..50 {
            observe(&mut core, &format!("p{i}@example.org"), 100 + i);
        }
        assert!(core.book.has_unsaved_ops());
        store.save_core(&mut core).expect("save");
        assert!(core.group.keyring_dirty.is_clean() && core.book.log_dirty.is_clean());
        assert!(!core.book.has_unsaved_ops());
        assert_eq!((rows(&store, "keyring"), rows(&store, "op_log")), (50, 50));

        // One update and one new peer; then the log is pruned of old ops.
        observe(&mut core, "P3@example.org", 999);
        observe(&mut core, "new@example.org", 1000);
        assert_eq!(
            core.group.keyring_dirty.changed().map(BTreeSet::len),
            Some(2),
            "exactly the two touched addresses are dirty"
        );
        core.book.prune(&BTreeSet::new(), u64::MAX / 2);
        assert!(core.book.log.is_empty());
        assert!(
            !core.book.has_unsaved_ops(),
            "pruned ops need no save before a send"
        );
        store.save_core(&mut core).expect("save");
        assert_eq!((rows(&store, "keyring"), rows(&store, "op_log")), (51, 0));

        drop(store);
        let store = Store::open(&path).expect("reopen");
        let loaded = store.read().load_core().expect("load").expect("saved");
        assert_eq!(loaded, core);
        assert_eq!(loaded.group.keyring["p3@example.org"].last_seen, 999);
        assert!(loaded.group.keyring_dirty.is_clean());
    }

    #[test]
    fn failed_transaction_keeps_the_changes_for_the_next_save() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("db");
        let mut store = Store::open(&path).expect("open");
        let mut core = CoreState::default();
        store.save_core(&mut core).expect("save");
        observe(&mut core, "a@example.org", 5);
        let failed: std::result::Result<(), StoreError> =
            store.save_core_with(&mut core, Durability::Flushed, |db| {
                db.set_meta("x", "y")?;
                Err(StoreError::Corrupt {
                    path: PathBuf::new(),
                    what: "test",
                    detail: String::new(),
                })
            });
        assert!(failed.is_err());
        assert!(
            !core.group.keyring_dirty.is_clean(),
            "marks survive a rollback"
        );
        assert_eq!(rows(&store, "keyring"), 0);
        store.save_core(&mut core).expect("save");
        let loaded = store.read().load_core().expect("load").expect("saved");
        assert_eq!(loaded.group.keyring.len(), 1);
        assert_eq!(loaded.book.log.len(), 1);
    }

    #[test]
    fn a_replaced_state_is_written_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(&dir.path().join("db")).expect("open");
        let mut core = CoreState::default();
        observe(&mut core, "a@example.org", 5);
        observe(&mut core, "b@example.org", 6);
        store.save_core(&mut core).expect("save");
        // A fresh state (a device stepping down, a welcome installed) knows
        // nothing of what is on disk: saving it replaces everything.
        let mut fresh = CoreState::default();
        observe(&mut fresh, "c@example.org", 7);
        store.save_core(&mut fresh).expect("save");
        let loaded = store.read().load_core().expect("load").expect("saved");
        assert_eq!(
            loaded.group.keyring.keys().collect::<Vec<_>>(),
            ["c@example.org"]
        );
        assert_eq!(loaded, fresh);
    }

    #[test]
    fn version_2_state_blob_is_split_into_rows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("db");
        let mut core = CoreState::default();
        for i in 0..3 {
            observe(&mut core, &format!("p{i}@example.org"), 10 + i);
        }
        {
            let conn = Connection::open(&path).expect("open");
            for sql in &crate::MIGRATIONS[..2] {
                conn.execute_batch(sql).expect("migrate");
            }
            conn.pragma_update(None, "user_version", 2)
                .expect("version");
            let blob = serde_json::to_string(&core).expect("json");
            conn.execute("INSERT INTO core (id, json) VALUES (1, ?1)", [blob])
                .expect("insert");
        }
        let store = Store::open(&path).expect("migrate to 3");
        assert_eq!((rows(&store, "keyring"), rows(&store, "op_log")), (3, 3));
        let head: String = store
            .read()
            .conn
            .query_row("SELECT json FROM core", [], |r| r.get(0))
            .expect("head");
        assert!(
            !head.contains("p0@example.org"),
            "head keeps no keyring: {head}"
        );
        let loaded = store.read().load_core().expect("load").expect("saved");
        assert_eq!(loaded, core);
    }
}
