//! `init`: create this device, then found the group or announce as pending.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand_core::{CryptoRngCore, RngCore as _};
use serde::Serialize;
use sma_crypto::{AccountKey, DeviceKey};
use sma_imap::{Password, Transport};
use sma_proto::core::CoreState;
use sma_proto::device::{build_announcement, Identity};
use sma_proto::folders::{FolderNames, Layout};
use sma_proto::payload::AnnouncedState;
use sma_proto::DeviceId;
use sma_proto::{Engine, Timestamp};
use sma_store::{Durability, Store};
use tracing::info;

use crate::announce::{self, SeenAnnouncement};
use crate::clock::{Clock, SystemClock};
use crate::config::{Role, ServerConfig};
use crate::deletion::probe::detect_at_init;
use crate::device::{Device, DeviceInfo, STORE_FILE};
use crate::error::{Error, Result};

/// What `init` needs.
pub struct InitOptions {
    /// The home directory to create the device in.
    pub home: PathBuf,
    /// Server settings.
    pub server: ServerConfig,
    /// Device name (defaults to the host name).
    pub name: String,
    /// Inbox layout if we found the group.
    pub layout: Layout,
    /// An account key imported from an Autocrypt Setup Message.
    pub account_key: Option<AccountKey>,
}

/// The folders `init` reports.
#[derive(Clone, Debug, Serialize)]
pub struct InitFolders {
    /// Announcements folder.
    pub announce: String,
    /// Our inbox.
    pub inbox: String,
}

/// What `init` did.
#[derive(Clone, Debug, Serialize)]
pub struct InitReport {
    /// Our new device id.
    pub device_id: String,
    /// `founder` or `pending`.
    pub role: Role,
    /// The account.
    pub account: String,
    /// Our folders.
    pub folders: InitFolders,
    /// Our device key's fingerprint, for the person pairing this device to
    /// compare with what `sma pair` shows.
    pub fingerprint: String,
}

/// Refuses a home that already holds a device.
pub fn check_home_free(home: &Path) -> Result<()> {
    let db = home.join(STORE_FILE);
    if db.exists() {
        let device_id = Store::open(&db)
            .ok()
            .and_then(|s| s.read().meta("device").ok().flatten())
            .and_then(|j| serde_json::from_str::<DeviceInfo>(&j).ok())
            .map(|i| i.id.to_string())
            .unwrap_or_else(|| "(unreadable)".into());
        return Err(Error::AlreadyInitialised {
            home: home.to_owned(),
            device_id,
        });
    }
    Ok(())
}

