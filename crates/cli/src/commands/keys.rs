//! `keys`: the replicated Autocrypt keyring; `autocrypt-header`; and
//! `setup-message import`.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use sma::keys::{ObserveReport, PeerView};
use sma::{Device, Error};
use sma_proto::state::PreferEncrypt;

use super::Ctx;
use crate::args::KeysCommand;
use crate::output::FirstError;
use crate::views::PreferEncryptView;

/// The headers of a received message given to `sma keys observe`.
struct ObservedHeaders<'a> {
    /// `--from`.
    from: Option<&'a str>,
    /// `--date`.
    date: Option<&'a str>,
    /// `--autocrypt`.
    autocrypt: Option<&'a str>,
    /// `--gossip`.
    gossip: &'a [String],
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .context("cannot read standard input")?;
        Ok(b)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn peer_line(p: &PeerView) -> String {
    format!(
        "{:<32} {:<12} key {}  seen {}  header {}{}",
        p.addr,
        p.prefer_encrypt,
        p.fingerprint.as_deref().unwrap_or("-"),
        p.last_seen.as_deref().unwrap_or("-"),
        p.autocrypt_timestamp.as_deref().unwrap_or("-"),
        match &p.gossip_fingerprint {
            Some(g) => format!("  gossip {g}"),
            None => String::new(),
        }
    )
}

fn observe_text(r: &ObserveReport) -> String {
    if let Some(why) = r.ignored {
        return format!("Message ignored ({why}); the keyring is unchanged.");
    }
    let header = match r.autocrypt {
        "valid" => "a valid Autocrypt header",
        "invalid" => "an invalid Autocrypt header (ignored)",
        _ => "no Autocrypt header",
    };
    if r.updated.is_empty() {
        format!("Message with {header}: nothing new for the keyring.")
    } else {
        format!(
            "Message with {header}, {} gossip header(s): updated {}. Run `sma sync` to share it with the other devices.",
            r.gossip,
            r.updated.join(", ")
        )
    }
}

