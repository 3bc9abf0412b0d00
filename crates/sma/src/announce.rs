//! The announcements folder: reading, verifying and replacing announcements.

use std::collections::{BTreeMap, BTreeSet};

use sma_proto::engine::liveness::HEARTBEAT_FUTURE_SLACK_SECS;

use sma_imap::{ImapError, Transport, Uid, UidRange};
use sma_proto::device::{build_announcement, verify_announcement};
use sma_proto::envelope::{peek_marker, Envelope, Kind};
use sma_proto::payload::{AnnouncedState, Announcement};
use sma_proto::DeviceId;
use tracing::{debug, warn};

use crate::device::Device;
use crate::error::Result;

/// Largest announcement we download.
const ANNOUNCE_CAP: u32 = 256 * 1024;
/// Most announcements we look at (newest first); more is flooding.
const MAX_ANNOUNCEMENTS: usize = 2000;

/// A verified announcement and where it lies.
#[derive(Clone, Debug)]
pub struct SeenAnnouncement {
    /// UID in the announcements folder.
    pub uid: Uid,
    /// The announcement.
    pub ann: Announcement,
    /// Fingerprint of the certificate that signed it.
    pub fingerprint: String,
}

/// Reads and verifies every announcement. `None` when the folder does not exist.
pub async fn read_all<T: Transport>(
    t: &mut T,
    folder: &str,
) -> Result<Option<Vec<SeenAnnouncement>>> {
    read_all_in(t, folder, true, None).await
}

/// [`read_all`], asking for the bodies of the announcements among the
/// [`sma_imap::PREFETCH_MESSAGES`] UIDs below `uid_next` (the folder's
/// UIDNEXT, as a `STATUS` told) in the flight that reads the headers: a
/// folder that holds few announcements is read in one round trip.
pub async fn read_all_below<T: Transport>(
    t: &mut T,
    folder: &str,
    uid_next: Option<Uid>,
) -> Result<Option<Vec<SeenAnnouncement>>> {
    read_all_in(t, folder, true, prefetch_below(uid_next)).await
}

/// [`read_all`], asking for the bodies of the first
/// [`sma_imap::PREFETCH_MESSAGES`] UIDs in the flight that reads the
/// headers: for a folder that is new or holds few announcements (`init`),
/// read in one round trip then.
pub async fn read_all_from_first<T: Transport>(
    t: &mut T,
    folder: &str,
) -> Result<Option<Vec<SeenAnnouncement>>> {
    read_all_in(t, folder, true, Some(1)).await
}

/// [`read_all`] with the folder selected read-write, for callers that then
/// delete some of the announcements: the UIDs stay valid while the folder
/// stays selected (a UIDVALIDITY change ends the session), whereas between
/// an EXAMINE and a later SELECT they may come to name other messages.
/// With `uid_next` (the folder's UIDNEXT as far as the caller knows), as
/// [`read_all_below`] asks for bodies.
pub(crate) async fn read_all_for_update<T: Transport>(
    t: &mut T,
    folder: &str,
    uid_next: Option<Uid>,
) -> Result<Option<Vec<SeenAnnouncement>>> {
    read_all_in(t, folder, false, prefetch_below(uid_next)).await
}

/// Where a prefetch of the [`sma_imap::PREFETCH_MESSAGES`] UIDs below
/// `uid_next` starts.
fn prefetch_below(uid_next: Option<Uid>) -> Option<Uid> {
    uid_next.map(|n| n.saturating_sub(sma_imap::PREFETCH_MESSAGES).max(1))
}

