//! The login hint: the capabilities the server advertised before login on
//! the last connection, kept in the store (key `imap_login_hint`, the
//! capabilities separated by spaces; not a secret) and passed as
//! [`ImapConfig::login_hint`] to the next one, which may then send its
//! login without waiting for the greeting (one round trip less).
//!
//! With it goes the capabilities hint (key `imap_caps_hint`): the
//! capabilities the server advertised after login, passed as
//! [`ImapConfig::caps_hint`], with which the session does not wait for the
//! login's answer either and sends its first commands behind it.
//!
//! A server that takes the login before its greeting but loses commands
//! sent behind it (Cyrus 3.6) gets the capabilities hint `off`: the login
//! still goes early, the first commands wait for its answer.
//!
//! Both hints are dropped when the server's host, port or security changes.
//! When a login sent before the greeting failed although the server's
//! capabilities still allowed it (a server that does not take commands
//! before its greeting), the stored value becomes `off` and the device
//! waits for the greeting from then on, until the server settings change.

use sma_imap::{EarlyLogin, ImapConfig, ImapSession, Password, Security, Transport};
use sma_store::Store;

use crate::device::Device;
use crate::error::Result;
use crate::session::{Session, SessionConfig};

/// The store key.
pub(crate) const META_LOGIN_HINT: &str = "imap_login_hint";

/// The store key of the capabilities after login.
pub(crate) const META_CAPS_HINT: &str = "imap_caps_hint";

/// The file in the home where a JMAP device's sessions keep the session
/// resource and the mailbox list for the next one
/// ([`sma_jmap::JmapConfig::session_cache`]; not a secret).
pub(crate) const JMAP_SESSION_CACHE: &str = "jmap-session.json";

/// The stored value that turns logins before the greeting off.
const OFF: &str = "off";

/// What the store holds.
#[derive(Debug, PartialEq, Eq)]
enum Stored {
    /// Nothing (or an empty value: dropped).
    Nothing,
    /// The capabilities of the last connection.
    Caps(Vec<String>),
    /// Logins before the greeting failed on this server.
    Off,
}

impl Stored {
    fn parse(value: Option<String>) -> Stored {
        match value.as_deref().map(str::trim) {
            None | Some("") => Stored::Nothing,
            Some(OFF) => Stored::Off,
            Some(caps) => Stored::Caps(caps.split(' ').map(str::to_owned).collect()),
        }
    }
}

/// The value to store after a successful login, or `None` to leave the
/// stored one as it is.
fn next_value(stored: &Stored, session_caps: &[String], early: EarlyLogin) -> Option<String> {
    let same = matches!(stored, Stored::Caps(c) if c == session_caps);
    match stored {
        Stored::Off => None,
        // The hint still described the server and the early login failed
        // anyway: the server does not take it.
        _ if same && early == EarlyLogin::FellBack => Some(OFF.to_owned()),
        _ if same => None,
        // Nothing a later value could use (no capabilities, or one with
        // a space, which the stored form cannot keep).
        _ if session_caps.is_empty() || session_caps.iter().any(|c| c.contains(' ')) => None,
        _ => Some(session_caps.join(" ")),
    }
}

/// Stores what `session` learnt about the server in `store`, if it
/// changes the hints. A connection secured by STARTTLS never uses a hint:
/// nothing is stored for it.
pub(crate) fn remember(store: &mut Store, session: &ImapSession) -> Result<()> {
    if session.security() == Security::StartTls {
        return Ok(());
    }
    if session.commands_behind_login_lost() {
        remember_no_flight(store)?;
    } else if !session.login_pending() {
        // Until the login's answer is read, the capabilities are the hint's.
        remember_caps(store, &session.capabilities().raw)?;
    }
    remember_pre_login(
        store,
        session.pre_login_capabilities(),
        session.early_login(),
    )
}

/// Stores the login hint that `pre_login` (the capabilities before login)
/// and the fate of an early login give, if it changes the stored one.
fn remember_pre_login(store: &mut Store, pre_login: &[String], early: EarlyLogin) -> Result<()> {
    let stored = Stored::parse(store.read().meta(META_LOGIN_HINT)?);
    let Some(value) = next_value(&stored, pre_login, early) else {
        return Ok(());
    };
    tracing::debug!(hint = %value, "IMAP login hint stored");
    store.write(|db| db.set_meta(META_LOGIN_HINT, &value))?;
    Ok(())
}

/// Stores `caps` (after login) as the capabilities hint, if they differ
/// from the stored one and the stored form can keep them. A hint turned
/// `off` stays off.
fn remember_caps(store: &mut Store, caps: &[String]) -> Result<()> {
    let value = caps.join(" ");
    if caps.is_empty() || caps.iter().any(|c| c.contains(' ') || c.is_empty()) {
        return Ok(());
    }
    let stored = store.read().meta(META_CAPS_HINT)?;
    if matches!(stored.as_deref().map(str::trim), Some(v) if v == value || v == OFF) {
        return Ok(());
    }
    tracing::debug!(hint = %value, "IMAP capabilities hint stored");
    store.write(|db| db.set_meta(META_CAPS_HINT, &value))?;
    Ok(())
}

