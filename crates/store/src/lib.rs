//! # sma-store — the local store of one sma device
//!
//! One SQLite database (bundled SQLite, WAL, `STRICT` tables, versioned
//! migrations) per device home. Every change the protocol makes is written
//! in one transaction *before* the matching server-side deletion, so a
//! `kill -9` at any point loses nothing acknowledged and applies nothing twice.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod protocol_state;

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use thiserror::Error;
use zeroize::Zeroizing;

/// Errors of the store.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("local store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// Stored JSON did not decode (corrupt or from a newer version).
    #[error("local store {path}: stored {what} is unreadable: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which record.
        what: &'static str,
        /// Decoder message.
        detail: String,
    },
    /// The database was written by a newer sma.
    #[error("local store {path} has schema version {found}, newer than this sma supports ({supported}) — upgrade sma")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Version found.
        found: i64,
        /// Highest version we know.
        supported: i64,
    },
    /// File permissions could not be set.
    #[error("local store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Schema migrations; index + 1 is the `user_version` after applying.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
     CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT;
     CREATE TABLE core (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT NULL) STRICT;
     CREATE TABLE processed (message_id TEXT PRIMARY KEY, at INTEGER NOT NULL) STRICT;
     CREATE TABLE folder_sync (folder TEXT PRIMARY KEY, uid_validity INTEGER NOT NULL, last_uid INTEGER NOT NULL) STRICT;
     CREATE TABLE app_inbox (message_id TEXT PRIMARY KEY, sender TEXT NOT NULL, kind TEXT NOT NULL,
                             body BLOB NOT NULL, sent_at INTEGER NOT NULL, received_at INTEGER NOT NULL) STRICT;",
    // 2: when a message we could not process yet was first seen.
    "CREATE TABLE deferred (message_id TEXT PRIMARY KEY, first_seen INTEGER NOT NULL) STRICT;",
    // 3: the keyring and the op log leave the state JSON for rows of their
    // own, so saves write what changed (see `protocol_state.rs`).
    "CREATE TABLE keyring (addr TEXT PRIMARY KEY, json TEXT NOT NULL) STRICT;
     CREATE TABLE op_log (seq INTEGER PRIMARY KEY, json TEXT NOT NULL) STRICT;
     INSERT INTO keyring (addr, json)
         SELECT j.key, j.value FROM core, json_each(core.json, '$.group.keyring') AS j;
     INSERT INTO op_log (seq, json)
         SELECT CAST(j.key AS INTEGER), j.value FROM core, json_each(core.json, '$.book.log') AS j;
     UPDATE core SET json = json_set(json, '$.group.keyring', json('{}'), '$.book.log', json('{}'));",
    // 4: protocol version 2. The op log becomes the relay log, keyed by
    // origin and seq (version 1 rows hold unsigned own ops, which the
    // device signs on first use); a deferred message remembers the size of
    // the member list when it was last opened in vain.
    "CREATE TABLE relay_log (origin TEXT NOT NULL, seq INTEGER NOT NULL, json TEXT NOT NULL,
                             PRIMARY KEY (origin, seq)) STRICT;
     INSERT INTO relay_log (origin, seq, json)
         SELECT json_extract(json, '$.origin'), seq, json FROM op_log;
     DROP TABLE op_log;
     ALTER TABLE deferred ADD COLUMN tried_at_members INTEGER NOT NULL DEFAULT 0;",
];

/// An application message received and not yet handed to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredApp {
    /// Message id.
    pub message_id: String,
    /// Sending device id.
    pub sender: String,
    /// Application kind.
    pub kind: String,
    /// Body bytes.
    pub body: Vec<u8>,
    /// When the sender sent it (Unix seconds).
    pub sent_at: u64,
}

