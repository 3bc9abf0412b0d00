//! OAuth 2.0 access tokens from the user's token command (for example
//! `oama access alice@example.org`, or mutt's `mutt_oauth2.py TOKENFILE`).
//!
//! The command is stored in the home (never a token) and run through `sh -c`
//! for every login, so that every new connection, reconnects included, gets
//! a current token: access tokens expire after an hour or so, and the helper
//! refreshes them. Its standard input is closed (it must not read the
//! JSON-RPC stream of `sma serve --stdio`), its standard error is passed
//! through so that its own messages reach the user, and the first line of
//! its standard output is the token.

use std::process::Stdio;
use std::time::Duration;

use sma_imap::{Password, TokenFuture, TokenSource};
use tokio::io::AsyncReadExt;
use zeroize::Zeroizing;

/// The most output read from a token command (access tokens are a few KiB).
const MAX_OUTPUT: u64 = 64 * 1024;

/// Runs a shell command for each OAuth 2.0 access token; see the module
/// documentation. Its `Debug` output shows the command, never a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenCommand {
    command: String,
    timeout: Duration,
}

impl TokenCommand {
    /// How long a token command may run: long enough for a helper that
    /// refreshes its token over a slow network, short enough that a helper
    /// waiting for input that never comes is noticed.
    pub const TIMEOUT: Duration = Duration::from_secs(120);

    /// The command `command`, run with `sh -c`.
    pub fn new(command: impl Into<String>) -> Self {
        TokenCommand {
            command: command.into(),
            timeout: Self::TIMEOUT,
        }
    }

    /// The same command with another time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command as configured.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Runs the command and returns the first line of its output (without
    /// surrounding white space). Fails, saying why, if it cannot be started,
    /// exits unsuccessfully, takes longer than its time limit, prints more
    /// than 64 KiB, or prints no line or one that is not UTF-8. The error
    /// never contains the output.
    pub async fn run(&self) -> Result<Password, String> {
        let what = format!("the token command {:?}", self.command);
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {what}: {e}"))?;
        let Some(mut stdout) = child.stdout.take() else {
            return Err(format!("cannot read the output of {what}"));
        };
        // Room for all that is read: no reallocation leaves copies behind.
        let mut out = Zeroizing::new(Vec::with_capacity(MAX_OUTPUT as usize + 1));
        let work = async {
            (&mut stdout)
                .take(MAX_OUTPUT + 1)
                .read_to_end(&mut out)
                .await
                .map_err(|e| format!("cannot read the output of {what}: {e}"))?;
            if out.len() as u64 > MAX_OUTPUT {
                return Err(format!(
                    "{what} printed more than {} KiB",
                    MAX_OUTPUT / 1024
                ));
            }
            drop(stdout);
            child
                .wait()
                .await
                .map_err(|e| format!("cannot wait for {what}: {e}"))
        };
        let status = match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(format!(
                    "{what} did not finish within {} s",
                    self.timeout.as_secs()
                ))
            }
        };
        if !status.success() {
            return Err(format!("{what} failed ({status})"));
        }
        first_line(&out).map_err(|why| format!("{what} {why}"))
    }
}

/// The first line of `out`, trimmed; never copies more than that line.
fn first_line(out: &[u8]) -> Result<Password, &'static str> {
    let end = out.iter().position(|&b| b == b'\n').unwrap_or(out.len());
    let line = std::str::from_utf8(&out[..end])
        .map_err(|_| "printed a first line that is not UTF-8")?
        .trim();
    if line.is_empty() {
        return Err("printed no token (its first line is empty)");
    }
    Ok(Password::new(line))
}

impl TokenSource for TokenCommand {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(self.run())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(cmd: &str) -> Result<String, String> {
        TokenCommand::new(cmd)
            .with_timeout(Duration::from_secs(5))
            .run()
            .await
            .map(|p| p.expose().to_owned())
    }

    #[tokio::test]
    async fn the_first_line_is_the_token() {
        assert_eq!(
            run("printf 'tok1\\r\\nsecond\\n'").await.as_deref(),
            Ok("tok1")
        );
        assert_eq!(run("echo '  tok2  '").await.as_deref(), Ok("tok2"));
        assert_eq!(run("printf tok3").await.as_deref(), Ok("tok3"));
    }

    #[tokio::test]
    async fn failures_say_why_without_the_output() {
        let e = run("echo $((6 * 7))-token; exit 3").await.unwrap_err();
        assert!(e.contains("failed") && !e.contains("42-token"), "{e}");
        let e = run("true").await.unwrap_err();
        assert!(e.contains("printed no token"), "{e}");
        let e = run("printf '\\377\\376\\n'").await.unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
        let e = run("head -c 100000 /dev/zero").await.unwrap_err();
        assert!(e.contains("more than 64 KiB"), "{e}");
        let e = run("yes").await.unwrap_err();
        assert!(e.contains("more than 64 KiB"), "{e}");
    }

    #[tokio::test]
    async fn a_hanging_command_times_out_and_cannot_read_our_stdin() {
        let e = TokenCommand::new("sleep 30")
            .with_timeout(Duration::from_millis(300))
            .run()
            .await
            .unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
        // `read` on a closed standard input gets end of file at once.
        let got = run("read x || echo no-stdin").await;
        assert_eq!(got.as_deref(), Ok("no-stdin"));
    }
}
