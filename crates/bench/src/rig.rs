//! The benchmark rig: a private Dovecot, device homes, pairing, raw
//! sessions and generated data.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;
use sma::clock::Clock;
use sma::init::InitOptions;
use sma::pair::PairEvent;
use sma::{Device, ImapSession, PairingCode, Password, ServerConfig};
use sma_imap::{Security, Transport};
use sma_proto::autocrypt::{AutocryptHeader, Observation};
use sma_proto::folders::Layout;
use sma_proto::state::PreferEncrypt;
use tokio::sync::oneshot;

use crate::server::{Server, ServerKind};
use crate::tls_front::TlsFront;

/// How long pairing steps may take before the benchmark gives up.
const PAIR_TIMEOUT: Duration = Duration::from_secs(120);

/// Connection security used for every session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sec {
    /// Implicit TLS with the rig's CA (like a real deployment).
    Tls,
    /// Plain IMAP on loopback.
    Plain,
}

impl Sec {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Sec::Tls => "tls",
            Sec::Plain => "plain",
        }
    }
}

/// A private server plus a scratch directory for device homes.
pub struct Rig {
    /// The server.
    pub server: Server,
    /// Security of every connection.
    pub sec: Sec,
    /// The TLS front of a JMAP server that serves plain HTTP, with
    /// [`Sec::Tls`].
    pub jmap_tls: Option<TlsFront>,
    dir: tempfile::TempDir,
}

impl Rig {
    /// Starts the server with `accounts` accounts (one per scenario).
    /// Dovecot serves TLS itself; Cyrus's JMAP gets a TLS front.
    pub fn start(kind: ServerKind, accounts: usize, sec: Sec) -> Result<Rig> {
        match (&kind, sec) {
            (ServerKind::Dovecot | ServerKind::CyrusJmap, _) | (_, Sec::Plain) => {}
            (ServerKind::JmapScript(_), Sec::Tls) => bail!(
                "a scripted JMAP server is measured over plain HTTP only (its session \
                 resource may name absolute http: URLs the TLS front cannot rewrite): \
                 add --security plain"
            ),
            (_, Sec::Tls) => bail!(
                "{} runs plain IMAP only here: add --security plain",
                kind.name()
            ),
        }
        let server = Server::start(&kind, accounts)?;
        let jmap_tls = match (server.jmap_port(), sec) {
            (Some(port), Sec::Tls) => {
                let upstream = format!("{}:{port}", server.host())
                    .parse()
                    .context("the JMAP server's address")?;
                Some(TlsFront::start(upstream)?)
            }
            _ => None,
        };
        let dir = tempfile::Builder::new()
            .prefix("sma-bench-")
            .tempdir()
            .context("cannot create a scratch directory for device homes")?;
        Ok(Rig {
            server,
            sec,
            jmap_tls,
            dir,
        })
    }

    /// Where device `name` of account `account` lives.
    pub fn home(&self, account: usize, name: &str) -> PathBuf {
        self.dir.path().join(format!("acct{account}-{name}"))
    }

    /// Server settings for account `account` (0-based).
    pub fn server_config(&self, account: usize) -> ServerConfig {
        let (port, security, ca_file) = match self.sec {
            Sec::Tls => (
                self.server.tls_port(),
                Security::Tls,
                Some(self.server.ca_file().to_owned()),
            ),
            Sec::Plain => (self.server.plain_port(), Security::Plain, None),
        };
        ServerConfig {
            host: self.server.host().to_owned(),
            port,
            security,
            ca_file,
            allow_insecure: false,
            user: self.server.account(account).user.clone(),
            oauth2_token_command: None,
            jmap_url: None,
        }
    }

    /// The password of account `account`.
    pub fn password(&self, account: usize) -> Password {
        Password::new(self.server.account(account).password.clone())
    }

    /// A new logged-in session on account `account`.
    pub async fn session(&self, account: usize) -> Result<ImapSession> {
        let config = self
            .server_config(account)
            .imap_config(&self.password(account));
        ImapSession::connect(&config)
            .await
            .context("cannot connect to the benchmark's server")
    }

    /// Runs `init` for device `name` on account `account` and opens it.
    pub async fn init_device(&self, account: usize, name: &str) -> Result<Device> {
        let home = self.home(account, name);
        let opts = self.init_options(account, name);
        sma::init::init(opts, &self.password(account))
            .await
            .with_context(|| format!("init of device {name}"))?;
        Ok(Device::open(&home)?)
    }

