//! Round trips of the `sma` commands on a simulated wide-area network.
//!
//! A [`DelayProxy`] sits between the clients and the loopback Dovecot. For
//! each round-trip time asked for (and for no delay, the loopback
//! baseline), on a fresh account per run, fresh `sma` processes run the
//! commands users type: `init` (founder), `init` (pending), a whole pairing
//! (`join` with the member's `pair` already waiting), `send --to` one
//! device, `recv` of one message, `recv` and `sync` with nothing to do,
//! `status`, a `watch` delivery ([`crate::wan_watch`]) and a broadcast to
//! five devices ([`crate::wan_group`]). Each figure is the command's wall time; its round trips are
//! that time over the RTT. Through the same proxy, a raw client does the
//! same IMAP work with everything pipelined (connect, TLS, then LOGIN and
//! all commands in one flight): the floor.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::sma;
use crate::proxy::{DelayProxy, Traced};
use crate::rig::{raw_message, Rig, Sec};
use crate::stats::{median, ms};
use crate::wan_group::{self, BROADCAST};
use crate::wan_watch::{self, ROUND_TRIPS_ABOVE_FLOOR, WATCH_DELIVERY};

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

/// Round trips the issue (17) allows each command at 50 ms RTT.
pub fn target(command: &str) -> Option<f64> {
    Some(match command {
        "init (founder)" => 12.0,
        "init (pending)" => 8.0,
        "pairing (join, member waiting)" => 16.0,
        "send --to one device" => 5.0,
        "recv of one message" => 6.0,
        "recv, nothing to do" | "sync, nothing to do" => 4.5,
        "status" => 5.0,
        _ => return None,
    })
}

/// The RTT at which the targets apply, ms.
pub const TARGET_RTT_MS: f64 = 50.0;

/// One command at one RTT.
#[derive(Clone, Debug, Serialize)]
pub struct WanRow {
    /// What ran.
    pub command: &'static str,
    /// Round-trip time of the proxy, ms (0: the loopback baseline).
    pub rtt_ms: f64,
    /// Median wall time of the `sma` process, ms.
    pub wall_ms: f64,
    /// `wall_ms / rtt_ms`.
    pub round_trips: f64,
    /// Median wall time of the same command with no delay, ms.
    pub loopback_ms: f64,
    /// `(wall_ms - loopback_ms) / rtt_ms`: the round trips the network added.
    pub network_round_trips: f64,
    /// Median wall time of the pipelined raw client, ms (for pairing: one
    /// pipelined session plus one RTT per protocol hop, see PERFORMANCE.md).
    pub floor_ms: f64,
    /// `floor_ms / rtt_ms`.
    pub floor_round_trips: f64,
    /// The bound (applies at 50 ms RTT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_round_trips: Option<f64>,
    /// The bound as round trips above the floor (`watch`
    /// delivery: 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_above_floor: Option<f64>,
}

/// Every WAN figure.
#[derive(Clone, Debug, Serialize)]
pub struct WanReport {
    /// Runs per figure (a fresh account each).
    pub runs: usize,
    /// The rows, by RTT then command (RTT 0 is not listed: it is each
    /// row's `loopback_ms`).
    pub rows: Vec<WanRow>,
    /// With `--wan-trace` on a plain run: the client lines of the last run
    /// at the first RTT, per command.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub traces: Vec<CommandTrace>,
}

/// The IMAP lines one command sent.
#[derive(Clone, Debug, Serialize)]
pub struct CommandTrace {
    /// What ran.
    pub command: &'static str,
    /// `[connection, ms since start, line]`.
    pub lines: Vec<(usize, f64, String)>,
}

/// Settings of a WAN run.
pub struct WanArgs<'a> {
    /// The `sma` binary.
    pub sma_bin: &'a Path,
    /// RTTs, ms.
    pub rtts_ms: &'a [f64],
    /// Runs per RTT.
    pub runs: usize,
    /// First account of the rig to use; needs `(rtts + 1) * runs` accounts.
    pub first_account: usize,
    /// Record client lines (plain connections only).
    pub trace: bool,
}

/// Accounts a WAN run needs.
pub fn accounts_needed(rtts: usize, runs: usize) -> usize {
    (rtts + 1) * runs.max(1)
}