/// Runs `init`: connects (over JMAP when [`ServerConfig::jmap_url`] is
/// set, else IMAP), founds or announces, and only then writes the home.
pub async fn init(opts: InitOptions, password: &Password) -> Result<InitReport> {
    check_home_free(&opts.home)?;
    let mut t = opts.server.session_config(password).connect().await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let home = opts.home.clone();
    let report = init_on(&mut t, opts, clock, Box::new(rand::rngs::OsRng)).await?;
    // What the JMAP session learnt: the next command starts from it.
    if let Some(j) = t.as_jmap_mut() {
        j.keep_in(home.join(crate::login_hint::JMAP_SESSION_CACHE));
    }
    // The first login hint: the next command need not wait for the greeting.
    if let Some(imap) = t.as_imap() {
        match Store::open(&home.join(STORE_FILE)) {
            Ok(mut store) => {
                if let Err(e) = crate::login_hint::remember(&mut store, imap) {
                    tracing::warn!(error = %e, "cannot store the IMAP login hint");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot store the IMAP login hint"),
        }
    }
    let _ = t.logout().await;
    Ok(report)
}

/// `init` over an existing transport, with an explicit clock and random
/// source (the simulation uses this with a seeded RNG).
pub async fn init_on<T: Transport>(
    t: &mut T,
    opts: InitOptions,
    clock: Arc<dyn Clock>,
    mut rng: Box<dyn CryptoRngCore + Send>,
) -> Result<InitReport> {
    check_home_free(&opts.home)?;
    let t = &mut *t;
    let ns = t.namespace().await?;
    let Survey {
        group_exists,
        id,
        folders,
    } = survey(t, &opts, &ns, &mut *rng).await?;
    let now = clock.now();
    let key =
        DeviceKey::generate(&mut rng, id.as_str(), now).map_err(sma_proto::ProtoError::from)?;
    let me = Identity {
        id: id.clone(),
        account: opts.server.user.clone(),
        key,
    };
    let start = Start {
        opts: &opts,
        folders: &folders,
        now: Timestamp::from_ms(clock.now_ms()),
    };
    let (mut engine, mut role) = match group_exists {
        true => (
            start.announce_pending(t, me, &mut rng).await?,
            Role::Pending,
        ),
        false => (start.found(t, me, &mut rng).await?, Role::Founder),
    };
    // Before anything of ours is deleted: what does deleting do here?
    let token = format!("{:016x}", rng.next_u64());
    let delete = detect_at_init(t, &folders.inbox(&id), &opts.server.user, &token).await?;
    let info = DeviceInfo {
        id: id.clone(),
        name: opts.name.clone(),
        account: opts.server.user.clone(),
        created: now,
        server: opts.server.clone(),
        folders: folders.clone(),
        role,
        announced_at: now,
        delete,
    };
    write_home(&opts.home, &info, &mut engine)?;
    if role == Role::Founder {
        // No wait: once our APPEND is answered, every announcement with a
        // lower UID is in the folder (UIDs ascend as messages are added,
        // RFC 3501 2.3.1.1), so re-reading now decides the race.
        let mut dev = Device::open_with(&opts.home, clock, rng)?;
        if dev.resolve_founder_race(t).await? {
            role = Role::Pending;
        }
    }
    Ok(InitReport {
        fingerprint: engine.identity().fingerprint(),
        device_id: id.to_string(),
        role,
        account: opts.server.user.clone(),
        folders: InitFolders {
            announce: folders.announce(),
            inbox: folders.inbox(&id),
        },
    })
}

/// What `init` learns from the announcements folder before it starts the
/// device.
struct Survey {
    /// Whether the account has a group (an announced member).
    group_exists: bool,
    /// The new device's id: in use by no announcement.
    id: DeviceId,
    /// The folder names, in the group's layout if it has one.
    folders: FolderNames,
}

/// Reads the announcements and draws the device id. The listing sent in
/// the same flight tells a missing folder (founding) and the special-use
/// folders (the delete probe), and the inbox of the id drawn first is
/// created there: no round trips of their own. That inbox is deleted again
/// if it is not the one the device will use, or `init` cannot go on.
async fn survey<T: Transport>(
    t: &mut T,
    opts: &InitOptions,
    ns: &sma_imap::Namespace,
    mut rng: &mut (dyn CryptoRngCore + Send),
) -> Result<Survey> {
    let mut folders = FolderNames::new(&ns.prefix, ns.delimiter, opts.layout);
    let drawn = DeviceId::random(&mut rng);
    let planned_inbox = folders.inbox(&drawn);
    t.list_with_next_open();
    if opts.layout == Layout::Flat {
        // Nested, it would be created before its parent.
        t.create_with_next_open(&planned_inbox);
    }
    let existing = announce::read_all_from_first(t, &folders.announce()).await?;
    let existing = existing.unwrap_or_default();
    let group_exists = existing
        .iter()
        .any(|s| s.ann.state == AnnouncedState::Member);
    if group_exists && opts.account_key.is_some() {
        crate::deletion::drop_unused_new_folder(t, &planned_inbox).await;
        return Err(import_into_existing_group());
    }
    let id = draw_device_id(rng, drawn, &existing);
    if group_exists {
        // Follow the group's layout.
        if let Some(l) = existing.iter().map(|s| s.ann.layout).next_back() {
            folders = FolderNames::new(&ns.prefix, ns.delimiter, l);
        }
    }
    if folders.inbox(&id) != planned_inbox {
        crate::deletion::drop_unused_new_folder(t, &planned_inbox).await;
    }
    Ok(Survey {
        group_exists,
        id,
        folders,
    })
}

/// `--import-setup` on an account that has a group already.
fn import_into_existing_group() -> Error {
    Error::Usage(
        "this account already has a group, and --import-setup only founds one: run `sma init` \
         without it, pair this device, then run `sma setup-message import` on it"
            .into(),
    )
}

/// `drawn`, or if an announcement in `existing` uses it, another random
/// device id none uses.
fn draw_device_id(
    mut rng: &mut dyn CryptoRngCore,
    drawn: DeviceId,
    existing: &[SeenAnnouncement],
) -> DeviceId {
    let mut id = drawn;
    while existing.iter().any(|s| s.ann.device_id == id) {
        info!(%id, "device id already announced; drawing another");
        id = DeviceId::random(&mut rng);
    }
    id
}

/// What both ways of starting a device need.
struct Start<'a> {
    opts: &'a InitOptions,
    folders: &'a FolderNames,
    now: Timestamp,
}

impl Start<'_> {
    /// An account with a group: create our inbox and announce ourselves as
    /// pending.
    async fn announce_pending<T: Transport>(
        &self,
        t: &mut T,
        me: Identity,
        rng: &mut Box<dyn CryptoRngCore + Send>,
    ) -> Result<Engine> {
        create_unsubscribed(t, &self.folders.inbox(&me.id)).await?;
        let secs = self.now.as_secs();
        let bytes = build_announcement(
            rng,
            &me,
            &self.opts.name,
            secs,
            secs,
            AnnouncedState::Pending,
            self.folders.layout,
            false,
        )?;
        t.append(&self.folders.announce(), &[], &bytes).await?;
        Ok(Engine::new(me, CoreState::default())?)
    }

    /// An account without a group: create both folders, the group state
    /// and the account key, and announce ourselves as its founder.
    async fn found<T: Transport>(
        &self,
        t: &mut T,
        me: Identity,
        rng: &mut Box<dyn CryptoRngCore + Send>,
    ) -> Result<Engine> {
        let (announce, inbox) = (self.folders.announce(), self.folders.inbox(&me.id));
        if self.folders.layout == Layout::Flat {
            // Siblings: both in one flight.
            t.create_unsubscribed_all(&[&announce, &inbox]).await?;
        } else {
            // The parent first: a server that creates it implicitly for
            // the child might make it unselectable.
            create_unsubscribed(t, &announce).await?;
            create_unsubscribed(t, &inbox).await?;
        }
        let engine = found_state(me, self.opts, self.now, rng)?;
        let secs = self.now.as_secs();
        let bytes = build_announcement(
            rng,
            engine.identity(),
            &self.opts.name,
            secs,
            secs,
            AnnouncedState::Member,
            self.folders.layout,
            true,
        )?;
        t.append(&self.folders.announce(), &[], &bytes).await?;
        Ok(engine)
    }
}