/// Turns the capabilities hint `off`: commands behind an early login were
/// lost on this server, so the next connections send none before the
/// login's answer.
fn remember_no_flight(store: &mut Store) -> Result<()> {
    if store.read().meta(META_CAPS_HINT)?.as_deref() == Some(OFF) {
        return Ok(());
    }
    tracing::debug!("IMAP capabilities hint turned off: commands behind the login were lost");
    store.write(|db| db.set_meta(META_CAPS_HINT, OFF))?;
    Ok(())
}

/// The stored capabilities hint as [`ImapConfig::caps_hint`] wants it:
/// nothing for an empty or `off` value.
fn caps_hint(stored: Option<String>) -> Option<Vec<String>> {
    stored
        .filter(|v| !v.trim().is_empty() && v.trim() != OFF)
        .map(|v| v.split(' ').map(str::to_owned).collect())
}

impl Device {
    /// The transport configuration of [`crate::ServerConfig::imap_config`]
    /// with the stored login hint (see [`ImapConfig::login_hint`]).
    pub fn imap_config(&self, password: &Password) -> Result<ImapConfig> {
        let mut config = self.info().server.imap_config(password);
        let read = self.store.read();
        if let Stored::Caps(caps) = Stored::parse(read.meta(META_LOGIN_HINT)?) {
            config.login_hint = Some(caps);
            config.caps_hint = caps_hint(read.meta(META_CAPS_HINT)?);
        }
        Ok(config)
    }

    /// Keeps what a session whose early login failed (it logged in the
    /// usual way instead) learnt, if `t` is one
    /// ([`Transport::early_login_fell_back`]): the first command of a
    /// session whose login's answer was not awaited finds out only then,
    /// after [`Device::connect`] has stored the hints. A failure to store
    /// it is only logged.
    pub(crate) fn remember_fallback<T: Transport>(&mut self, t: &T) {
        if self.info().server.security == Security::StartTls {
            return;
        }
        let stored = match t.early_login_fell_back() {
            Some(pre_login) => remember_pre_login(&mut self.store, pre_login, EarlyLogin::FellBack),
            None if t.commands_behind_login_lost() => remember_no_flight(&mut self.store),
            None => return,
        };
        if let Err(e) = stored {
            tracing::warn!(error = %e, "cannot store the IMAP login hint");
        }
    }

    /// How to open this device's session: [`Device::imap_config`] for an
    /// IMAP device, the JMAP settings for one made with `init --jmap`, with
    /// the session cache in the home ([`JMAP_SESSION_CACHE`]).
    pub fn session_config(&self, password: &Password) -> Result<SessionConfig> {
        if self.info().server.is_jmap() {
            let mut session = self.info().server.session_config(password);
            if let SessionConfig::Jmap { config, .. } = &mut session {
                config.session_cache = Some(self.home().join(JMAP_SESSION_CACHE));
            }
            return Ok(session);
        }
        Ok(SessionConfig::Imap(self.imap_config(password)?))
    }

    /// Keeps the capabilities an IMAP `session` saw before login as the
    /// hint of the next connection, if they differ from the stored ones
    /// (nothing for JMAP). A failure to store them is only logged: the
    /// session is fine either way.
    pub fn remember_login(&mut self, session: &Session) {
        let Some(session) = session.as_imap() else {
            return;
        };
        if let Err(e) = remember(&mut self.store, session) {
            tracing::warn!(error = %e, "cannot store the IMAP login hint");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_capabilities_hint_turned_off_gives_none() {
        assert_eq!(caps_hint(None), None);
        assert_eq!(caps_hint(Some(" ".into())), None);
        assert_eq!(caps_hint(Some("off".into())), None);
        assert_eq!(
            caps_hint(Some("IMAP4rev1 IDLE".into())),
            Some(caps(&["IMAP4rev1", "IDLE"]))
        );
    }

    #[test]
    fn stored_values_read_back() {
        assert_eq!(Stored::parse(None), Stored::Nothing);
        assert_eq!(Stored::parse(Some(String::new())), Stored::Nothing);
        assert_eq!(Stored::parse(Some("off".into())), Stored::Off);
        assert_eq!(
            Stored::parse(Some("IMAP4rev1 SASL-IR".into())),
            Stored::Caps(caps(&["IMAP4rev1", "SASL-IR"]))
        );
    }

    #[test]
    fn only_changes_are_stored_and_a_refusing_server_turns_it_off() {
        let c = caps(&["IMAP4rev1", "SASL-IR", "AUTH=PLAIN"]);
        let joined = Some("IMAP4rev1 SASL-IR AUTH=PLAIN".to_owned());
        assert_eq!(
            next_value(&Stored::Nothing, &c, EarlyLogin::NotTried),
            joined
        );
        let same = Stored::Caps(c.clone());
        assert_eq!(next_value(&same, &c, EarlyLogin::Used), None);
        assert_eq!(
            next_value(&same, &c, EarlyLogin::FellBack),
            Some("off".into())
        );
        let older = Stored::Caps(caps(&["IMAP4rev1"]));
        assert_eq!(next_value(&older, &c, EarlyLogin::FellBack), joined);
        assert_eq!(next_value(&Stored::Off, &c, EarlyLogin::NotTried), None);
        assert_eq!(
            next_value(&Stored::Nothing, &[], EarlyLogin::NotTried),
            None
        );
    }
}