/// The store of one device.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, applies migrations
    /// and restricts the file to its owner (0600).
    pub fn open(path: &Path) -> Result<Store> {
        let err = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        restrict_permissions(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        // Deleted rows (old secrets, processed messages, wiped stores) are
        // overwritten with zeros, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        let mut store = Store {
            conn,
            path: path.to_owned(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                supported,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(())
    }

    /// Read access.
    pub fn read(&self) -> Db<'_> {
        Db {
            conn: &self.conn,
            path: &self.path,
        }
    }

    /// Runs `f` in one transaction; commits if it returns `Ok`. The commit
    /// is flushed to disk ([`Durability::Flushed`]).
    pub fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Db<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.write_with(Durability::Flushed, f)
    }

    /// Runs `f` in one transaction with the given durability.
    pub fn write_with<T, E: From<StoreError>>(
        &mut self,
        durability: Durability,
        f: impl FnOnce(&Db<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        if durability == Durability::Committed {
            self.set_synchronous("NORMAL")?;
            let out = self.transaction(f);
            self.set_synchronous("FULL")?;
            return out;
        }
        self.transaction(f)
    }

    fn set_synchronous(&self, mode: &str) -> Result<()> {
        self.conn
            .pragma_update(None, "synchronous", mode)
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }

    fn transaction<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Db<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let out = f(&Db {
            conn: &tx,
            path: &path,
        })?;
        tx.commit().map_err(err)?;
        Ok(out)
    }
}

/// How far a commit must reach before [`Store::write_with`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// On disk (the WAL is flushed): survives a power failure. Required
    /// before a server-side deletion of what the transaction recorded.
    Flushed,
    /// Committed but not flushed: survives a crash of the process, and the
    /// next flushed commit flushes it too; a power failure may lose it. For
    /// records whose loss is harmless (what was sent can be sent again).
    Committed,
}

/// Queries and updates on the store, inside or outside a transaction.
pub struct Db<'a> {
    conn: &'a Connection,
    path: &'a Path,
}