async fn read_all_in<T: Transport>(
    t: &mut T,
    folder: &str,
    read_only: bool,
    prefetch_from: Option<Uid>,
) -> Result<Option<Vec<SeenAnnouncement>>> {
    let mut headers = match t
        .open_and_fetch_headers(folder, read_only, UidRange::all(), prefetch_from)
        .await
    {
        Ok((_, headers)) => headers,
        Err(ImapError::NoSuchFolder { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Filter by kind first, then bound: junk appended by someone holding the
    // password must not push real announcements out of the window.
    headers.retain(|h| match peek_marker(&h.header) {
        Ok(m) if m.kind == Kind::Announce => true,
        Ok(m) => {
            debug!(uid = h.uid, kind = %m.kind, "non-announcement in the announcements folder, ignored");
            false
        }
        Err(e) => {
            debug!(uid = h.uid, error = %e, "foreign message in the announcements folder, ignored");
            false
        }
    });
    headers.sort_by_key(|h| std::cmp::Reverse(h.uid));
    headers.truncate(MAX_ANNOUNCEMENTS);
    let wanted: Vec<Uid> = headers.iter().map(|h| h.uid).collect();
    let mut out = Vec::new();
    for msg in t.fetch_messages(&wanted, ANNOUNCE_CAP).await? {
        let Some(body) = msg.body else {
            warn!(
                uid = msg.uid,
                size = msg.size,
                "oversized announcement ignored"
            );
            continue;
        };
        let verified = Envelope::parse(&body)
            .map_err(sma_proto::ProtoError::from)
            .and_then(|env| verify_announcement(&env));
        match verified {
            Ok((ann, cert)) => out.push(SeenAnnouncement {
                uid: msg.uid,
                ann,
                fingerprint: cert.fingerprint().to_string(),
            }),
            Err(e) => warn!(uid = msg.uid, error = %e, "invalid announcement ignored"),
        }
    }
    out.sort_by_key(|s| s.uid);
    Ok(Some(out))
}

/// The newest announcement per device: by heartbeat (clamped to 24 h after
/// `now`, so a far-future heartbeat does not win), then UID.
pub fn latest_per_device(
    all: &[SeenAnnouncement],
    now: u64,
) -> BTreeMap<DeviceId, SeenAnnouncement> {
    let clamp = |s: &SeenAnnouncement| s.ann.heartbeat.min(now + HEARTBEAT_FUTURE_SLACK_SECS);
    let mut map: BTreeMap<DeviceId, SeenAnnouncement> = BTreeMap::new();
    for s in all {
        match map.get(&s.ann.device_id) {
            Some(cur) if (clamp(cur), cur.uid) >= (clamp(s), s.uid) => {}
            _ => {
                map.insert(s.ann.device_id.clone(), s.clone());
            }
        }
    }
    map
}

/// The fingerprints of the keys `id` is announced under (more than one: a
/// look-alike announcement, PROTOCOL 18.2).
pub fn fingerprints_of(all: &[SeenAnnouncement], id: &DeviceId) -> BTreeSet<String> {
    all.iter()
        .filter(|s| &s.ann.device_id == id)
        .map(|s| s.fingerprint.clone())
        .collect()
}

impl Device {
    /// Appends a fresh announcement of ourselves and deletes our older ones.
    pub(crate) async fn announce<T: Transport>(
        &mut self,
        t: &mut T,
        state: AnnouncedState,
        founder: bool,
    ) -> Result<()> {
        let folder = self.info.folders.announce();
        let now = self.now();
        let bytes = build_announcement(
            &mut self.rng,
            self.engine.identity(),
            &self.info.name,
            self.info.created,
            now,
            state,
            self.info.folders.layout,
            founder,
        )?;
        let new_uid = match t.append(&folder, &[], &bytes).await {
            Err(ImapError::NoSuchFolder { .. }) => {
                // Deleted under us (by a person or the provider): recreate it.
                warn!(%folder, "the announcements folder vanished; recreating it");
                crate::init::create_unsubscribed(t, &folder).await?;
                t.append(&folder, &[], &bytes).await?
            }
            r => r?,
        };
        self.info.announced_at = now;
        self.save()?;
        self.delete_own_announcements(t, new_uid).await
    }

    /// Deletes our own announcements except `keep` (without a UID from
    /// APPENDUID, except the newest one).
    pub(crate) async fn delete_own_announcements<T: Transport>(
        &mut self,
        t: &mut T,
        keep: Option<Uid>,
    ) -> Result<()> {
        let folder = self.info.folders.announce();
        // Our new announcement is the newest: the bodies of those just
        // below it come with the headers.
        let uid_next = keep.map(|k| k.saturating_add(1));
        let Some(all) = read_all_for_update(t, &folder, uid_next).await? else {
            return Ok(());
        };
        let me = self.engine.identity().fingerprint();
        let own: Vec<Uid> = all
            .iter()
            .filter(|s| s.ann.device_id == self.info.id && s.fingerprint == me)
            .map(|s| s.uid)
            .collect();
        // A UID from APPENDUID that is not among our announcements any more
        // (the folder's UIDVALIDITY changed meanwhile) protects nothing:
        // keep the newest one instead.
        let keep = keep
            .filter(|k| own.contains(k))
            .or(own.iter().copied().max());
        let stale: Vec<Uid> = own.into_iter().filter(|u| Some(*u) != keep).collect();
        if !stale.is_empty() {
            // Still selected by read_all_for_update: the UIDs are current.
            self.deletion(t.capabilities())
                .remove(t, &folder, &stale)
                .await?;
        }
        Ok(())
    }
}
