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

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::cli::sma;
use crate::proxy::{DelayProxy, Traced};
use crate::rig::{Rig, Sec};
use crate::stats::{median, ms};
use crate::wan_floor::floor_run;
use crate::wan_group;
use crate::wan_jmap;
use crate::wan_steps::{init_command, json_field, start_pair, timed, COMMANDS, WATCH_DELIVERY};
use crate::wan_watch::{self, ROUND_TRIPS_ABOVE_FLOOR};

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
    /// What the devices spoke: `imap`, or `jmap` (`--server cyrus-jmap`).
    pub transport: &'static str,
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

/// What the delay proxy relays to: the JMAP port (or its TLS front), or
/// the IMAP port of the rig's security.
fn upstream(rig: &Rig) -> Result<std::net::SocketAddr> {
    if let Some(front) = &rig.jmap_tls {
        return Ok(front.addr());
    }
    let port = match (rig.server.jmap_port(), rig.sec) {
        (Some(port), _) => port,
        (None, Sec::Tls) => rig.server.tls_port(),
        (None, Sec::Plain) => rig.server.plain_port(),
    };
    format!("{}:{port}", rig.server.host())
        .parse()
        .context("the rig's address")
}

/// Measures everything.
pub async fn run(rig: &Rig, args: &WanArgs<'_>) -> Result<WanReport> {
    crate::cli::check_bin(args.sma_bin)?;
    let jmap = rig.server.jmap_port().is_some();
    let proxy = Arc::new(DelayProxy::start(upstream(rig)?)?);
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
            let trace = args.trace && !jmap && ri == 1 && run + 1 == runs;
            let (times, t) = product_run(rig, &proxy, args.sma_bin, account, (rtt, trace))?;
            for (i, d) in times.into_iter().enumerate() {
                w[i].push(d);
            }
            if trace {
                traces = t;
            }
            let ft = if jmap {
                wan_jmap::floor(rig, proxy.port(), account, rtt).await?
            } else {
                floor_run(rig, &proxy, account, rtt).await?
            };
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
                target_round_trips: if jmap {
                    wan_jmap::target(command)
                } else {
                    target(command)
                },
                target_above_floor: (command == WATCH_DELIVERY).then_some(ROUND_TRIPS_ABOVE_FLOOR),
            });
        }
    }
    let transport = if jmap { "jmap" } else { "imap" };
    Ok(WanReport {
        transport,
        runs,
        rows,
        traces,
    })
}

/// Waits for the member's `pair` to end well, then lets both devices learn
/// everything there is to learn before the timed commands.
fn settle_pairing(
    rig: &Rig,
    bin: &Path,
    account: usize,
    pair: std::process::Child,
    (a, b): (&Path, &Path),
) -> Result<()> {
    let pair_out = pair.wait_with_output()?;
    if !pair_out.status.success() {
        bail!(
            "sma pair failed ({}): {}",
            pair_out.status,
            String::from_utf8_lossy(&pair_out.stderr).trim()
        );
    }
    for home in [a, b, a, b] {
        let mut cmd = sma(bin, rig, account, home);
        cmd.arg("sync");
        timed(cmd, "sync")?;
    }
    Ok(())
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
    let (pair, code) = start_pair(rig, bin, account, (&a, &b_id))?;
    let mut join = sma(bin, rig, account, &b);
    join.args(["join", "--timeout", "120", "--code", &code]);
    step(COMMANDS[2], join)?;
    settle_pairing(rig, bin, account, pair, (&a, &b))?;

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
