//! The group lifecycle: forced removal (with account-key rotation), leaving,
//! the expiry policy and `gc`.
//!
//! * `remove ID` marks the device `removed` in the replicated state (final in
//!   the CRDT), deletes its announcements and its inbox folder, and tells the
//!   remaining members through the ordinary coalesced sync messages. With
//!   rotation it also adds a whole new account key (generation + 1), sealed
//!   only to the remaining members.
//! * `leave` is the same, done by the device itself, which then wipes its
//!   secrets and group state.
//! * Expiry (see [`crate::expiry`]) removes members that have been silent for
//!   longer than the policy; `gc` runs it now, `sync` when it is due.
//!
//! A removed device learns of it only from authenticated evidence: an op,
//! signed by a member, that sets its record `removed` — relayed in a sync
//! message, or in the removal notice left in its inbox. From then on it is
//! [`Role::Removed`] and every command fails with [`Error::Removed`] (exit
//! status 4). Folders that vanish prove nothing: they are recreated.

use std::path::Path;

use serde::Serialize;
use sma_crypto::AccountKey;
use sma_imap::{ImapError, Transport, Uid};
use sma_proto::engine::membership::Removing;
use sma_proto::ops::SignedOp;
use sma_proto::state::Change;
use sma_proto::DeviceId;
use sma_store::Store;
use tracing::{info, warn};

use crate::announce::{self, SeenAnnouncement};
use crate::config::Role;
use crate::device::{Device, DeviceInfo, STORE_FILE};
use crate::error::{Error, Result};
use crate::round::HEARTBEAT_ON_START_SECS;

/// The default expiry policy: 90 days of silence.
pub const DEFAULT_EXPIRE_AFTER_SECS: u64 = 90 * 86_400;
/// Expiry is checked at most this often by `sync`/`watch` (and at least four
/// times per policy period, for short test policies).
pub const EXPIRY_CHECK_SECS: u64 = 3_600;
pub use sma_proto::engine::liveness::HEARTBEAT_FUTURE_SLACK_SECS;

/// Store meta key of this device's expiry policy (seconds).
const META_EXPIRE_AFTER: &str = "expire_after";
/// Store meta key of the last expiry check (Unix seconds).
const META_LAST_EXPIRY: &str = "last_expiry_check";
/// Store meta key of why this device is no longer a member.
const META_REMOVED_WHY: &str = "removed_why";
/// Store meta key of the last things that happened to this device's folders.
const META_INCIDENTS: &str = "incidents";
/// Incidents kept for `status`.
const MAX_INCIDENTS: usize = 10;

/// Temporary store used while the real one is replaced by `leave`.
const WIPE_SCRATCH_FILE: &str = "sma-wipe.sqlite";

