//! An opened device home: configuration, keys, protocol state and store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sma_crypto::DeviceKey;
use sma_imap::Password;
use sma_proto::core::CoreState;
use sma_proto::device::Identity;
use sma_proto::folders::{FolderNames, Layout};
use sma_proto::{DeviceId, Engine, Timestamp};
use sma_store::{Durability, Store};

use crate::clock::{Clock, SystemClock};
use crate::config::{DeleteBehaviour, Role, ServerConfig};
use crate::error::{Error, Result};
use crate::session::Session;

/// File name of the store inside a home.
pub const STORE_FILE: &str = "sma.sqlite";

/// Persistent description of this device (meta key `device`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Our device id.
    pub id: DeviceId,
    /// Human name.
    pub name: String,
    /// The account address.
    pub account: String,
    /// Creation time (Unix seconds).
    pub created: u64,
    /// Server settings.
    pub server: ServerConfig,
    /// Folder naming (prefix, delimiter, layout).
    pub folders: FolderNames,
    /// Our role.
    pub role: Role,
    /// Heartbeat time of our current announcement (Unix seconds).
    pub announced_at: u64,
    /// What deleting does on the server (absent in homes made before sma
    /// checked: then not checked).
    #[serde(default)]
    pub delete: DeleteBehaviour,
}

/// An opened device.
pub struct Device {
    pub(crate) home: PathBuf,
    pub(crate) store: Store,
    pub(crate) info: DeviceInfo,
    pub(crate) engine: Engine,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: Box<dyn CryptoRngCore + Send>,
}

impl Device {
    /// Opens the device living in `home`.
    pub fn open(home: &Path) -> Result<Device> {
        Self::open_with(home, Arc::new(SystemClock), Box::new(rand::rngs::OsRng))
    }

    /// Opens the device with an explicit clock and random source (tests,
    /// simulation: a seeded RNG and a virtual clock make runs reproducible).
    pub fn open_with(
        home: &Path,
        clock: Arc<dyn Clock>,
        rng: Box<dyn CryptoRngCore + Send>,
    ) -> Result<Device> {
        let db_path = home.join(STORE_FILE);
        if !db_path.exists() {
            return Err(Error::NotInitialised {
                home: home.to_owned(),
            });
        }
        let store = Store::open(&db_path)?;
        let (info, key, core) = Self::load(&store, home, &db_path)?;
        let me = Identity {
            id: info.id.clone(),
            account: info.account.clone(),
            key,
        };
        let engine = Engine::new(me, core)?;
        let mut dev = Device {
            home: home.to_owned(),
            engine,
            store,
            info,
            clock,
            rng,
        };
        if dev.engine.has_unsaved_ops() {
            // Ops written by protocol version 1, signed just now.
            dev.save()?;
        }
        Ok(dev)
    }

    /// Reads the device description, the device key and the protocol
    /// state from the store.
    fn load(
        store: &Store,
        home: &Path,
        db_path: &Path,
    ) -> Result<(DeviceInfo, DeviceKey, CoreState)> {
        let db = store.read();
        let mut info: DeviceInfo = db
            .meta("device")?
            .and_then(|j| serde_json::from_str(&j).ok())
            .ok_or_else(|| Error::NotInitialised {
                home: home.to_owned(),
            })?;
        if let Some(prefix) = legacy_prefix(&info.folders.prefix) {
            info.folders.prefix = prefix;
        }
        if info.role == Role::Removed {
            // Removed or departed: every use fails with the reason (exit 4).
            crate::lifecycle::check_not_removed(home)?;
        }
        let key_bytes = db.secret("device_key")?.ok_or_else(|| {
            Error::Local(format!(
                "the device key is missing from {} — this device was wiped; run `sma init` with a fresh --home",
                db_path.display()
            ))
        })?;
        let key = DeviceKey::from_bytes(&key_bytes).map_err(sma_proto::ProtoError::from)?;
        let core: CoreState = db.load_core()?.unwrap_or_default();
        Ok((info, key, core))
    }

    /// Our device id.
    pub fn id(&self) -> &DeviceId {
        &self.info.id
    }

    /// The persistent description.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The protocol state (group, bookkeeping).
    pub fn core(&self) -> &CoreState {
        self.engine.core()
    }

    /// The protocol engine (read-only: changes go through the device).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The group's layout.
    pub fn layout(&self) -> Layout {
        self.info.folders.layout
    }

    /// Our inbox folder.
    pub fn inbox(&self) -> String {
        self.info.folders.inbox(&self.info.id)
    }

    /// Connects to the server with the stored settings — over JMAP for a
    /// device made with `init --jmap`, else over IMAP with the stored login
    /// hint, keeping what the login learnt as the next hint
    /// ([`Device::remember_login`]).
    pub async fn connect(&mut self, password: &Password) -> Result<Session> {
        let session = self.session_config(password)?.connect().await?;
        self.remember_login(&session);
        Ok(session)
    }

    /// Fails unless this device is a member (exit 4 if removed).
    pub(crate) fn require_member(&self) -> Result<()> {
        match self.info.role {
            Role::Founder | Role::Member => Ok(()),
            Role::Pending => Err(Error::NotPaired),
            Role::Removed => Err(self.removed_error()),
        }
    }