impl Db<'_> {
    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.to_owned(),
            source,
        }
    }

    /// A configuration value.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Sets a configuration value.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// A secret blob (device key, account key), zeroized when dropped.
    pub fn secret(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        self.conn
            .query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| {
                r.get::<_, Vec<u8>>(0).map(Zeroizing::new)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Stores a secret blob.
    pub fn set_secret(&self, name: &str, value: &[u8]) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO secrets (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Deletes every secret (used when the device leaves or is removed).
    pub fn wipe_secrets(&self) -> Result<()> {
        self.conn
            .execute("DELETE FROM secrets", [])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Whether a message id was already processed.
    pub fn is_processed(&self, message_id: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT 1 FROM processed WHERE message_id = ?1",
                [message_id],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| self.err(e))
    }

    /// Records a message id as processed at `now` (Unix seconds).
    pub fn mark_processed(&self, message_id: &str, now: u64) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO processed (message_id, at) VALUES (?1, ?2)",
                params![message_id, now as i64],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Forgets processed ids older than `before` (Unix seconds).
    pub fn forget_processed_before(&self, before: u64) -> Result<usize> {
        self.conn
            .execute("DELETE FROM processed WHERE at < ?1", [before as i64])
            .map_err(|e| self.err(e))
    }

    /// Per folder: (UIDVALIDITY, highest UID handled).
    pub fn folder_sync(&self, folder: &str) -> Result<Option<(u32, u32)>> {
        self.conn
            .query_row(
                "SELECT uid_validity, last_uid FROM folder_sync WHERE folder = ?1",
                [folder],
                |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u32)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records folder progress.
    pub fn set_folder_sync(&self, folder: &str, uid_validity: u32, last_uid: u32) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO folder_sync (folder, uid_validity, last_uid) VALUES (?1, ?2, ?3)
                 ON CONFLICT (folder) DO UPDATE SET uid_validity = excluded.uid_validity, last_uid = excluded.last_uid",
                params![folder, uid_validity as i64, last_uid as i64],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// What was recorded about a deferred message: when it was first seen
    /// and the size of the member list when it was last opened in vain.
    pub fn deferral(&self, message_id: &str) -> Result<Option<(u64, u64)>> {
        self.conn
            .query_row(
                "SELECT first_seen, tried_at_members FROM deferred WHERE message_id = ?1",
                [message_id],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records a deferred message (keeping the earliest first sighting).
    pub fn set_deferral(
        &self,
        message_id: &str,
        first_seen: u64,
        tried_at_members: u64,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO deferred (message_id, first_seen, tried_at_members) VALUES (?1, ?2, ?3)
                 ON CONFLICT (message_id) DO UPDATE SET
                     first_seen = min(first_seen, excluded.first_seen),
                     tried_at_members = excluded.tried_at_members",
                params![message_id, first_seen as i64, tried_at_members as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Forgets deferred-message records older than `before`.
    pub fn forget_deferred_before(&self, before: u64) -> Result<usize> {
        self.conn
            .execute(
                "DELETE FROM deferred WHERE first_seen < ?1",
                [before as i64],
            )
            .map_err(|e| self.err(e))
    }

    /// Queues a received application message for the user.
    pub fn push_app(&self, app: &StoredApp, now: u64) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO app_inbox (message_id, sender, kind, body, sent_at, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![app.message_id, app.sender, app.kind, app.body, app.sent_at as i64, now as i64],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Received application messages not yet handed out, oldest first.
    pub fn pending_apps(&self) -> Result<Vec<StoredApp>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT message_id, sender, kind, body, sent_at FROM app_inbox
                 ORDER BY received_at, sent_at, message_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredApp {
                    message_id: r.get(0)?,
                    sender: r.get(1)?,
                    kind: r.get(2)?,
                    body: r.get(3)?,
                    sent_at: r.get::<_, i64>(4)? as u64,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Removes a handed-out application message.
    pub fn remove_app(&self, message_id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM app_inbox WHERE message_id = ?1", [message_id])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    })
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wiped secrets leave no copy in the database file's free pages.
    #[test]
    fn wiped_secrets_are_overwritten_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sma.sqlite");
        let marker = b"SECRET-KEY-MATERIAL-7f3a9c".repeat(200);
        let mut s = Store::open(&path).unwrap();
        s.write(|db| db.set_secret("account_key", &marker)).unwrap();
        s.write(|db| db.wipe_secrets()).unwrap();
        drop(s); // the last connection checkpoints and removes the WAL
        let mut on_disk = std::fs::read(&path).unwrap();
        if let Ok(wal) = std::fs::read(dir.path().join("sma.sqlite-wal")) {
            on_disk.extend_from_slice(&wal);
        }
        let needle = b"SECRET-KEY-MATERIAL-7f3a9c";
        assert!(
            !on_disk.windows(needle.len()).any(|w| w == needle),
            "a wiped secret is still readable in the database file"
        );
    }

    #[test]
    fn roundtrips_and_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sma.sqlite");
        let mut s = Store::open(&path).unwrap();
        s.write(|db| {
            db.set_meta("device_id", "0000000000000001")?;
            db.set_secret("device_key", b"k")?;
            db.mark_processed("m1", 10)?;
            db.set_folder_sync("f", 7, 42)?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
        // A failing transaction leaves nothing behind.
        let r: std::result::Result<(), StoreError> = s.write(|db| {
            db.set_meta("device_id", "changed")?;
            Err(StoreError::Corrupt {
                path: PathBuf::new(),
                what: "test",
                detail: String::new(),
            })
        });
        assert!(r.is_err());
        drop(s);
        let s = Store::open(&path).unwrap();
        let db = s.read();
        assert_eq!(
            db.meta("device_id").unwrap().as_deref(),
            Some("0000000000000001")
        );
        assert_eq!(
            db.secret("device_key")
                .unwrap()
                .as_deref()
                .map(|v| v.as_slice()),
            Some(&b"k"[..])
        );
        assert!(db.is_processed("m1").unwrap());
        assert!(!db.is_processed("m2").unwrap());
        assert_eq!(db.folder_sync("f").unwrap(), Some((7, 42)));
        assert_eq!(db.deferral("d").unwrap(), None);
        db.set_deferral("d", 5, 0).unwrap();
        db.set_deferral("d", 9, 3).unwrap();
        assert_eq!(
            db.deferral("d").unwrap(),
            Some((5, 3)),
            "first sighting is kept"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn app_queue_is_ordered_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("db")).unwrap();
        let app = |id: &str, t| StoredApp {
            message_id: id.into(),
            sender: "s".into(),
            kind: "text".into(),
            body: id.as_bytes().to_vec(),
            sent_at: t,
        };
        s.write(|db| {
            db.push_app(&app("b", 2), 5)?;
            db.push_app(&app("a", 1), 6)?;
            db.push_app(&app("b", 2), 7)?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
        let got = s.read().pending_apps().unwrap();
        assert_eq!(
            got.iter()
                .map(|a| a.message_id.as_str())
                .collect::<Vec<_>>(),
            ["b", "a"]
        );
        s.write(|db| db.remove_app("b")).unwrap();
        assert_eq!(s.read().pending_apps().unwrap().len(), 1);
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", 99).unwrap();
        }
        assert!(matches!(Store::open(&path), Err(StoreError::TooNew { .. })));
    }
}
