//! OAuth 2.0 for the `oauth2` profile: minting the JWTs its Dovecot accepts,
//! and a token command for tests ([`TokenHelper`]).
//!
//! `scripts/imap-server start --profile oauth2` makes Dovecot validate
//! bearer tokens locally: an HS256 JWT signed with the key in
//! `DIR/oauth2-key` (base64), whose `sub` is the login and whose `exp` has
//! not passed. [`Dovecot::oauth2_token`] mints such tokens;
//! [`mint_jwt`] mints any (say, with a wrong key).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Dovecot;

/// An HS256 JWT with the claims `sub`, `exp` and `iat` (an hour before
/// `exp`, or now if that is earlier), signed with `key`.
pub fn mint_jwt(key: &[u8], sub: &str, exp: u64) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let iat = exp.saturating_sub(3600).min(unix_now());
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = format!(
        r#"{{"sub":"{}","exp":{exp},"iat":{iat}}}"#,
        json_escape(sub)
    );
    let payload = b64.encode(claims.as_bytes());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(signing_input.as_bytes());
    let signature = b64.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A JSON string body: quotes, backslashes and control characters escaped.
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

impl Dovecot {
    /// The HS256 key the `oauth2` profile validates tokens with. Panics if
    /// this server was not started with that profile.
    pub fn oauth2_key(&self) -> Vec<u8> {
        let path = self.dir().join("oauth2-key");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "sma-testrig: no OAuth 2.0 key at {} ({e}): start the server with profile oauth2",
                path.display()
            )
        });
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .unwrap_or_else(|e| panic!("sma-testrig: {} is not base64: {e}", path.display()))
    }

    /// A token for account `account` (0-based) that expires
    /// `expires_in_secs` seconds from now (negative: expired already).
    pub fn oauth2_token(&self, account: usize, expires_in_secs: i64) -> String {
        let exp = unix_now().saturating_add_signed(expires_in_secs);
        mint_jwt(&self.oauth2_key(), &self.account(account).user, exp)
    }
}

/// A token command for tests: [`TokenHelper::command`] is a shell command
/// that prints the token set last with [`TokenHelper::set`] and counts its
/// runs. Lives in its own temporary directory.
#[derive(Debug)]
pub struct TokenHelper {
    dir: tempfile::TempDir,
}

impl TokenHelper {
    /// A helper that hands out `token`.
    pub fn new(token: &str) -> TokenHelper {
        let dir = tempfile::Builder::new()
            .prefix("sma-token-")
            .tempdir()
            .unwrap_or_else(|e| panic!("sma-testrig: cannot create a temporary directory: {e}"));
        let helper = TokenHelper { dir };
        helper.set(token);
        helper
    }

    fn token_path(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    fn runs_path(&self) -> PathBuf {
        self.dir.path().join("runs")
    }

    /// The directory the helper keeps its files in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Hands out `token` from now on (replaced atomically: a run sees the
    /// old token or the new one, never a mix).
    pub fn set(&self, token: &str) {
        let tmp = self.dir.path().join("token.tmp");
        fs::write(&tmp, format!("{token}\n"))
            .and_then(|()| fs::rename(&tmp, self.token_path()))
            .unwrap_or_else(|e| panic!("sma-testrig: cannot write the token file: {e}"));
    }

    /// The shell command to pass as `--oauth2-token-command`.
    pub fn command(&self) -> String {
        format!(
            "echo run >> '{}' && cat '{}'",
            self.runs_path().display(),
            self.token_path().display()
        )
    }

    /// How often the command has run.
    pub fn runs(&self) -> usize {
        fs::read_to_string(self.runs_path())
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_matches_a_known_hs256_signature() {
        // Header, claims and signature checked with Python's hmac/hashlib.
        let t = mint_jwt(b"secret", "a@b", 100);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .expect("base64url");
        assert_eq!(claims, br#"{"sub":"a@b","exp":100,"iat":0}"#);
        assert_eq!(parts[2], "tedCy3mO3R3F3F8CKTeIZ-JFCTAh9asKr1P2wrUkMwM");
    }

    #[test]
    fn escapes_json() {
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }

    #[test]
    fn helper_hands_out_the_token_set_last_and_counts_runs() {
        let h = TokenHelper::new("one");
        let run = || {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(h.command())
                .output()
                .expect("sh");
            String::from_utf8(out.stdout).expect("utf-8")
        };
        assert_eq!(run(), "one\n");
        h.set("two");
        assert_eq!(run(), "two\n");
        assert_eq!(h.runs(), 2);
    }
}
