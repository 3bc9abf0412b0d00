//! The session cache: what one session learnt of the server — the session
//! resource and the mailbox list — kept in a file
//! ([`JmapConfig::session_cache`]) so that the next session starts without
//! asking for them again (the session resource costs a request, and on
//! Cyrus a redirect before it; the mailbox list another request).
//!
//! Nothing in it is secret (URLs, the account id, capabilities, mailbox
//! names and ids); it is written with mode 0600 anyway, atomically (a new
//! file renamed over the old one). It is only a cache: a file that cannot
//! be read, is too large, is not JSON or names another session URL or user
//! is ignored, and a session started from it that finds it stale drops it
//! (see `Http::stale_hint`), so that the next session reads the server
//! again. The server cannot use it for anything it could not do anyway: it
//! answered every byte of it.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::config::JmapConfig;

/// The largest cache file read (the session resource is bounded by
/// [`crate::MAX_SESSION_SIZE`], the mailbox list by
/// [`crate::MAX_MAILBOXES`] entries).
const MAX_CACHE_FILE: u64 = 8 << 20;

/// Where a session's cache lives and whose it is.
#[derive(Clone, Debug)]
pub(crate) struct SessionCache {
    path: PathBuf,
    url: String,
    user: String,
}

/// What a cache file held.
#[derive(Debug)]
pub(crate) struct Cached {
    /// The session resource.
    pub session: Value,
    /// The last `Mailbox/get` answer, if one was kept.
    pub mailboxes: Option<Value>,
}

impl SessionCache {
    /// The cache of `config`'s session, if it names a file.
    pub fn of(config: &JmapConfig) -> Option<SessionCache> {
        Some(SessionCache {
            path: config.session_cache.clone()?,
            url: config.session_url.clone(),
            user: config.user.clone(),
        })
    }

    /// What the file holds for this session URL and user; `None` for no
    /// file or one that does not fit.
    pub fn load(&self) -> Option<Cached> {
        let v = read_bounded(&self.path)?;
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        if s("url") != Some(self.url.as_str()) || s("user") != Some(self.user.as_str()) {
            return None;
        }
        let session = v.get("session").filter(|s| s.is_object())?.clone();
        let mailboxes = v.get("mailboxes").filter(|m| m.is_object()).cloned();
        Some(Cached { session, mailboxes })
    }

    /// Writes `session` and `mailboxes` for the next session; a failure is
    /// only logged (the cache saves round trips, nothing depends on it).
    pub fn save(&self, session: &Value, mailboxes: Option<&Value>) {
        let v = json!({
            "url": self.url,
            "user": self.user,
            "session": session,
            "mailboxes": mailboxes,
        });
        if let Err(e) = write_atomic(&self.path, &v) {
            tracing::debug!(error = %e, path = %self.path.display(), "cannot write the JMAP session cache");
        }
    }

    /// Removes the file: what it says no longer holds.
    pub fn forget(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => tracing::debug!("JMAP session cache dropped: the server changed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::debug!(error = %e, "cannot remove the JMAP session cache"),
        }
    }
}

fn read_bounded(path: &Path) -> Option<Value> {
    let file = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    file.take(MAX_CACHE_FILE + 1).read_to_end(&mut buf).ok()?;
    if buf.len() as u64 > MAX_CACHE_FILE {
        return None;
    }
    serde_json::from_slice(&buf).ok()
}

fn write_atomic(path: &Path, v: &Value) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = (|| {
        use std::io::Write as _;
        let mut f = opts.open(&tmp)?;
        f.write_all(&bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, url: &str, user: &str) -> SessionCache {
        let mut config = JmapConfig::new(url, user, "pw");
        config.session_cache = Some(dir.join("jmap-session.json"));
        SessionCache::of(&config).expect("a cache")
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sma-jmap-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_saved_session_comes_back_for_the_same_url_and_user_only() {
        let dir = temp_dir("roundtrip");
        let c = cache(&dir, "http://127.0.0.1:1/.well-known/jmap", "u@x");
        assert!(c.load().is_none(), "no file yet");
        let session = json!({"apiUrl": "/jmap/", "state": "7"});
        let boxes = json!({"state": "3", "list": []});
        c.save(&session, Some(&boxes));
        let got = c.load().expect("the saved cache");
        assert_eq!(got.session, session);
        assert_eq!(got.mailboxes, Some(boxes));
        assert!(cache(&dir, "http://127.0.0.1:2/.well-known/jmap", "u@x")
            .load()
            .is_none());
        assert!(cache(&dir, "http://127.0.0.1:1/.well-known/jmap", "v@x")
            .load()
            .is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("jmap-session.json"))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        c.forget();
        assert!(c.load().is_none(), "forgotten");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn garbage_and_oversized_files_are_ignored() {
        let dir = temp_dir("garbage");
        let c = cache(&dir, "http://127.0.0.1:1/.well-known/jmap", "u@x");
        std::fs::write(dir.join("jmap-session.json"), b"{not json").expect("write");
        assert!(c.load().is_none());
        let big = vec![b' '; (MAX_CACHE_FILE + 2) as usize];
        std::fs::write(dir.join("jmap-session.json"), big).expect("write");
        assert!(c.load().is_none());
        std::fs::write(
            dir.join("jmap-session.json"),
            br#"{"url":"http://127.0.0.1:1/.well-known/jmap","user":"u@x","session":"x"}"#,
        )
        .expect("write");
        assert!(c.load().is_none(), "a session that is not an object");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
