//! One function per command: resolve arguments, call the library, print.
//!
//! Command groups live in submodules: `keys` (the replicated keyring),
//! `lifecycle` (remove, leave, gc), `doctor` with its `probe`, and `serve`
//! (JSON-RPC).

mod config;
mod delete;
mod doctor;
mod init;
mod keys;
mod lifecycle;
mod probe;
mod serve;

pub(crate) use doctor::warn_if_insecure;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use sma::pair::PairEvent;
use sma::{Device, DeviceId, Error, Password};

use crate::args::{AccountKeyCommand, Cli, Command, SetupMessageCommand};
use crate::output::{FirstError, Output};
use crate::secrets;
use crate::views::{self, AccountKeyExport, AccountKeyView, JoinWaiting, SetupMessageExport};

/// Runs the parsed command line.
pub async fn run(cli: Cli, out: &Output) -> Result<()> {
    let ctx = Ctx { cli: &cli, out };
    match &cli.command {
        Command::Init(args) => ctx.init(args).await,
        Command::Pair { device, timeout } => ctx.pair(device.as_deref(), *timeout).await,
        Command::Join { code, timeout } => {
            let code = crate::secrets::code(code.as_deref(), "pairing code shown by `sma pair`")?;
            ctx.join(&code, *timeout).await
        }
        Command::Status => ctx.status().await,
        Command::Devices => ctx.devices().await,
        Command::Send {
            to,
            all: _,
            kind,
            file,
        } => ctx.send(to.as_deref(), kind, file.as_deref()).await,
        Command::Recv { wait } => ctx.recv(*wait).await,
        Command::Sync => ctx.sync().await,
        Command::Watch => ctx.watch().await,
        Command::AccountKey(cmd) => ctx.account_key(cmd),
        Command::SetupMessage(cmd) => ctx.setup_message(cmd).await,
        Command::Keys(cmd) => ctx.keys(cmd).await,
        Command::AutocryptHeader { fold } => ctx.autocrypt_header(*fold),
        Command::Remove {
            id,
            rotate_account_key,
        } => ctx.remove(id, *rotate_account_key).await,
        Command::Leave => ctx.leave().await,
        Command::Gc { expire_after } => ctx.gc(expire_after.as_deref()).await,
        Command::Config(cmd) => ctx.config(cmd),
        Command::Serve { stdio, openrpc } => ctx.serve(*stdio, *openrpc).await,
        Command::Doctor { fix } => ctx.doctor(*fix).await,
        Command::Completions { shell } => doctor::completions(*shell),
        Command::Man => doctor::man(),
    }
}

pub(crate) struct Ctx<'a> {
    pub(crate) cli: &'a Cli,
    pub(crate) out: &'a Output,
}

/// The platform data directory for sma homes.
fn data_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("sma"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/sma"))
}