/// The founder's initial state: itself as the only active member, and the
/// account key (generated, or imported from a Setup Message).
fn found_state(
    me: Identity,
    opts: &InitOptions,
    now: Timestamp,
    rng: &mut Box<dyn CryptoRngCore + Send>,
) -> Result<Engine> {
    let account_key = match &opts.account_key {
        Some(k) => k.clone(),
        None => AccountKey::generate(rng, &opts.server.user, now.as_secs())
            .map_err(sma_proto::ProtoError::from)?,
    };
    Ok(Engine::found(me, &opts.name, &account_key, now)?)
}

/// Creates a folder (idempotently) and makes sure it is not subscribed.
pub(crate) async fn create_unsubscribed<T: Transport>(t: &mut T, folder: &str) -> Result<()> {
    // Some servers answer NO to UNSUBSCRIBE of an unsubscribed folder; the
    // folder is usable either way, and `sma doctor` reports subscriptions.
    t.create_unsubscribed(folder).await?;
    Ok(())
}

fn write_home(home: &Path, info: &DeviceInfo, engine: &mut Engine) -> Result<()> {
    let io = |source| Error::Io {
        path: home.to_owned(),
        source,
    };
    std::fs::create_dir_all(home).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    let mut store = Store::open(&home.join(STORE_FILE))?;
    let info_json = serde_json::to_string(info).map_err(|source| Error::Encode {
        what: "the device description",
        source,
    })?;
    let key = engine.identity().key.to_bytes();
    store.save_core_with(engine.core_mut(), Durability::Flushed, |db| {
        db.set_meta("device", &info_json)?;
        db.set_secret("device_key", &key)?;
        Ok::<_, Error>(())
    })
}

impl Device {
    /// Simultaneous founders: the founder announcement with the lowest UID
    /// wins. If that is not us and nobody has paired
    /// with us yet, we step down to pending. Returns whether we stepped down.
    pub(crate) async fn resolve_founder_race<T: Transport>(&mut self, t: &mut T) -> Result<bool> {
        if self.info.role != Role::Founder || !self.engine.peers().is_empty() {
            return Ok(false);
        }
        let all = announce::read_all_from_first(t, &self.info.folders.announce()).await?;
        let Some(all) = all else {
            return Ok(false);
        };
        // The founder announcement with the lowest UID was appended first;
        // every later founder sees it when it re-reads, so all agree.
        let winner: Option<&SeenAnnouncement> = all
            .iter()
            .filter(|s| s.ann.founder && s.ann.state == AnnouncedState::Member)
            .min_by_key(|s| s.uid);
        match winner {
            Some(w) if w.ann.device_id != self.info.id => {
                info!(winner = %w.ann.device_id, "another device founded the group at the same time and wins; this device becomes pending");
                self.info.role = Role::Pending;
                self.engine.reset();
                self.save()?;
                self.announce(t, AnnouncedState::Pending, false).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
