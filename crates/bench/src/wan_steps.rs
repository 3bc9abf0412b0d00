//! What the WAN part's measurements share: the commands measured and the
//! `sma` processes that run them through the delay proxy.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::net::TcpStream;

use crate::cli::sma;
use crate::proxy::DelayProxy;
use crate::rig::{Rig, Sec};

/// The `watch` delivery figure (`wan_watch.rs`).
pub const WATCH_DELIVERY: &str = "watch delivery (after send returned)";

/// The broadcast figure (`wan_group.rs`).
pub const BROADCAST: &str = "send --all to five devices";

/// The commands measured, in the order they run.
pub const COMMANDS: [&str; 10] = [
    "init (founder)",
    "init (pending)",
    "pairing (join, member waiting)",
    "send --to one device",
    "recv of one message",
    "recv, nothing to do",
    "sync, nothing to do",
    "status",
    WATCH_DELIVERY,
    BROADCAST,
];

/// Protocol messages of a pairing after `join` starts, each one hop from
/// one device to the other through the server (half an RTT up, half an
/// RTT pushed to the IDLE-ing peer).
pub const PAIRING_HOPS: f64 = 2.0;

/// The JMAP session resource through the proxy on `port`. Behind the TLS
/// front, the resource itself (`/jmap/`, Cyrus's): the redirect from
/// `/.well-known/jmap` names an `http:` URL, the server's own view.
pub fn jmap_session_url(rig: &Rig, port: u16) -> String {
    match rig.jmap_tls {
        Some(_) => format!("https://{}:{port}/jmap/", rig.server.host()),
        None => format!("http://{}:{port}/.well-known/jmap", rig.server.host()),
    }
}

/// Runs `cmd`, fails with its stderr unless it succeeds; returns its wall
/// time and stdout.
pub(crate) fn timed(mut cmd: Command, what: &str) -> Result<(Duration, String)> {
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run sma {what}"))?;
    let wall = start.elapsed();
    if !out.status.success() {
        bail!(
            "sma {what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((wall, String::from_utf8_lossy(&out.stdout).into_owned()))
}

pub(crate) fn json_field(stdout: &str, field: &str) -> Result<String> {
    for line in stdout.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(s) = v.get(field).and_then(|f| f.as_str()) {
                return Ok(s.to_owned());
            }
        }
    }
    bail!("no {field:?} in the output {stdout:?}")
}

/// `sma init` for device `name` in `home`, through the proxy.
pub(crate) fn init_command(
    rig: &Rig,
    proxy: &DelayProxy,
    bin: &Path,
    account: usize,
    home: &Path,
    name: &str,
) -> Command {
    let mut cmd = sma(bin, rig, account, home);
    cmd.arg("init");
    if rig.server.jmap_port().is_some() {
        cmd.arg("--jmap")
            .arg(jmap_session_url(rig, proxy.port()))
            .arg("--user")
            .arg(&rig.server.account(account).user)
            .arg("--name")
            .arg(name);
        if let Some(front) = &rig.jmap_tls {
            cmd.arg("--ca-file").arg(front.ca_file());
        }
        return cmd;
    }
    cmd.arg("--server")
        .arg(format!("{}:{}", rig.server.host(), proxy.port()))
        .arg("--user")
        .arg(&rig.server.account(account).user)
        .arg("--name")
        .arg(name);
    match rig.sec {
        Sec::Tls => cmd
            .arg("--security")
            .arg("tls")
            .arg("--ca-file")
            .arg(rig.server.ca_file()),
        Sec::Plain => cmd.arg("--security").arg("plain"),
    };
    cmd
}

/// Starts `sma pair --device joiner` on the member in `home`; returns it,
/// waiting, and the code it shows.
pub(crate) fn start_pair(
    rig: &Rig,
    bin: &Path,
    account: usize,
    (home, joiner): (&Path, &str),
) -> Result<(std::process::Child, String)> {
    let mut pair = sma(bin, rig, account, home)
        .args(["pair", "--timeout", "120", "--device", joiner])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start sma pair")?;
    let mut lines = BufReader::new(pair.stdout.take().context("no stdout")?).lines();
    let first = lines
        .next()
        .context("sma pair printed nothing")?
        .context("reading sma pair")?;
    let code = json_field(&first, "code")?;
    Ok((pair, code))
}

pub(crate) async fn tls_connect(
    rig: &Rig,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(rig.server.ca_file())? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(rig.server.host().to_owned())?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?)
}