    /// Runs `init` with an explicit clock (a founder whose history is old)
    /// and opens the device with that clock.
    pub async fn init_device_with_clock(
        &self,
        account: usize,
        name: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Device> {
        let home = self.home(account, name);
        let opts = self.init_options(account, name);
        let mut t = self.session(account).await?;
        sma::init::init_on(&mut t, opts, clock.clone(), Box::new(rand::rngs::OsRng))
            .await
            .with_context(|| format!("init of device {name}"))?;
        let _ = t.logout().await;
        Ok(Device::open_with(
            &home,
            clock,
            Box::new(rand::rngs::OsRng),
        )?)
    }

    fn init_options(&self, account: usize, name: &str) -> InitOptions {
        InitOptions {
            home: self.home(account, name),
            server: self.server_config(account),
            name: name.to_owned(),
            layout: Layout::Flat,
            account_key: None,
        }
    }

    /// A founder and `names.len() - 1` paired members on `account`.
    pub async fn group(&self, account: usize, names: &[&str]) -> Result<Vec<Device>> {
        let Some((first, rest)) = names.split_first() else {
            bail!("a group needs at least one device");
        };
        let mut founder = self.init_device(account, first).await?;
        let mut tf = self.session(account).await?;
        let mut out = Vec::new();
        for name in rest {
            let mut joiner = self.init_device(account, name).await?;
            let mut tj = self.session(account).await?;
            pair(&mut founder, &mut tf, &mut joiner, &mut tj).await?;
            out.push(joiner);
        }
        // Everyone learns about everyone.
        for _ in 0..2 {
            founder.sync(&mut tf).await?;
            for d in out.iter_mut() {
                let mut t = self.session(account).await?;
                d.sync(&mut t).await?;
            }
        }
        out.insert(0, founder);
        Ok(out)
    }
}

/// Pairs `joiner` into `member`'s group: `pair` and `join` run concurrently
/// in this task; `join` starts once the code is shown.
pub async fn pair<A: Transport, B: Transport>(
    member: &mut Device,
    tm: &mut A,
    joiner: &mut Device,
    tj: &mut B,
) -> Result<()> {
    let (code_tx, code_rx) = oneshot::channel::<String>();
    let mut code_tx = Some(code_tx);
    let joiner_id = joiner.id().clone();
    let pair_fut = async {
        member
            .pair(tm, Some(&joiner_id), PAIR_TIMEOUT, |ev| {
                if let PairEvent::Code { code, .. } = ev {
                    if let Some(tx) = code_tx.take() {
                        let _ = tx.send(code.clone());
                    }
                }
            })
            .await
            .context("pair")
    };
    let join_fut = async {
        let code = code_rx.await.context("pair ended before showing a code")?;
        let code = PairingCode::parse(&code).context("the shown code does not parse")?;
        joiner.join(tj, &code, PAIR_TIMEOUT).await.context("join")
    };
    let (p, j) = tokio::join!(pair_fut, join_fut);
    p?;
    j?;
    Ok(())
}

/// A raw message of exactly `size` bytes (at least ~250): a minimal RFC 5322
/// header and a body of random base64 lines, like an armored payload.
pub fn raw_message(size: usize, tag: &str) -> Vec<u8> {
    let mut msg = format!(
        "From: <bench@sma.test>\r\nTo: <bench@sma.test>\r\nSubject: floor {tag}\r\n\
         Message-ID: <{tag}.{}@sma.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
         Content-Type: text/plain\r\n\r\n",
        rand::random::<u64>()
    )
    .into_bytes();
    let mut rng = rand::thread_rng();
    let mut raw = [0u8; 57];
    while msg.len() + 78 <= size {
        rng.fill_bytes(&mut raw);
        msg.extend_from_slice(B64.encode(raw).as_bytes());
        msg.extend_from_slice(b"\r\n");
    }
    match size.saturating_sub(msg.len()) {
        0 => {}
        // Lengthen the last line by one: the message must end with CRLF.
        1 => msg.insert(msg.len() - 2, b'A'),
        r => {
            msg.resize(msg.len() + r - 2, b'A');
            msg.extend_from_slice(b"\r\n");
        }
    }
    msg
}

/// Byte length of an Autocrypt key as this product generates them
/// (Ed25519/Cv25519 with one user id; ~520 characters of base64 keydata).
pub fn autocrypt_key_bytes() -> Result<usize> {
    let key = sma_crypto::AccountKey::generate(&mut rand::rngs::OsRng, "peer@sma.test", 1)
        .context("cannot generate a sample key")?;
    Ok(key.public_bytes().len())
}

/// Observations of one received message from each of `n` correspondents
/// `prefix{i}@peers.test`, dated `when`: with an Autocrypt header carrying
/// `key_bytes` of random keydata (incompressible, like real keys), or none
/// when `key_bytes` is 0 (only `last_seen` changes). Each yields one
/// keyring op through [`sma::Device::observe_all`].
pub fn observations(prefix: &str, n: usize, key_bytes: usize, when: u64) -> Vec<Observation> {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|i| {
            let from = format!("{prefix}{i}@peers.test");
            let autocrypt = (key_bytes > 0).then(|| {
                let mut keydata = vec![0u8; key_bytes];
                rng.fill_bytes(&mut keydata);
                AutocryptHeader {
                    addr: from.clone(),
                    prefer_encrypt: PreferEncrypt::Mutual,
                    keydata,
                }
            });
            Observation {
                from,
                effective_date: when,
                autocrypt,
                gossip: Vec::new(),
            }
        })
        .collect()
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_messages_have_the_exact_size_and_end_with_crlf() {
        for size in (300..460).chain([4096, 65_537]) {
            let m = raw_message(size, "t");
            assert_eq!(m.len(), size);
            assert!(m.ends_with(b"\r\n"), "{size}");
            assert!(!m[..m.len() - 2]
                .windows(2)
                .any(|w| w[0] != b'\r' && w[1] == b'\n'));
        }
    }
}