impl Ctx<'_> {
    /// `sma keys ...`
    pub(crate) async fn keys(&self, cmd: &KeysCommand) -> Result<()> {
        let mut dev = self.open()?;
        match cmd {
            KeysCommand::Observe {
                from,
                date,
                autocrypt,
                gossip,
                message,
            } => {
                let headers = ObservedHeaders {
                    from: from.as_deref(),
                    date: date.as_deref(),
                    autocrypt: autocrypt.as_deref(),
                    gossip,
                };
                self.keys_observe(&mut dev, message.as_deref(), &headers)
            }
            KeysCommand::Import {
                addr,
                file,
                date,
                prefer_encrypt,
            } => self.keys_import(&mut dev, addr, file, date.as_deref(), *prefer_encrypt),
            KeysCommand::List => self.keys_list(&dev),
            KeysCommand::Show { addr } => self.keys_show(&dev, addr),
            KeysCommand::Recommend {
                addrs,
                reply_to_encrypted,
            } => self.keys_recommend(&dev, addrs, *reply_to_encrypted),
            KeysCommand::PreferEncrypt { value } => self.keys_prefer_encrypt(&mut dev, *value),
        }
    }

    /// `sma keys observe`: the whole message (`--message FILE`), or its
    /// headers.
    fn keys_observe(
        &self,
        dev: &mut Device,
        message: Option<&Path>,
        h: &ObservedHeaders<'_>,
    ) -> Result<()> {
        let report = match (message, h.from, h.date) {
            (Some(path), _, _) => dev.observe_message(&read_input(path)?)?,
            (None, Some(from), Some(date)) => {
                dev.observe_headers(from, date, h.autocrypt, h.gossip)?
            }
            _ => {
                return Err(Error::Usage(
                    "give --from and --date (and --autocrypt if the message had one), or --message FILE".into(),
                )
                .into())
            }
        };
        self.out.emit(&report, || observe_text(&report))
    }

    /// `sma keys import ADDR FILE`
    fn keys_import(
        &self,
        dev: &mut Device,
        addr: &str,
        file: &Path,
        date: Option<&str>,
        prefer_encrypt: PreferEncrypt,
    ) -> Result<()> {
        let bytes = read_input(file)?;
        let report = dev.import_peer_key(addr, &bytes, date, prefer_encrypt)?;
        self.out.emit(&report, || {
            if report.updated.is_empty() {
                format!("{addr}: the keyring already holds a newer (or the same) key; nothing changed.")
            } else {
                format!("Imported the key for {addr}. Run `sma sync` to share it with the other devices.")
            }
        })
    }

    /// `sma keys list`
    fn keys_list(&self, dev: &Device) -> Result<()> {
        let peers = dev.peers()?;
        for p in &peers {
            self.out.emit(p, || peer_line(p))?;
        }
        if peers.is_empty() && !self.cli.json {
            println!("The keyring is empty.");
        }
        Ok(())
    }

    /// `sma keys show ADDR`
    fn keys_show(&self, dev: &Device, addr: &str) -> Result<()> {
        let p = dev.peer(addr)?.ok_or_else(|| {
            Error::Usage(format!(
                "{addr} is not in the keyring — see `sma keys list`, or add it with `sma keys observe` or `sma keys import`"
            ))
        })?;
        self.out.emit(&p, || {
            let mut t = peer_line(&p.view);
            if let Some(k) = &p.public_key {
                t += "\n";
                t += k;
            }
            t
        })
    }

    /// `sma keys recommend ADDR...`
    fn keys_recommend(
        &self,
        dev: &Device,
        addrs: &[String],
        reply_to_encrypted: bool,
    ) -> Result<()> {
        let r = dev.recommend(addrs, reply_to_encrypted)?;
        self.out.emit(&r, || {
            let mut t = format!("Recommendation: {}", r.recommendation.as_str());
            for x in &r.recipients {
                t += &format!(
                    "\n  {:<32} {:<10} {}",
                    x.addr,
                    x.recommendation.as_str(),
                    x.fingerprint.as_deref().unwrap_or("-")
                );
            }
            t
        })
    }

    /// `sma keys prefer-encrypt [VALUE]`: sets it if given, then shows it.
    fn keys_prefer_encrypt(&self, dev: &mut Device, value: Option<PreferEncrypt>) -> Result<()> {
        if let Some(v) = value {
            dev.set_prefer_encrypt(v)?;
        }
        let v = PreferEncryptView {
            prefer_encrypt: dev.prefer_encrypt().as_str(),
        };
        self.out
            .emit(&v, || format!("prefer-encrypt: {}", v.prefer_encrypt))
    }

    /// `sma autocrypt-header`
    pub(crate) fn autocrypt_header(&self, fold: bool) -> Result<()> {
        let dev = self.open()?;
        let h = dev.own_autocrypt_header()?;
        let value = if fold {
            h.header.to_folded_value("\n")
        } else {
            h.autocrypt.clone()
        };
        if self.cli.json {
            self.out.emit(&h, String::new)?;
        } else {
            println!("{value}");
        }
        Ok(())
    }

    /// `sma setup-message import FILE --setup-code CODE`: the key becomes
    /// the group's next account key generation.
    pub(crate) fn setup_message_import(&self, file: &Path, code: &str) -> Result<()> {
        let mut dev = self.open()?;
        // Fail early (nothing read or decrypted) on a device that cannot take it.
        dev.account_key()?;
        let code = sma_crypto::SetupCode::parse(code).map_err(|_| {
            Error::Usage(
                "the setup code must be 36 digits (dashes and spaces are ignored), e.g. 1234-5678-...".into(),
            )
        })?;
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let imported =
            sma_crypto::setup_message::import_with_details(&text, &code).map_err(|e| match e {
                sma_crypto::CryptoError::WrongPassphrase => Error::CodeRejected(format!(
                    "the setup code does not open {}; nothing was changed — check the code and try again",
                    file.display()
                ))
                .into(),
                other => anyhow::Error::from(Error::Proto(other.into()))
                    .context(format!("cannot import {}", file.display())),
            })?;
        let prefer = imported
            .prefer_encrypt
            .as_deref()
            .and_then(PreferEncrypt::parse);
        let report = dev.install_account_key(&imported.key, prefer)?;
        self.out.emit(&report, || {
            format!(
                "Imported account key {} as generation {} (prefer-encrypt {}). Run `sma sync` to share it with the other devices.",
                report.fingerprint, report.generation, report.prefer_encrypt
            )
        })
    }
}

/// Shows `join` progress: an `indicatif` bar on a terminal, or
/// `{"event":"progress",...}` lines with `--json`.
pub(crate) struct JoinProgressView<'a> {
    out: &'a crate::output::Output,
    json: bool,
    bar: Option<indicatif::ProgressBar>,
    stage: &'static str,
    unprinted: FirstError,
}

impl<'a> JoinProgressView<'a> {
    pub(crate) fn new(ctx: &Ctx<'a>) -> Self {
        JoinProgressView {
            out: ctx.out,
            json: ctx.cli.json,
            bar: None,
            stage: "",
            unprinted: FirstError::default(),
        }
    }

    pub(crate) fn update(&mut self, p: &sma::pair::JoinProgress) {
        if self.json {
            self.unprinted.keep(self.out.emit(p, String::new));
            return;
        }
        if self.stage != p.stage {
            if let Some(old) = self.bar.take() {
                old.finish();
            }
            self.stage = p.stage;
            let (template, msg) = match p.stage {
                "welcome" => (
                    "{msg:18} [{bar:32}] {bytes}/{total_bytes}",
                    "receiving state",
                ),
                _ => (
                    "{msg:18} [{bar:32}] {pos}/{len} peers",
                    "installing keyring",
                ),
            };
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(p.total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(msg);
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_length(p.total);
            bar.set_position(p.done);
        }
    }

    /// Ends the bar; an error if a progress line could not be printed.
    pub(crate) fn finish(mut self) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
        self.unprinted.into_result()
    }
}
