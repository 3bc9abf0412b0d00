//! Synthesised UIDs: JMAP has none, so a session numbers the messages it
//! sees itself (see the crate documentation for the rules).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sma_imap::Uid;

/// What a session knows of one message.
#[derive(Clone, Debug, Default)]
pub(crate) struct Entry {
    /// The JMAP email id.
    pub id: String,
    /// Its size in octets, once seen.
    pub size: Option<u32>,
    /// Its blob (the raw message), once seen.
    pub blob_id: Option<String>,
    /// In more than one mailbox when last seen (a server that keeps one
    /// email for identical content, RFC 8621 `alreadyExists`): taking it
    /// out of one mailbox must not destroy it.
    pub shared: bool,
}

/// The UIDs of one mailbox in this session.
#[derive(Clone, Debug)]
pub(crate) struct UidMap {
    /// Email id → UID.
    pub by_id: HashMap<String, Uid>,
    /// UID → message, ascending.
    pub entries: BTreeMap<Uid, Entry>,
    /// One above the highest UID ever handed out in this mailbox (never
    /// goes down, like UIDNEXT).
    pub next: Uid,
}

/// One message of a mailbox listing, for [`UidMap::absorb`].
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    pub id: String,
    /// `receivedAt` as the server wrote it (RFC 3339 UTC, compared as text
    /// after normalising; see [`sort_key`]).
    pub received_at: String,
    pub size: Option<u32>,
    pub blob_id: Option<String>,
    /// In more than one mailbox.
    pub shared: bool,
}

impl Default for UidMap {
    /// A map for a mailbox seen for the first time (UIDNEXT 1).
    fn default() -> UidMap {
        UidMap {
            by_id: HashMap::new(),
            entries: BTreeMap::new(),
            next: 1,
        }
    }
}

impl UidMap {
    /// Brings the map up to the mailbox's full listing: messages gone are
    /// dropped, new ones numbered from `counter` on in arrival order
    /// (`receivedAt`, then id), known ones keep their UIDs.
    pub fn absorb(&mut self, mut listed: Vec<Listed>, counter: &mut Uid) {
        let present: HashSet<&str> = listed.iter().map(|l| l.id.as_str()).collect();
        let gone: Vec<Uid> = self
            .entries
            .iter()
            .filter(|(_, e)| !present.contains(e.id.as_str()))
            .map(|(u, _)| *u)
            .collect();
        for uid in gone {
            if let Some(e) = self.entries.remove(&uid) {
                self.by_id.remove(&e.id);
            }
        }
        listed.sort_by(|a, b| {
            sort_key(&a.received_at)
                .cmp(&sort_key(&b.received_at))
                .then_with(|| a.id.cmp(&b.id))
        });
        for l in listed {
            match self.by_id.get(&l.id) {
                Some(uid) => {
                    let e = self.entries.get_mut(uid).expect("maps agree");
                    e.size = l.size.or(e.size);
                    e.blob_id = l.blob_id.or(e.blob_id.take());
                    e.shared = l.shared;
                }
                None => {
                    let uid = self.add(l.id.clone(), counter);
                    let e = self.entries.get_mut(&uid).expect("just added");
                    e.size = l.size;
                    e.blob_id = l.blob_id;
                    e.shared = l.shared;
                }
            }
        }
    }

    /// Numbers a new message with the session's next UID.
    pub fn add(&mut self, id: String, counter: &mut Uid) -> Uid {
        if let Some(uid) = self.by_id.get(&id) {
            return *uid;
        }
        let uid = *counter;
        *counter = counter.saturating_add(1);
        self.next = self.next.max(uid.saturating_add(1));
        self.by_id.insert(id.clone(), uid);
        self.entries.insert(
            uid,
            Entry {
                id,
                ..Entry::default()
            },
        );
        uid
    }

    /// Forgets a message (deleted or moved away).
    pub fn remove_uid(&mut self, uid: Uid) -> Option<Entry> {
        let e = self.entries.remove(&uid)?;
        self.by_id.remove(&e.id);
        Some(e)
    }

    /// Whether the map holds exactly these email ids.
    pub fn same_ids(&self, ids: &[String]) -> bool {
        ids.len() == self.by_id.len() && ids.iter().all(|i| self.by_id.contains_key(i))
    }
}

/// `receivedAt` in a form that sorts by time: RFC 3339 UTC dates sort as
/// text once a trailing `Z` and fractional seconds are aligned.
fn sort_key(s: &str) -> String {
    let s = s.trim_end_matches('Z');
    match s.split_once('.') {
        Some((whole, frac)) => format!("{whole}.{frac:0<9}"),
        None => format!("{s}.000000000"),
    }
}

/// The last UIDVALIDITY handed out in this process.
static LAST_VALIDITY: AtomicU32 = AtomicU32::new(0);

/// A UIDVALIDITY for a new session: the wall clock in milliseconds (modulo
/// 2³²), above every value this process handed out before, never 0. A new
/// session therefore never reuses the previous one's value, so a caller
/// that stored UIDs rescans instead of trusting them.
pub(crate) fn new_validity() -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u32)
        .unwrap_or(1)
        .max(1);
    let mut prev = LAST_VALIDITY.load(Ordering::Relaxed);
    loop {
        let next = if now > prev {
            now
        } else {
            prev.wrapping_add(1).max(1)
        };
        match LAST_VALIDITY.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(id: &str, at: &str) -> Listed {
        Listed {
            id: id.into(),
            received_at: at.into(),
            size: Some(1),
            blob_id: None,
            shared: false,
        }
    }

    #[test]
    fn uids_follow_arrival_and_stay() {
        let mut counter = 1;
        let mut m = UidMap::default();
        m.absorb(
            vec![
                l("b", "2026-01-01T00:00:01Z"),
                l("a", "2026-01-01T00:00:01Z"),
                l("c", "2026-01-01T00:00:00Z"),
            ],
            &mut counter,
        );
        assert_eq!(m.by_id["c"], 1);
        assert_eq!(m.by_id["a"], 2);
        assert_eq!(m.by_id["b"], 3);
        // "a" gone, "d" new (even if it claims an earlier arrival): higher UID.
        m.absorb(
            vec![
                l("b", "2026-01-01T00:00:01Z"),
                l("c", "2026-01-01T00:00:00Z"),
                l("d", "2025-01-01T00:00:00Z"),
            ],
            &mut counter,
        );
        assert_eq!(m.by_id["d"], 4);
        assert_eq!(m.by_id["b"], 3);
        assert!(!m.by_id.contains_key("a"));
        assert_eq!(m.next, 5);
        assert!(m.same_ids(&["b".into(), "c".into(), "d".into()]));
        m.remove_uid(4);
        assert_eq!(m.next, 5, "UIDNEXT never goes down");
    }

    #[test]
    fn validities_differ() {
        let a = new_validity();
        let b = new_validity();
        assert_ne!(a, b);
        assert_ne!(a, 0);
    }

    #[test]
    fn fractional_seconds_sort() {
        assert!(sort_key("2026-01-01T00:00:01.5Z") > sort_key("2026-01-01T00:00:01Z"));
        assert!(sort_key("2026-01-01T00:00:01.05Z") < sort_key("2026-01-01T00:00:01.5Z"));
    }
}
