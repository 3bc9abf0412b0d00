//! Where the IMAP password comes from.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use sma::Password;

/// Name of the saved password in the device's secret table.
pub use sma::settings::SAVED_PASSWORD;

/// Resolves the password: `--password-file`, `--password-command`,
/// `SMA_PASSWORD`, then the device's stored password command
/// (`sma config set password-command`), then a password saved in the home.
pub fn password(
    file: Option<&Path>,
    command: Option<&str>,
    device: Option<&sma::Device>,
) -> Result<Password> {
    if let Some(f) = file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the password file {}", f.display()))?,
        );
        return first_line(&text)
            .with_context(|| format!("the password file {} is empty", f.display()));
    }
    if let Some(cmd) = command {
        return run_password_command(cmd, "--password-command");
    }
    if let Ok(p) = std::env::var("SMA_PASSWORD") {
        if !p.is_empty() {
            return Ok(Password::new(p));
        }
    }
    if let Some(dev) = device {
        if let Some(cmd) = dev.password_command()? {
            return run_password_command(&cmd, "the stored password-command");
        }
        if let Some(p) = dev.saved_secret(SAVED_PASSWORD)? {
            return Ok(Password::new(p.expose()));
        }
    }
    Err(sma::Error::Usage(
        "no password: pass --password-file FILE or --password-command CMD, set SMA_PASSWORD, or store a command with `sma config set password-command CMD`".into(),
    )
    .into())
}

/// Runs `cmd` (`what` names it in errors) and takes the first line it prints.
fn run_password_command(cmd: &str, what: &str) -> Result<Password> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .with_context(|| format!("cannot run {what} {cmd:?}"))?;
    if !out.status.success() {
        bail!("{what} {cmd:?} failed with {}", out.status);
    }
    let stdout = zeroize::Zeroizing::new(out.stdout);
    let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&stdout).into_owned());
    first_line(&text).with_context(|| format!("{what} printed no password"))
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