/// Deletes an SQLite database and its journal files; missing ones are fine.
fn remove_db_files(home: &Path, db: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Io {
                    path: home.to_owned(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// What `remove`, `leave` and `gc` did: the devices removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RemovalReport {
    /// Ids of the devices removed (or cleaned up, for pending devices).
    pub removed: Vec<String>,
    /// Members that have not acknowledged the removal yet: until they have,
    /// the removal is pending (`sma status` shows its progress).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_acks: Vec<DeviceId>,
}

/// Something that happened to this device's folders on the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Incident {
    /// When (RFC 3339).
    pub at: String,
    /// What.
    pub what: String,
}

/// Parses a duration like `90d`, `12h`, `30m`, `3s` (also combined, `1d12h`)
/// into seconds.
pub fn parse_duration(text: &str) -> Result<u64> {
    let bad = || {
        Error::Usage(format!(
            "{text:?} is not a duration: write a number with a unit, e.g. `90d`, `12h`, `30m` or `3s`"
        ))
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
        any = true;
    }
    if !digits.is_empty() || !any || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

/// Fails with [`Error::Removed`] (exit status 4) if the device in `home` was
/// removed from the group or left it. Front ends call this before
/// [`Device::open`], which cannot open a device whose secrets were wiped.
/// A home without a device passes (opening it reports that).
pub fn check_not_removed(home: &Path) -> Result<()> {
    let db = home.join(STORE_FILE);
    if !db.exists() {
        return Ok(());
    }
    let store = Store::open(&db)?;
    let reader = store.read();
    let Some(info) = reader
        .meta("device")?
        .and_then(|j| serde_json::from_str::<DeviceInfo>(&j).ok())
    else {
        return Ok(());
    };
    if info.role != Role::Removed {
        return Ok(());
    }
    let why = reader.meta(META_REMOVED_WHY)?.unwrap_or_default();
    Err(Error::Removed {
        device_id: info.id.to_string(),
        why,
    })
}

impl Device {
    /// This device's expiry policy in seconds (default 90 days).
    pub fn expire_after(&self) -> Result<u64> {
        Ok(self
            .store
            .read()
            .meta(META_EXPIRE_AFTER)?
            .and_then(|v| v.parse().ok())
            .filter(|v| *v > 0)
            .unwrap_or(DEFAULT_EXPIRE_AFTER_SECS))
    }

    /// Whether an expiry policy is stored (else the default applies).
    pub(crate) fn expire_after_is_stored(&self) -> Result<bool> {
        Ok(self
            .store
            .read()
            .meta(META_EXPIRE_AFTER)?
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v > 0))
    }

    /// Forgets the stored expiry policy: the default applies again.
    pub(crate) fn clear_expire_after(&mut self) -> Result<()> {
        self.store.write(|db| db.set_meta(META_EXPIRE_AFTER, ""))?;
        Ok(())
    }

    /// Sets this device's expiry policy (used by `sync` and `gc`).
    pub fn set_expire_after(&mut self, secs: u64) -> Result<()> {
        if secs == 0 {
            return Err(Error::Usage(
                "the expiry policy must be at least one second, e.g. `90d`".into(),
            ));
        }
        self.store
            .write(|db| db.set_meta(META_EXPIRE_AFTER, &secs.to_string()))?;
        Ok(())
    }

    /// The heartbeat threshold to use instead of `base`: a short policy needs
    /// heartbeats well within it, or every device would expire.
    pub(crate) fn heartbeat_threshold(&self, base: u64) -> Result<u64> {
        Ok(base.min((self.expire_after()? / 4).max(1)))
    }

    /// Whether `sync`/`watch` should check for expired devices now; returns
    /// the policy if so.
    pub(crate) fn expiry_due(&self) -> Result<Option<u64>> {
        let policy = self.expire_after()?;
        let last: u64 = self
            .store
            .read()
            .meta(META_LAST_EXPIRY)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let every = EXPIRY_CHECK_SECS.min((policy / 4).max(1));
        Ok((self.now().saturating_sub(last) >= every).then_some(policy))
    }

    pub(crate) fn expiry_checked(&mut self) -> Result<()> {
        let now = self.now().to_string();
        self.store.write(|db| db.set_meta(META_LAST_EXPIRY, &now))?;
        Ok(())
    }

    /// Records a local change: stamps it, merges it into our state, queues it
    /// for every other member and saves. The low-level way to change the
    /// replicated state (the keyring, say); the change reaches the other
    /// members with the next sync.
    pub fn record_change(&mut self, change: Change) -> Result<SignedOp> {
        self.require_member()?;
        let op = self.engine.commit(change, self.timestamp())?;
        self.save()?;
        Ok(op)
    }

    /// `gc`: one round with an expiry check now, against `expire_after`
    /// (seconds) if given — once: the stored policy that later `sync`s use
    /// stays as it is (`sma config set expire-after` changes it).
    pub async fn gc<T: Transport>(
        &mut self,
        t: &mut T,
        expire_after: Option<u64>,
    ) -> Result<RemovalReport> {
        self.require_member()?;
        let policy = match expire_after {
            Some(0) => {
                return Err(Error::Usage(
                    "the expiry policy must be at least one second, e.g. `90d`".into(),
                ))
            }
            Some(secs) => secs,
            None => self.expire_after()?,
        };
        let report = self.round(t, HEARTBEAT_ON_START_SECS, Some(policy)).await?;
        Ok(RemovalReport {
            removed: report.removed_devices,
            pending_acks: Vec::new(),
        })
    }

    /// `remove ID`: expels another device at once. Its inbox folder and
    /// announcement are deleted and no member seals anything to it any more.
    /// With `rotate_account_key`, a whole new account key (generation + 1)
    /// goes to the remaining members only.
    pub async fn remove<T: Transport>(
        &mut self,
        t: &mut T,
        id: &DeviceId,
        rotate_account_key: bool,
    ) -> Result<RemovalReport> {
        self.require_member()?;
        if id == self.id() {
            return Err(Error::Usage(
                "a device cannot remove itself — run `sma leave` to leave the group".into(),
            ));
        }
        // Apply what is waiting first: it may remove us, or the device.
        self.process_inbox(t).await?;
        let anns = announce::read_all(t, &self.info.folders.announce())
            .await?
            .unwrap_or_default();
        let pending_only = match self.engine.remove(id, self.timestamp())? {
            Removing::Committed => false,
            Removing::AlreadyRemoved => {
                info!(device = %id, "already removed; cleaning up its folders");
                false
            }
            Removing::Unknown => {
                let latest = announce::latest_per_device(&anns, self.now());
                match latest.get(id).map(|s| s.ann.state) {
                    Some(sma_proto::payload::AnnouncedState::Pending) => {
                        info!(device = %id, "a pending device; deleting its announcement and inbox");
                        true
                    }
                    Some(_) => return Err(Error::NotYetKnown(id.to_string())),
                    None => return Err(Error::UnknownDevice(id.to_string())),
                }
            }
        };
        if rotate_account_key {
            self.rotate_account_key()?;
        }
        self.save()?;
        // Folders only after the removal is durably recorded: a member's
        // announcements go and its inbox keeps our removal notice; a pending
        // device's folders go.
        if pending_only {
            self.delete_device_folders(t, &anns, id).await?;
        } else {
            self.delete_announcements_of(t, &anns, id).await?;
            self.leave_removal_notice(t, id).await?;
        }
        self.send_syncs(t).await?;
        info!(device = %id, rotated = rotate_account_key, "device removed");
        let pending_acks = self
            .engine
            .pending_removals()
            .into_iter()
            .find(|p| &p.device == id)
            .map(|p| p.waiting_for)
            .unwrap_or_default();
        Ok(RemovalReport {
            removed: vec![id.to_string()],
            pending_acks,
        })
    }

    /// Adds a new account key generation (a whole new key) to our state.
    fn rotate_account_key(&mut self) -> Result<()> {
        let now = self.now();
        let key = AccountKey::generate(&mut self.rng, &self.info.account, now)
            .map_err(sma_proto::ProtoError::from)?;
        let generation = self.engine.rotate_account_key(&key, self.timestamp())?;
        info!(generation, fingerprint = %key.fingerprint(), "new account key");
        Ok(())
    }

    /// `leave`: this device marks itself removed (sent to every other
    /// member), deletes its announcement and inbox, and wipes its secrets and
    /// group state. Afterwards every command fails with exit status 4.
    pub async fn leave<T: Transport>(&mut self, t: &mut T) -> Result<RemovalReport> {
        let me = self.id().clone();
        match self.info.role {
            Role::Removed => return Err(self.removed_error()),
            Role::Pending => {}
            Role::Founder | Role::Member => {
                // Be current (and find out if we were removed already).
                self.process_inbox(t).await?;
                self.engine.leave(self.timestamp())?;
                self.save()?;
                // The only message that carries our departure: if it is lost,
                // the others expire us later.
                if let Err(e) = self.send_syncs(t).await {
                    warn!(error = %e, "could not tell every member; they will expire this device later");
                }
            }
        }
        let anns = announce::read_all(t, &self.info.folders.announce())
            .await?
            .unwrap_or_default();
        self.delete_device_folders(t, &anns, &me).await?;
        self.wipe(" (it left the group with `sma leave`)")?;
        Ok(RemovalReport {
            removed: vec![me.to_string()],
            pending_acks: Vec::new(),
        })
    }

    /// Forgets the group: secrets, state and waiting messages; the role
    /// becomes [`Role::Removed`] for good. The store file is replaced by a
    /// fresh one holding only the device description, so no freed database
    /// page keeps a key.
    fn wipe(&mut self, why: &str) -> Result<()> {
        self.engine.reset();
        self.info.role = Role::Removed;
        let path = self.home.join(STORE_FILE);
        let scratch = self.home.join(WIPE_SCRATCH_FILE);
        // Close the old database before deleting its files (closing a WAL
        // database deletes its `-wal` file by name).
        let old = std::mem::replace(&mut self.store, Store::open(&scratch)?);
        drop(old);
        remove_db_files(&self.home, &path)?;
        self.store = Store::open(&path)?;
        remove_db_files(&self.home, &scratch)?;
        let info = self.info_json()?;
        self.store.write(|db| {
            db.set_meta("device", &info)?;
            db.set_meta(META_REMOVED_WHY, why)?;
            Ok::<_, Error>(())
        })
    }

    /// Records that this device is no longer a member and returns the error
    /// to report. Never recreates anything on the server.
    pub(crate) fn mark_removed(&mut self, why: &str) -> Error {
        self.info.role = Role::Removed;
        let saved = self.info_json().and_then(|info| {
            self.store.write(|db| {
                db.set_meta("device", &info)?;
                db.set_meta(META_REMOVED_WHY, why)?;
                Ok::<_, Error>(())
            })
        });
        if let Err(e) = saved {
            warn!(error = %e, "could not record that this device was removed");
        }
        Error::Removed {
            device_id: self.id().to_string(),
            why: why.to_owned(),
        }
    }

    /// Deletes every announcement of `id` and then its inbox folder.
    pub(crate) async fn delete_device_folders<T: Transport>(
        &mut self,
        t: &mut T,
        anns: &[SeenAnnouncement],
        id: &DeviceId,
    ) -> Result<()> {
        self.delete_announcements_of(t, anns, id).await?;
        self.delete_inbox_of(t, id).await
    }

    /// Deletes every announcement of `id` seen in `anns` (re-read first).
    pub(crate) async fn delete_announcements_of<T: Transport>(
        &mut self,
        t: &mut T,
        anns: &[SeenAnnouncement],
        id: &DeviceId,
    ) -> Result<()> {
        if !anns.iter().any(|s| &s.ann.device_id == id) {
            return Ok(());
        }
        // Re-read under SELECT: UIDs read earlier (under EXAMINE) could
        // name other messages after a UIDVALIDITY change.
        let folder = self.info.folders.announce();
        let uid_next = anns.iter().map(|s| s.uid.saturating_add(1)).max();
        let fresh = crate::announce::read_all_for_update(t, &folder, uid_next)
            .await?
            .unwrap_or_default();
        let uids: Vec<Uid> = fresh
            .iter()
            .filter(|s| &s.ann.device_id == id)
            .map(|s| s.uid)
            .collect();
        if !uids.is_empty() {
            self.deletion(t.capabilities())
                .remove(t, &folder, &uids)
                .await?;
        }
        Ok(())
    }

    /// Makes sure `id`'s inbox (if it exists) holds our removal notice, so
    /// that the removed device learns of its removal from signed evidence.
    pub(crate) async fn leave_removal_notice<T: Transport>(
        &mut self,
        t: &mut T,
        id: &DeviceId,
    ) -> Result<()> {
        let now = self.timestamp();
        let Some((_, bytes)) = self.engine.removal_notice(&mut self.rng, id, now) else {
            return Ok(());
        };
        let inbox = self.info.folders.inbox(id);
        match t.select(&inbox).await {
            Ok(_) => {}
            Err(ImapError::NoSuchFolder { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let headers = t.fetch_headers(sma_imap::UidRange::all()).await?;
        let ours = headers.iter().any(|h| {
            sma_proto::envelope::peek_marker(&h.header)
                .is_ok_and(|m| m.kind == sma_proto::envelope::Kind::Remove && &m.from == self.id())
        });
        if !ours {
            match t.append(&inbox, &[], &bytes).await {
                Ok(_) | Err(ImapError::NoSuchFolder { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// This device learnt from a signed op that it was removed: it deletes
    /// its own announcements and inbox (best effort; they are the
    /// members' to clean up otherwise).
    pub(crate) async fn clean_up_after_removal<T: Transport>(&mut self, t: &mut T) {
        let me = self.id().clone();
        let result = async {
            let anns = announce::read_all(t, &self.info.folders.announce())
                .await?
                .unwrap_or_default();
            self.delete_device_folders(t, &anns, &me).await
        }
        .await;
        if let Err(e) = result {
            warn!(error = %e, "could not delete this removed device's folders; the members will");
        }
    }

    /// Records something that happened to this device's folders, for
    /// `status` (the last few are kept).
    pub(crate) fn note_incident(&mut self, what: &str) -> Result<()> {
        let mut list = self.incidents()?;
        list.push(Incident {
            at: sma_proto::timefmt::rfc3339(self.now()),
            what: what.to_owned(),
        });
        let excess = list.len().saturating_sub(MAX_INCIDENTS);
        list.drain(..excess);
        let json = serde_json::to_string(&list).map_err(|source| Error::Encode {
            what: "the incident list",
            source,
        })?;
        self.store
            .write(|db| db.set_meta(META_INCIDENTS, &json).map_err(Error::from))
    }

    /// Things that happened to this device's folders (newest last).
    pub fn incidents(&self) -> Result<Vec<Incident>> {
        Ok(self
            .store
            .read()
            .meta(META_INCIDENTS)?
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default())
    }

    /// Deletes the inbox folder of `id`; a missing folder is fine.
    pub(crate) async fn delete_inbox_of<T: Transport>(
        &mut self,
        t: &mut T,
        id: &DeviceId,
    ) -> Result<()> {
        let inbox = self.info.folders.inbox(id);
        // Emptied through the Trash where expunging archives; never
        // deleted while selected.
        let park = self.info.folders.announce();
        let del = self.deletion(t.capabilities());
        match del.remove_folder(t, &inbox, &park).await {
            Ok(()) | Err(ImapError::NoSuchFolder { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
