//! Human and JSON output.

use std::io::Write;

use serde::Serialize;

/// Where results go: JSON lines or friendly text on stdout, errors on stderr.
pub struct Output {
    json: bool,
}

impl Output {
    /// Output in JSON mode or not.
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    /// Prints one result: a JSON line, or the human text.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        let mut stdout = std::io::stdout().lock();
        let line = if self.json {
            serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
        } else {
            human()
        };
        // A closed stdout (e.g. `| head`) is not an error worth reporting.
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }

    /// Prints an error with its cause chain.
    pub fn error(&self, err: &anyhow::Error, kind: &str) {
        let msg = format!("{err:#}");
        if self.json {
            let v = serde_json::json!({ "error": msg, "kind": kind });
            eprintln!("{v}");
        } else {
            eprintln!("sma: error: {msg}");
        }
    }
}
