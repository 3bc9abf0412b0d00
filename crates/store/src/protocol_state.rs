//! The protocol state on disk, written incrementally.
//!
//! The small part of [`CoreState`] (members, account keys, acks, clock) is
//! one JSON row, `core`. The two parts that grow with history are rows of
//! their own: `keyring` (one per correspondent address) and `relay_log`
//! (one per op held for relaying, keyed by origin and seq). A save rewrites
//! the small row and only the rows the state reports as changed, so a
//! commit costs the size of its change, not of the state.

use rusqlite::params;
use sma_proto::core::{CoreState, Rows};
use sma_proto::state::PeerState;
use sma_proto::sync::LogEntry;
use zeroize::Zeroizing;

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
        // The head holds the account secret key: keep it in a buffer that
        // is wiped when this function returns.
        let head: Option<Zeroizing<String>> = self
            .conn
            .query_row("SELECT json FROM core WHERE id = 1", [], |r| {
                r.get::<_, String>(0).map(Zeroizing::new)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(head) = head else {
            return Ok(None);
        };
        let keyring = self.load_rows("SELECT json FROM keyring", |json| {
            serde_json::from_str::<PeerState>(json).map_err(|e| self.corrupt("keyring entry", e))
        })?;
        let log = self.load_rows("SELECT json FROM relay_log", |json| {
            LogEntry::from_row_json(json).map_err(|e| self.corrupt("logged op", e))
        })?;
        CoreState::from_parts(&head, keyring, log)
            .map(Some)
            .map_err(|e| self.corrupt("protocol state", e))
    }

    /// Writes the state's head and the rows it reports as changed. The
    /// marks are left as they are: [`Store::save_core_with`] clears them
    /// once the transaction has committed.
    fn save_core(&self, core: &mut CoreState) -> Result<()> {
        let head = core
            .head_json()
            .map_err(|e| self.corrupt("protocol state", e))?;
        self.conn
            .execute(
                "INSERT INTO core (id, json) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET json = excluded.json",
                [head.as_str()],
            )
            .map_err(|e| self.err(e))?;
        self.save_keyring(core.keyring_rows())?;
        self.save_log(core.log_rows())
    }

    fn save_keyring(&self, rows: Rows<'_, String, PeerState>) -> Result<()> {
        let mut put = self
            .conn
            .prepare_cached(
                "INSERT INTO keyring (addr, json) VALUES (?1, ?2)
                 ON CONFLICT (addr) DO UPDATE SET json = excluded.json",
            )
            .map_err(|e| self.err(e))?;
        let (rows, all) = flatten(rows);
        if all {
            self.conn
                .execute("DELETE FROM keyring", [])
                .map_err(|e| self.err(e))?;
        }
        for (addr, peer) in rows {
            match peer {
                Some(p) => {
                    let json =
                        serde_json::to_string(p).map_err(|e| self.corrupt("keyring entry", e))?;
                    put.execute(params![addr, json]).map_err(|e| self.err(e))?;
                }
                None => {
                    self.conn
                        .execute("DELETE FROM keyring WHERE addr = ?1", [addr])
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        Ok(())
    }

    fn save_log(&self, rows: Rows<'_, sma_proto::ops::OpId, LogEntry>) -> Result<()> {
        let mut put = self
            .conn
            .prepare_cached(
                "INSERT INTO relay_log (origin, seq, json) VALUES (?1, ?2, ?3)
                 ON CONFLICT (origin, seq) DO UPDATE SET json = excluded.json",
            )
            .map_err(|e| self.err(e))?;
        let (rows, all) = flatten(rows);
        if all {
            self.conn
                .execute("DELETE FROM relay_log", [])
                .map_err(|e| self.err(e))?;
        }
        for ((origin, seq), entry) in rows {
            match entry {
                Some(e) => {
                    let json = e.to_row_json().map_err(|e| self.corrupt("logged op", e))?;
                    put.execute(params![origin.as_str(), *seq as i64, json])
                        .map_err(|e| self.err(e))?;
                }
                None => {
                    self.conn
                        .execute(
                            "DELETE FROM relay_log WHERE origin = ?1 AND seq = ?2",
                            params![origin.as_str(), *seq as i64],
                        )
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        Ok(())
    }

    /// Every row of a one-column query, decoded by `decode`.
    fn load_rows<V>(&self, select: &str, decode: impl Fn(&str) -> Result<V>) -> Result<Vec<V>> {
        let mut stmt = self.conn.prepare(select).map_err(|e| self.err(e))?;
        let mut cursor = stmt.query([]).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = cursor.next().map_err(|e| self.err(e))? {
            let json: String = row.get(0).map_err(|e| self.err(e))?;
            out.push(decode(&json)?);
        }
        Ok(out)
    }
}

/// The rows to write, and whether the table is replaced whole first.
fn flatten<'a, K, V>(rows: Rows<'a, K, V>) -> (Vec<(&'a K, Option<&'a V>)>, bool) {
    match rows {
        Rows::All(all) => (all.into_iter().map(|(k, v)| (k, Some(v))).collect(), true),
        Rows::Changed(changed) => (changed, false),
    }
}

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
mod tests;
