//! Human and JSON output.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::views::ErrorLine;

/// Where results go: JSON lines or friendly text on stdout, errors on stderr.
pub struct Output {
    json: bool,
}

impl Output {
    /// Output in JSON mode or not.
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    /// Prints one result: a JSON line, or the human text. Fails only if
    /// the value cannot be serialised (a bug), never with an empty line.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) -> Result<()> {
        let line = if self.json {
            json_text(value)?
        } else {
            human()
        };
        print_line(&line);
        Ok(())
    }

    /// Prints `value` as a JSON line in either mode (`sma watch`, whose
    /// events are JSON for people too).
    pub fn json_line<T: Serialize>(&self, value: &T) -> Result<()> {
        print_line(&json_text(value)?);
        Ok(())
    }

    /// Prints an error with its cause chain (each cause once).
    pub fn error(&self, err: &anyhow::Error, kind: &str) {
        let msg = error_text(err.chain().map(ToString::to_string));
        if self.json {
            let line = ErrorLine {
                error: msg.clone(),
                kind,
            };
            // Two strings always serialise; the text below is the fallback.
            if let Ok(line) = serde_json::to_string(&line) {
                eprintln!("{line}");
                return;
            }
        }
        eprintln!("sma: error: {msg}");
    }
}

/// The messages of an error and its causes joined by `: `, leaving out a
/// cause whose text the message before it already quotes (many errors name
/// their cause in their own text, e.g. "cannot reach … : Connection
/// refused").
fn error_text(chain: impl Iterator<Item = String>) -> String {
    let mut text = String::new();
    for cause in chain {
        if cause.is_empty() || text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

fn json_text<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).context("cannot write the result as JSON")
}

fn print_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) is not an error worth reporting.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// The first error of output made inside a library callback, which cannot
/// return it; the command returns it once the library call is done.
#[derive(Debug, Default)]
pub struct FirstError(Option<anyhow::Error>);

impl FirstError {
    /// Keeps `r`'s error unless one is kept already.
    pub fn keep(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.0.get_or_insert(e);
        }
    }

    /// The kept error, if any.
    pub fn into_result(self) -> Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = anyhow::Error::new(sma_imap::ImapError::Unreachable {
            addr: "127.0.0.1:1".into(),
            source: io,
        })
        .context("cannot connect");
        let text = error_text(err.chain().map(ToString::to_string));
        assert_eq!(text.matches("refused").count(), 1, "{text}");
        assert!(
            text.starts_with(
                "cannot connect: cannot reach the IMAP server at 127.0.0.1:1: refused"
            ),
            "{text}"
        );
    }

    #[test]
    fn distinct_causes_are_all_shown() {
        let err = anyhow::anyhow!("disk full").context("cannot save the state");
        assert_eq!(
            error_text(err.chain().map(ToString::to_string)),
            "cannot save the state: disk full"
        );
    }
}
