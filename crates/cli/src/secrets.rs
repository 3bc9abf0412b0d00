//! Where the IMAP password comes from.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use sma::Password;

/// Name of the saved password in the device's secret table.
pub const SAVED_PASSWORD: &str = "imap_password";

/// Resolves the password: `--password-file`, `--password-command`,
/// `SMA_PASSWORD`, then a password saved in the home.
pub fn password(
    file: Option<&Path>,
    command: Option<&str>,
    saved: Option<String>,
) -> Result<Password> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the password file {}", f.display()))?;
        return first_line(&text)
            .with_context(|| format!("the password file {} is empty", f.display()));
    }
    if let Some(cmd) = command {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .with_context(|| format!("cannot run --password-command {cmd:?}"))?;
        if !out.status.success() {
            bail!("--password-command {cmd:?} failed with {}", out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        return first_line(&text).context("--password-command printed no password");
    }
    if let Ok(p) = std::env::var("SMA_PASSWORD") {
        if !p.is_empty() {
            return Ok(Password::new(p));
        }
    }
    if let Some(p) = saved {
        return Ok(Password::new(p));
    }
    Err(sma::Error::Usage(
        "no IMAP password: pass --password-file FILE or --password-command CMD, or set SMA_PASSWORD".into(),
    )
    .into())
}

fn first_line(text: &str) -> Result<Password> {
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        bail!("no password found");
    }
    Ok(Password::new(line))
}

/// A pairing or setup code: the one given on the command line (visible to
/// other local users in the process list, so meant for scripts), else one
/// line typed at the terminal after a prompt on standard error, else one line
/// read from standard input (a pipe).
pub fn code(given: Option<&str>, what: &str) -> Result<zeroize::Zeroizing<String>> {
    use std::io::{BufRead, IsTerminal, Write};
    if let Some(c) = given {
        return Ok(zeroize::Zeroizing::new(c.to_owned()));
    }
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        let mut err = std::io::stderr();
        write!(err, "Type the {what}: ").context("cannot prompt for the code")?;
        err.flush().context("cannot prompt for the code")?;
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    stdin
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    let trimmed = zeroize::Zeroizing::new(line.trim().to_owned());
    if trimmed.is_empty() {
        let how = if terminal {
            "nothing was typed"
        } else {
            "standard input held no line"
        };
        return Err(
            sma::Error::Usage(format!("no {what}: {how} (or pass it as an option)")).into(),
        );
    }
    Ok(trimmed)
}
