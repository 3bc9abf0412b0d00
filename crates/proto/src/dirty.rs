//! Change tracking for the large maps of the protocol state, so the store
//! writes what changed instead of the whole state.
//!
//! A [`Dirty`] set is bookkeeping, not part of the state's value: it is never
//! serialised and every two sets compare equal, so two replicas with the
//! same entries are equal whatever each has saved.

use std::collections::BTreeSet;

/// Keys of a map changed (inserted, updated or removed) since it was last
/// saved. A fresh or deserialised map is [`Dirty::all`]: the store does not
/// know what it holds, so the next save writes it whole.
#[derive(Clone, Debug)]
pub struct Dirty<K: Ord> {
    /// `None`: everything must be written.
    keys: Option<BTreeSet<K>>,
}

impl<K: Ord> Dirty<K> {
    /// Everything changed.
    pub fn all() -> Self {
        Dirty { keys: None }
    }

    /// Records a changed key.
    pub fn touch(&mut self, key: K) {
        if let Some(keys) = &mut self.keys {
            keys.insert(key);
        }
    }

    /// The changed keys, or `None` when the whole map must be written.
    pub fn changed(&self) -> Option<&BTreeSet<K>> {
        self.keys.as_ref()
    }

    /// Forgets the changes: the map as it is now has been saved.
    pub fn clear(&mut self) {
        self.keys = Some(BTreeSet::new());
    }

    /// Whether nothing changed since the last save.
    pub fn is_clean(&self) -> bool {
        self.keys.as_ref().is_some_and(BTreeSet::is_empty)
    }
}

impl<K: Ord> Default for Dirty<K> {
    fn default() -> Self {
        Self::all()
    }
}

impl<K: Ord> PartialEq for Dirty<K> {
    /// Always equal: change tracking is not part of the value.
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl<K: Ord> Eq for Dirty<K> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_whole_then_tracks_keys() {
        let mut d: Dirty<u32> = Dirty::default();
        assert!(d.changed().is_none(), "fresh maps are written whole");
        d.touch(3);
        assert!(d.changed().is_none(), "touching cannot narrow 'everything'");
        d.clear();
        assert!(d.is_clean());
        d.touch(3);
        d.touch(1);
        d.touch(3);
        assert_eq!(
            d.changed().map(|k| k.iter().copied().collect::<Vec<_>>()),
            Some(vec![1, 3])
        );
        assert!(d == Dirty::all(), "tracking never makes states unequal");
    }
}