/// Measures everything.
pub async fn run(rig: &Rig, args: &WanArgs<'_>) -> Result<WanReport> {
    crate::cli::check_bin(args.sma_bin)?;
    let upstream_port = match rig.sec {
        Sec::Tls => rig.server.tls_port(),
        Sec::Plain => rig.server.plain_port(),
    };
    let upstream = format!("{}:{upstream_port}", rig.server.host())
        .parse()
        .context("the rig's address")?;
    let proxy = Arc::new(DelayProxy::start(upstream)?);
    let runs = args.runs.max(1);
    let mut account = args.first_account;
    let mut rtts = vec![0.0];
    rtts.extend_from_slice(args.rtts_ms);
    // walls[rtt index][command] and floors likewise.
    let mut walls: Vec<Vec<Vec<Duration>>> = Vec::new();
    let mut floors: Vec<Vec<Vec<Duration>>> = Vec::new();
    let mut traces = Vec::new();
    for (ri, &rtt) in rtts.iter().enumerate() {
        eprintln!("sma-bench: WAN, {rtt} ms RTT, {runs} runs");
        proxy.set_delay(Duration::from_secs_f64(rtt / 2000.0));
        let mut w = vec![Vec::new(); COMMANDS.len()];
        let mut f = vec![Vec::new(); COMMANDS.len()];
        for run in 0..runs {
            let trace = args.trace && ri == 1 && run + 1 == runs;
            let (times, t) = product_run(rig, &proxy, args.sma_bin, account, (rtt, trace))?;
            for (i, d) in times.into_iter().enumerate() {
                w[i].push(d);
            }
            if trace {
                traces = t;
            }
            let ft = floor_run(rig, &proxy, account, rtt).await?;
            for (i, d) in ft.into_iter().enumerate() {
                f[i].push(d);
            }
            account += 1;
        }
        walls.push(w);
        floors.push(f);
    }
    let mut rows = Vec::new();
    for (ri, &rtt) in rtts.iter().enumerate().skip(1) {
        for (ci, &command) in COMMANDS.iter().enumerate() {
            let wall_ms = ms(median(&walls[ri][ci]));
            let loopback_ms = ms(median(&walls[0][ci]));
            let floor_ms = ms(median(&floors[ri][ci]));
            let per = |v: f64| if rtt > 0.0 { v / rtt } else { 0.0 };
            rows.push(WanRow {
                command,
                rtt_ms: rtt,
                wall_ms,
                round_trips: per(wall_ms),
                loopback_ms,
                network_round_trips: per(wall_ms - loopback_ms),
                floor_ms,
                floor_round_trips: per(floor_ms),
                target_round_trips: target(command),
                target_above_floor: (command == WATCH_DELIVERY).then_some(ROUND_TRIPS_ABOVE_FLOOR),
            });
        }
    }
    Ok(WanReport { runs, rows, traces })
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

fn json_field(stdout: &str, field: &str) -> Result<String> {
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
    cmd.arg("init")
        .arg("--server")
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

/// Starts `sma pair` on the member in `home`; returns it, waiting, and the
/// code it shows.
pub(crate) fn start_pair(
    rig: &Rig,
    bin: &Path,
    account: usize,
    home: &Path,
) -> Result<(std::process::Child, String)> {
    let mut pair = sma(bin, rig, account, home)
        .args(["pair", "--timeout", "120"])
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

/// One run of every command on a fresh `account`; wall times in
/// [`COMMANDS`] order.
fn product_run(
    rig: &Rig,
    proxy: &DelayProxy,
    bin: &Path,
    account: usize,
    (rtt, trace): (f64, bool),
) -> Result<(Vec<Duration>, Vec<CommandTrace>)> {
    let a = rig.home(account, "wan-a");
    let b = rig.home(account, "wan-b");
    let init = |home: &PathBuf, name: &str| init_command(rig, proxy, bin, account, home, name);
    let mut walls = Vec::new();
    let mut traces = Vec::new();
    let mut step = |command: &'static str, cmd: Command| -> Result<String> {
        if trace {
            proxy.trace_start();
        }
        let (wall, out) = timed(cmd, command)?;
        if trace {
            traces.push(CommandTrace {
                command,
                lines: proxy
                    .trace_take()
                    .into_iter()
                    .map(|Traced { conn, at, line }| (conn, ms(at), line))
                    .collect(),
            });
        }
        walls.push(wall);
        Ok(out)
    };
    step(COMMANDS[0], init(&a, "wan-a"))?;
    let out = step(COMMANDS[1], init(&b, "wan-b"))?;
    let b_id = json_field(&out, "device_id")?;

    // The member waits with its code shown; then `join` is timed.
    let (pair, code) = start_pair(rig, bin, account, &a)?;
    let mut join = sma(bin, rig, account, &b);
    join.args(["join", "--timeout", "120", "--code", &code]);
    step(COMMANDS[2], join)?;
    let pair_out = pair.wait_with_output()?;
    if !pair_out.status.success() {
        bail!(
            "sma pair failed ({}): {}",
            pair_out.status,
            String::from_utf8_lossy(&pair_out.stderr).trim()
        );
    }
    // Both learn everything there is to learn before the timed commands.
    for home in [&a, &b, &a, &b] {
        let mut cmd = sma(bin, rig, account, home);
        cmd.arg("sync");
        timed(cmd, "sync")?;
    }

    let body = rig.home(account, "wan-body");
    std::fs::File::create(&body)?.write_all(&vec![b'x'; 256])?;
    let mut send = sma(bin, rig, account, &a);
    send.args(["send", "--to", &b_id]).arg(&body);
    step(COMMANDS[3], send)?;
    let mut recv = sma(bin, rig, account, &b);
    recv.arg("recv");
    let out = step(COMMANDS[4], recv)?;
    if !out.contains("body_b64") {
        bail!("sma recv did not deliver the message sent: {out:?}");
    }
    let mut recv = sma(bin, rig, account, &b);
    recv.arg("recv");
    step(COMMANDS[5], recv)?;
    let mut sync = sma(bin, rig, account, &b);
    sync.arg("sync");
    step(COMMANDS[6], sync)?;
    let mut status = sma(bin, rig, account, &b);
    status.arg("status");
    step(COMMANDS[7], status)?;
    walls.push(wan_watch::product(rig, bin, account, (&a, &b_id), &b, rtt)?);
    walls.push(wan_group::product(
        rig,
        proxy,
        bin,
        account,
        (&a, &b),
        &body,
    )?);
    Ok((walls, traces))
}

/// The floor's IMAP work per command: what a client that knew everything
/// in advance would send, all in one flight after LOGIN. `folder` names are
/// fresh (`floor-{n}-…`, below the server's `prefix`) where the product
/// creates folders.
fn floor_scripts(n: usize, prefix: &str) -> Vec<Vec<Vec<u8>>> {
    let msg = raw_message(2048, "floor");
    let append = |folder: &str| {
        let mut c = format!("APPEND \"{folder}\" (\\Seen) {{{}+}}\r\n", msg.len()).into_bytes();
        c.extend_from_slice(&msg);
        c
    };
    let cmd = |s: &str| s.as_bytes().to_vec();
    let ann = format!("{prefix}floor-{n}-announce");
    let inbox_a = format!("{prefix}floor-{n}-a");
    let inbox_b = format!("{prefix}floor-{n}-b");
    vec![
        // init (founder): create the announcements folder and the device's
        // inbox, announce, publish the account key.
        vec![
            cmd(&format!("CREATE \"{ann}\"")),
            cmd(&format!("CREATE \"{inbox_a}\"")),
            append(&ann),
            append(&ann),
        ],
        // init (pending): look at the announcements, create the inbox,
        // announce itself.
        vec![
            cmd(&format!("SELECT \"{ann}\"")),
            cmd("UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER])"),
            cmd(&format!("CREATE \"{inbox_b}\"")),
            append(&ann),
        ],
        // pairing: measured as one session reading the welcome; the hops
        // are added in `floor_run`.
        vec![
            cmd(&format!("SELECT \"{inbox_b}\"")),
            cmd("UID FETCH 1:* (UID BODY.PEEK[])"),
            append(&ann),
        ],
        // send --to: one APPEND into the peer's inbox.
        vec![append(&inbox_b)],
        // recv of one message: select, fetch, delete.
        vec![
            cmd(&format!("SELECT \"{inbox_b}\"")),
            cmd("UID FETCH 1:* (UID BODY.PEEK[])"),
            cmd("UID STORE 1:* +FLAGS.SILENT (\\Deleted)"),
            cmd("EXPUNGE"),
        ],
        // recv / sync with nothing to do: is anything new?
        vec![cmd(&format!("SELECT \"{inbox_b}\""))],
        vec![cmd(&format!("SELECT \"{inbox_b}\""))],
        // status: the folders and their sizes.
        vec![
            cmd(&format!("STATUS \"{ann}\" (MESSAGES)")),
            cmd(&format!("STATUS \"{inbox_a}\" (MESSAGES)")),
            cmd(&format!("STATUS \"{inbox_b}\" (MESSAGES)")),
        ],
    ]
}

/// The floor of a broadcast: one APPEND per recipient, all in one flight
/// (to the floor's two inboxes in turn; the server's work is the same).
fn broadcast_script(n: usize, prefix: &str) -> Vec<Vec<u8>> {
    let msg = raw_message(2048, "floor-broadcast");
    (0..wan_group::RECIPIENTS)
        .map(|i| {
            let folder = format!("{prefix}floor-{n}-{}", if i % 2 == 0 { "a" } else { "b" });
            let mut c = format!("APPEND \"{folder}\" (\\Seen) {{{}+}}\r\n", msg.len()).into_bytes();
            c.extend_from_slice(&msg);
            c
        })
        .collect()
}

/// Protocol messages of a pairing after `join` starts, each one hop from
/// one device to the other through the server (half an RTT up, half an
/// RTT pushed to the IDLE-ing peer).
pub const PAIRING_HOPS: f64 = 2.0;

/// The floor of every command, [`COMMANDS`] order.
async fn floor_run(
    rig: &Rig,
    proxy: &DelayProxy,
    account: usize,
    rtt: f64,
) -> Result<Vec<Duration>> {
    let mut out = Vec::new();
    for (i, script) in floor_scripts(account, rig.server.folder_prefix())
        .into_iter()
        .enumerate()
    {
        let mut d = pipelined(rig, proxy.port(), account, &script).await?;
        if COMMANDS[i].starts_with("pairing") {
            d += Duration::from_secs_f64(PAIRING_HOPS * rtt / 1000.0);
        }
        out.push(d);
    }
    let folder = format!("{}floor-{account}-b", rig.server.folder_prefix());
    out.push(wan_watch::floor(rig, proxy, account, &folder, rtt).await?);
    out.push(
        pipelined(
            rig,
            proxy.port(),
            account,
            &broadcast_script(account, rig.server.folder_prefix()),
        )
        .await?,
    );
    Ok(out)
}

/// What a client may send before the login is answered: Dovecot's login
/// process buffers what comes behind the login until its authentication
/// process answers, and ends the connection ("Input buffer full") when
/// that is slow (just after a start) and more than a few KiB arrived; a
/// 2 KiB APPEND behind the login was enough to trigger it.
pub const BEFORE_LOGIN_BYTES: usize = 1024;

/// Connect, TLS, then LOGIN and `script`: in one write as far as
/// [`BEFORE_LOGIN_BYTES`] allows, the rest once the login is answered;
/// returns when the last command's tagged reply is in.
async fn pipelined(rig: &Rig, port: u16, account: usize, script: &[Vec<u8>]) -> Result<Duration> {
    let start = Instant::now();
    let tcp = TcpStream::connect((rig.server.host(), port)).await?;
    tcp.set_nodelay(true)?;
    let acct = rig.server.account(account);
    let login = format!("f0 LOGIN \"{}\" \"{}\"\r\n", acct.user, acct.password).into_bytes();
    let flight = Flight::split(login, script);
    match rig.sec {
        Sec::Plain => exchange(tcp, &flight).await?,
        Sec::Tls => {
            let tls = tls_connect(rig, tcp).await?;
            exchange(tls, &flight).await?
        }
    }
    Ok(start.elapsed())
}

/// The floor's bytes: those sent with the login, those sent once it is
/// answered, and the tag of the last command.
struct Flight {
    with_login: Vec<u8>,
    after_login: Vec<u8>,
    last: String,
}

impl Flight {
    /// Tags `script` (`f1`, `f2`, …) behind `login` (`f0`); commands go
    /// with the login while the bytes stay within [`BEFORE_LOGIN_BYTES`].
    fn split(login: Vec<u8>, script: &[Vec<u8>]) -> Flight {
        let mut with_login = login;
        let mut after_login = Vec::new();
        for (i, c) in script.iter().enumerate() {
            let mut line = format!("f{} ", i + 1).into_bytes();
            line.extend_from_slice(c);
            line.extend_from_slice(b"\r\n");
            if after_login.is_empty() && with_login.len() + line.len() <= BEFORE_LOGIN_BYTES {
                with_login.extend_from_slice(&line);
            } else {
                after_login.extend_from_slice(&line);
            }
        }
        Flight {
            with_login,
            after_login,
            last: format!("f{} ", script.len()),
        }
    }
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

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, flight: &Flight) -> Result<()> {
    s.write_all(&flight.with_login).await?;
    s.flush().await?;
    let mut got = Vec::new();
    let mut rest = (!flight.after_login.is_empty()).then_some(&flight.after_login);
    let last = flight.last.as_str();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!(
                "the server closed before answering the floor's script: {}",
                String::from_utf8_lossy(&got)
            );
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if rest.is_some() && text.split("\r\n").any(|l| l.starts_with("f0 OK")) {
            if let Some(bytes) = rest.take() {
                s.write_all(bytes).await?;
                s.flush().await?;
            }
        }
        if let Some(line) = text
            .split("\r\n")
            .find(|l| l.starts_with(last))
            .map(str::to_owned)
        {
            if !line[last.len()..].starts_with("OK") {
                bail!("the floor's script failed: {line}");
            }
            return Ok(());
        }
        // A tagged NO/BAD earlier is a broken script.
        if let Some(bad) = text
            .split("\r\n")
            .find(|l| l.starts_with('f') && (l.contains(" NO ") || l.contains(" BAD ")))
        {
            bail!("the floor's script failed: {bad}");
        }
    }
}