impl Ctx<'_> {
    /// The home for an existing device: --home, or the only one under the data dir.
    pub(crate) fn home(&self) -> Result<PathBuf> {
        if let Some(h) = &self.cli.home {
            return Ok(h.clone());
        }
        let dir = data_dir().context("cannot find a data directory: pass --home DIR")?;
        let homes: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.join(sma::STORE_FILE).exists())
                    .collect()
            })
            .unwrap_or_default();
        match homes.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::NotInitialised { home: dir }.into()),
            many => Err(Error::Usage(format!(
                "several sma devices live under {} ({}); choose one with --home",
                dir.display(),
                many.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into()),
        }
    }

    pub(crate) fn open(&self) -> Result<Device> {
        let home = self.home()?;
        // A removed or departed device exits 4 on every command.
        sma::lifecycle::check_not_removed(&home)?;
        let mut dev = Device::open(&home)?;
        if let Some(cmd) = &self.cli.oauth2_token_command {
            dev.set_oauth2_token_command(cmd)?;
        }
        Ok(dev)
    }

    /// The IMAP password; empty (and nothing read) when login is by OAuth
    /// 2.0 token, for the device `dev` or, at `init`, by the command line.
    /// A password option for a device that stores a token command is a
    /// usage error rather than silently ignored.
    pub(crate) fn password(&self, dev: Option<&Device>) -> Result<Password> {
        let oauth2 = match dev {
            Some(d) => d.info().server.uses_oauth2(),
            None => self.cli.oauth2_token_command.is_some(),
        };
        if oauth2 {
            if self.cli.password_file.is_some() || self.cli.password_command.is_some() {
                return Err(Error::Usage(
                    "this device logs in with its OAuth 2.0 token command, not a password: drop --password-file/--password-command (to change the command, pass --oauth2-token-command CMD)".into(),
                )
                .into());
            }
            return Ok(Password::default());
        }
        secrets::password(
            self.cli.password_file.as_deref(),
            self.cli.password_command.as_deref(),
            dev,
        )
    }

    /// Opens the device and connects it over its protocol (IMAP, or JMAP
    /// for a device made with `init --jmap`).
    pub(crate) async fn connected(&self) -> Result<(Device, sma::Session)> {
        let mut dev = self.open()?;
        let password = self.password(Some(&dev))?;
        doctor::warn_if_insecure(&dev.info().server);
        let session = dev.connect(&password).await?;
        Ok((dev, session))
    }

    async fn pair(&self, device: Option<&str>, timeout: u64) -> Result<()> {
        let device = device.map(parse_device_id).transpose()?;
        let (mut dev, mut t) = self.connected().await?;
        let out = self.out;
        let mut unprinted = FirstError::default();
        dev.pair(&mut t, device.as_ref(), Duration::from_secs(timeout), |ev| {
            unprinted.keep(out.emit(ev, || match ev {
                PairEvent::Code { code, device_id, fingerprint } => format!(
                    "Pairing code for device {device_id} (key {}):\n\n    {code}\n\nOn the new device run:  sma join\nand type the code. Check that it shows the same device id and key.\nWaiting for it (up to {timeout} s)...",
                    sma::pair::short_fingerprint(fingerprint)
                ),
                PairEvent::Paired { device_id } => format!("Device {device_id} is now a member of the group."),
            }))
        })
        .await?;
        unprinted.into_result()
    }

    async fn join(&self, code: &str, timeout: u64) -> Result<()> {
        let code = sma::PairingCode::parse(code).map_err(|_| {
            Error::Usage("the pairing code must be 12 digits (dashes and spaces are ignored), e.g. 1234-5678-9012".into())
        })?;
        let (mut dev, mut t) = self.connected().await?;
        let waiting = JoinWaiting::new(dev.id().clone(), dev.engine().identity().fingerprint());
        self.out.emit(&waiting, || {
            format!(
                "This device is {} (key {}); `sma pair` on the member must show the same.",
                waiting.device_id,
                sma::pair::short_fingerprint(&waiting.fingerprint)
            )
        })?;
        let mut progress = keys::JoinProgressView::new(self);
        let report = dev
            .join_with_progress(&mut t, &code, Duration::from_secs(timeout), |p| {
                progress.update(p)
            })
            .await;
        let progress = progress.finish();
        let report = report?;
        progress?;
        self.out.emit(&report, || {
            format!(
                "Joined: this device ({}) is now a member; the group has {} active members.",
                report.device_id, report.members
            )
        })
    }

    async fn status(&self) -> Result<()> {
        let (mut dev, mut t) = self.connected().await?;
        let s = dev.status(&mut t).await?;
        self.out.emit(&s, || {
            let mut text = format!(
                "Device {} ({}), {} of {}\nServer {} (login: {}) — namespace prefix {:?}, delimiter {}\nCapabilities: {}\nDeleting: {}\nMembers:\n",
                s.device_id,
                s.name,
                s.role,
                s.account,
                match &s.server.jmap_url {
                    Some(url) => format!("{url} (JMAP)"),
                    None => s.server.host.clone(),
                },
                s.server.auth,
                s.server.namespace_prefix,
                s.server.delimiter.as_deref().unwrap_or("(none)"),
                s.server.capabilities.join(" "),
                delete::delete_line(&s.server.delete)
            );
            for m in &s.members {
                text += &format!(
                    "  {} {:<8} {:<20} last seen {}{}\n",
                    m.device_id,
                    m.state.as_str(),
                    m.name,
                    m.last_seen,
                    if m.is_self { "  (this device)" } else { "" }
                );
            }
            text += "Folders:\n";
            for f in &s.folders {
                text += &format!("  {:<40} {} messages\n", f.name, f.messages);
            }
            text += &format!("Keyring: {} peers", s.keyring_size);
            for w in &s.sync_warnings {
                text += &format!("\nWarning ({}, since {}): {}", w.kind, w.since, w.message);
            }
            for p in &s.pending_removals {
                let waiting: Vec<String> = p.waiting_for.iter().map(|d| d.to_string()).collect();
                text += &format!(
                    "\nRemoval of {} pending: not yet acknowledged by {}",
                    p.device_id,
                    waiting.join(", ")
                );
            }
            for i in &s.incidents {
                text += &format!("\nNote ({}): {}", i.at, i.what);
            }
            text
        })
    }

    async fn devices(&self) -> Result<()> {
        let (mut dev, mut t) = self.connected().await?;
        for d in dev.devices(&mut t).await? {
            self.out.emit(&d, || {
                format!(
                    "{} {:<8} {:<20} last seen {}{}",
                    d.device_id,
                    d.state.as_str(),
                    d.name,
                    d.last_seen,
                    if d.is_self { "  (this device)" } else { "" }
                )
            })?;
        }
        Ok(())
    }

    async fn send(&self, to: Option<&str>, kind: &str, file: Option<&Path>) -> Result<()> {
        let to = to.map(parse_device_id).transpose()?;
        let body = match file {
            Some(p) if p != Path::new("-") => {
                std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?
            }
            _ => {
                let mut b = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut b)
                    .context("cannot read standard input")?;
                b
            }
        };
        let (mut dev, mut t) = self.connected().await?;
        let report = dev.sync_and_send(&mut t, to.as_ref(), kind, &body).await?;
        self.out.emit(&report, || {
            let to: Vec<String> = report.to.iter().map(|d| d.to_string()).collect();
            format!("Sent to {}.", to.join(", "))
        })
    }

    async fn recv(&self, wait: Option<u64>) -> Result<()> {
        let (mut dev, mut t) = self.connected().await?;
        let wait_for = Duration::from_secs(wait.unwrap_or(0));
        let msgs = dev.recv(&mut t, wait_for).await?;
        for m in &msgs {
            self.out.emit(m, || {
                let body = base64::engine::general_purpose::STANDARD
                    .decode(&m.body_b64)
                    .map(|b| String::from_utf8_lossy(&b).trim_end().to_owned())
                    .unwrap_or_default();
                format!("[{}] from {} ({}): {}", m.sent_at, m.from, m.kind, body)
            })?;
        }
        dev.delivered(&msgs)?;
        if msgs.is_empty() && wait.is_some() {
            return Err(Error::Timeout {
                what: "a message".into(),
                secs: wait_for.as_secs(),
            }
            .into());
        }
        Ok(())
    }

    async fn sync(&self) -> Result<()> {
        let (mut dev, mut t) = self.connected().await?;
        let r = dev.sync(&mut t).await?;
        self.out.emit(&r, || {
            format!(
                "Applied {} changes, sent {} messages{}.",
                r.applied,
                r.sent,
                if r.removed_devices.is_empty() {
                    String::new()
                } else {
                    format!(", removed {}", r.removed_devices.join(", "))
                }
            )
        })
    }

    async fn watch(&self) -> Result<()> {
        let mut dev = self.open()?;
        let password = self.password(Some(&dev))?;
        doctor::warn_if_insecure(&dev.info().server);
        let out = self.out;
        // An event that cannot be printed ends the watch with that error.
        let unprinted = std::cell::RefCell::new(FirstError::default());
        let give_up = tokio::sync::Notify::new();
        let stop = async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = give_up.notified() => {}
            }
        };
        dev.watch(
            &password,
            |ev| {
                if let Err(e) = out.json_line(ev) {
                    unprinted.borrow_mut().keep(Err(e));
                    give_up.notify_one();
                }
            },
            stop,
        )
        .await?;
        unprinted.into_inner().into_result()
    }

    fn account_key(&self, cmd: &AccountKeyCommand) -> Result<()> {
        let dev = self.open()?;
        let key = views::account_key(&dev)?;
        match cmd {
            AccountKeyCommand::Show => {
                let v = AccountKeyView::of(&key);
                self.out.emit(&v, || {
                    format!(
                        "Account key {}\n  created   {}\n  algorithm {}",
                        v.fingerprint, v.created, v.algorithm
                    )
                })?;
            }
            AccountKeyCommand::Export { secret, out } => {
                let text = AccountKeyExport::armored(&key, *secret);
                match out {
                    Some(path) => {
                        write_private(path, text.expose().as_bytes(), *secret)?;
                        let v = AccountKeyExport {
                            armored: None,
                            fingerprint: key.fingerprint().to_string(),
                            out: Some(path.clone()),
                            secret: *secret,
                        };
                        self.out.emit(&v, || {
                            format!(
                                "Wrote {} to {}.",
                                if *secret {
                                    "the SECRET account key"
                                } else {
                                    "the public account key"
                                },
                                path.display()
                            )
                        })?;
                    }
                    None => print!("{}", text.expose()),
                }
            }
        }
        Ok(())
    }

    async fn setup_message(&self, cmd: &SetupMessageCommand) -> Result<()> {
        match cmd {
            SetupMessageCommand::Export { out } => {
                let dev = self.open()?;
                let (message, code) = views::setup_message(&dev)?;
                write_private(out, message.as_bytes(), true)?;
                let v = SetupMessageExport {
                    message: None,
                    setup_code: code.display_grouped(),
                };
                self.out.emit(&v, || {
                    format!(
                        "Wrote the Autocrypt Setup Message to {}.\nSetup code (shown only now, write it down):\n\n    {}\n",
                        out.display(),
                        v.setup_code
                    )
                })
            }
            SetupMessageCommand::Import { file, setup_code } => {
                let code = crate::secrets::code(setup_code.as_deref(), "setup code")?;
                self.setup_message_import(file, &code)
            }
        }
    }
}

fn import_setup_file(file: &Path, code: &str) -> Result<sma_crypto::AccountKey> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let code = sma_crypto::SetupCode::parse(code).map_err(|_| {
        Error::Usage("the setup code must be 36 digits (dashes and spaces are ignored)".into())
    })?;
    sma_crypto::setup_message::import(&text, &code).map_err(|e| match e {
        sma_crypto::CryptoError::WrongPassphrase => Error::CodeRejected(format!(
            "the setup code does not open {}; nothing was changed",
            file.display()
        ))
        .into(),
        other => anyhow::Error::from(Error::Proto(other.into()))
            .context(format!("cannot import {}", file.display())),
    })
}

fn write_private(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    let readers = if secret {
        crate::outfile::Readers::Owner
    } else {
        crate::outfile::Readers::Everyone
    };
    crate::outfile::write_new_file(path, bytes, readers)
}

fn parse_device_id(s: &str) -> Result<DeviceId> {
    DeviceId::parse(s).map_err(|_| {
        Error::Usage(format!(
            "{s:?} is not a device id: expected 16 lower-case hex digits (see `sma devices`)"
        ))
        .into()
    })
}