    pub(crate) fn removed_error(&self) -> Error {
        Error::Removed {
            device_id: self.info.id.to_string(),
            why: String::new(),
        }
    }

    /// Saves configuration and protocol state in one transaction, flushed
    /// to disk.
    pub(crate) fn save(&mut self) -> Result<()> {
        self.save_with(Durability::Flushed)
    }

    /// Saves configuration and protocol state in one transaction.
    pub(crate) fn save_with(&mut self, durability: Durability) -> Result<()> {
        let info = self.info_json()?;
        self.store
            .save_core_with(self.engine.core_mut(), durability, |db| {
                db.set_meta("device", &info).map_err(Error::from)
            })
    }

    /// Drops every change not saved yet: the engine is rebuilt from the
    /// store (a step that failed after changing the state in memory).
    pub(crate) fn discard_unsaved(&mut self) -> Result<()> {
        let db_path = self.home.join(STORE_FILE);
        let (info, key, core) = Self::load(&self.store, &self.home, &db_path)?;
        let me = Identity {
            id: info.id.clone(),
            account: info.account.clone(),
            key,
        };
        self.engine = Engine::new(me, core)?;
        self.info = info;
        Ok(())
    }

    /// The device description as stored.
    pub(crate) fn info_json(&self) -> Result<String> {
        serde_json::to_string(&self.info).map_err(|source| Error::Encode {
            what: "the device description",
            source,
        })
    }

    /// Wall-clock time now, in seconds.
    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Wall-clock time now, for the protocol core.
    pub(crate) fn timestamp(&self) -> Timestamp {
        Timestamp::from_ms(self.clock.now_ms())
    }
}

impl Device {
    /// A secret saved in the home (e.g. the IMAP password with `--save-password`).
    pub fn saved_secret(&self, name: &str) -> Result<Option<sma_crypto::SecretString>> {
        Ok(self.store.read().secret(name)?.and_then(|b| {
            std::str::from_utf8(&b)
                .ok()
                .map(sma_crypto::SecretString::from)
        }))
    }

    /// Logs in with OAuth 2.0 access tokens from `command` from now on
    /// (see [`crate::oauth2::TokenCommand`]): stores the command in the home
    /// if it is not the one stored already. Returns whether it changed.
    pub fn set_oauth2_token_command(&mut self, command: &str) -> Result<bool> {
        if self.info.server.oauth2_token_command.as_deref() == Some(command) {
            return Ok(false);
        }
        let mut server = self.info.server.clone();
        server.oauth2_token_command = Some(command.to_owned());
        self.set_server(server)?;
        Ok(true)
    }

    /// Stores new connection settings (`sma config set server.…`). The
    /// login cannot change: it is the account the device belongs to. A new
    /// host, port or security drops the stored login hint.
    pub fn set_server(&mut self, server: ServerConfig) -> Result<()> {
        if server.user != self.info.server.user {
            return Err(Error::Usage(
                "the login is the account this device belongs to and cannot change".into(),
            ));
        }
        let previous = std::mem::replace(&mut self.info.server, server);
        let now = &self.info.server;
        // What an earlier server advertised says nothing about this one.
        let other_server = (&now.host, now.port, now.security)
            != (&previous.host, previous.port, previous.security);
        let saved = self.info_json().and_then(|info| {
            self.store.write(|db| {
                db.set_meta("device", &info)?;
                if other_server {
                    db.set_meta(crate::login_hint::META_LOGIN_HINT, "")?;
                    db.set_meta(crate::login_hint::META_CAPS_HINT, "")?;
                }
                Ok::<_, Error>(())
            })
        });
        if saved.is_err() {
            self.info.server = previous;
        }
        saved
    }

    /// Saves a secret in the home (file mode 0600).
    pub fn save_secret(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.store
            .write(|db| db.set_secret(name, value).map_err(Error::from))
    }
}

/// A namespace prefix stored by a version that kept it in modified UTF-7
/// as the server sent it (`Ordner-&AOQ-/`): its decoded form, which the
/// transport now encodes itself. `None` for a prefix stored decoded (one
/// with an `&` that is not canonical modified UTF-7, or with none).
fn legacy_prefix(stored: &str) -> Option<String> {
    if !stored.contains('&') {
        return None;
    }
    sma_imap::mutf7::decode(stored.as_bytes())
        .ok()
        .filter(|decoded| decoded != stored)
}

#[cfg(test)]
mod tests {
    use super::legacy_prefix;

    #[test]
    fn prefixes_stored_in_modified_utf7_are_decoded_once() {
        assert_eq!(
            legacy_prefix("Posteingang/Ordner-&AOQ-/").as_deref(),
            Some("Posteingang/Ordner-ä/")
        );
        assert_eq!(
            legacy_prefix("Tom &- Jerry.").as_deref(),
            Some("Tom & Jerry.")
        );
        for decoded in ["", "INBOX.", "Posteingang/Ordner-ä/", "Tom & Jerry."] {
            assert_eq!(legacy_prefix(decoded), None, "{decoded:?}");
        }
    }
}
