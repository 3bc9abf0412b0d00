//! `sma-bench`: measures sma against the raw-IMAP floor of the same server.
//!
//! Starts a private Dovecot on loopback (through `sma-testrig`; or Cyrus
//! with `--server cyrus`, through `scripts/cyrus-server`), then in the
//! same run measures the product (the `sma` library and binary) and the raw
//! floor (the same IMAP stack moving equal bytes with no SMA logic): delivery
//! latency (IDLE and immediate poll), replication throughput, round trips of
//! an idle sync round, bootstrap of a large keyring, peak RSS of
//! `sma watch`, server footprint and CLI cold start; and growth curves
//! (cost by group size and by keyring size, also drawn as SVG charts).
//! Prints a table, or with `--json` one object with every figure. See
//! docs/PERFORMANCE.md.

#![forbid(unsafe_code)]

mod bootstrap;
mod charts;
mod cli;
mod counting;
mod footprint;
mod growth;
mod latency;
mod proxy;
mod report;
mod rig;
mod rounds;
mod server;
mod stats;
mod throughput;
mod tls_front;
mod wan;
mod wan_floor;
mod wan_group;
mod wan_jmap;
mod wan_steps;
mod wan_watch;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

use crate::bootstrap::Wait;
use crate::report::Report;
use crate::rig::{autocrypt_key_bytes, Rig, Sec};
use crate::server::ServerKind;

/// Benchmarks of sma against the raw-IMAP floor of a private, loopback Dovecot (or Cyrus).
#[derive(Debug, Parser)]
#[command(name = "sma-bench", version, max_term_width = 100)]
struct Args {
    /// Print one JSON object with every figure instead of the table.
    #[arg(long)]
    json: bool,
    /// Messages per delivery-latency measurement (each of four).
    #[arg(long, default_value_t = 200, value_name = "N")]
    messages: usize,
    /// Application body size of the latency messages, bytes.
    #[arg(long, default_value_t = 256, value_name = "BYTES")]
    body_bytes: usize,
    /// Keyring operations per throughput run (comma-separated for several).
    #[arg(long, default_value = "10000", value_delimiter = ',', value_name = "N")]
    ops: Vec<usize>,
    /// Ops carrying Autocrypt-sized keys for one more throughput run (0: skip).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    keyed_ops: usize,
    /// Ops recorded one at a time (a store transaction each) for the per-op rate.
    #[arg(long, default_value_t = 300, value_name = "N")]
    per_op_ops: usize,
    /// Peers in the keyring for the bootstrap and memory figures.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    peers: usize,
    /// Also bootstrap a group whose keyring ops are still in the sync log.
    #[arg(long)]
    fresh_bootstrap: bool,
    /// Keyring ops for the footprint run (five devices, one offline).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    footprint_ops: usize,
    /// Runs of `sma status` for the cold-start median.
    #[arg(long, default_value_t = 7, value_name = "N")]
    status_runs: usize,
    /// Idle sync rounds to time (the command count is the same every time).
    #[arg(long, default_value_t = 20, value_name = "N")]
    idle_rounds: usize,
    /// The server to measure against. Cyrus (IDLE without delay) needs
    /// `scripts/cyrus-server install` first, `--security plain` and
    /// `--only latency,wan`; over JMAP (`cyrus-jmap`), `--only wan`, and
    /// `--security tls` puts a TLS front (a CA made for the run) between
    /// the delay proxy and Cyrus's plain HTTP.
    #[arg(long, value_enum, default_value = "dovecot")]
    server: ServerArg,
    /// With `--server jmap-script`: the script that starts the server. It
    /// speaks `scripts/cyrus-server`'s interface (`start --accounts N
    /// --dir DIR --jmap` prints `SMA_IMAP_PORT=… SMA_JMAP_URL=…`, accounts
    /// `user<i>@sma.test` / `pass<i>`; `stop --dir DIR`). If the server
    /// names absolute URLs of its own in its session resource, set
    /// SMA_BENCH_PROXY_PORT and have the script name that port instead.
    #[arg(long, value_name = "PATH")]
    server_script: Option<PathBuf>,
    /// Connection security of every session.
    #[arg(long, value_enum, default_value = "tls")]
    security: SecArg,
    /// The `sma` binary [default: next to this one].
    #[arg(long, value_name = "PATH")]
    sma_bin: Option<PathBuf>,
    /// Round-trip times for the WAN part, ms (comma-separated); a delay
    /// proxy adds half of each in each direction.
    #[arg(long, default_value = "50", value_delimiter = ',', value_name = "MS")]
    wan_rtt_ms: Vec<f64>,
    /// Runs per WAN figure (a fresh account each; the median is reported).
    #[arg(long, default_value_t = 3, value_name = "N")]
    wan_runs: usize,
    /// With `--security plain`: record the IMAP lines each WAN command sent
    /// (in the JSON report, and on stderr).
    #[arg(long)]
    wan_trace: bool,
    /// Group sizes of the growth part, devices (comma-separated; each at least 2).
    #[arg(
        long,
        default_value = "2,5,10,20,50",
        value_delimiter = ',',
        value_name = "N"
    )]
    growth_devices: Vec<usize>,
    /// Keyring sizes of the growth part, entries (comma-separated).
    #[arg(
        long,
        default_value = "1000,10000,100000",
        value_delimiter = ',',
        value_name = "N"
    )]
    growth_keyring: Vec<usize>,
    /// Write the growth part's SVG charts into this directory.
    #[arg(long, value_name = "DIR")]
    charts_dir: Option<PathBuf>,
    /// Run only these parts (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PART")]
    only: Vec<Part>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ServerArg {
    /// A private Dovecot (sma-testrig): every part, TLS or plain.
    Dovecot,
    /// A private Cyrus IMAP (scripts/cyrus-server): latency and WAN, plain.
    Cyrus,
    /// The same Cyrus serving JMAP too: the WAN part over JMAP devices
    /// (`sma init --jmap`), plain HTTP.
    CyrusJmap,
    /// A JMAP server started by `--server-script`: the WAN part over JMAP
    /// devices, plain HTTP.
    JmapScript,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SecArg {
    /// Implicit TLS with the rig's private CA.
    Tls,
    /// Plain IMAP on loopback.
    Plain,
}

/// The parts of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Delivery latency, IDLE and poll.
    Latency,
    /// Round trips of an idle sync round.
    Rounds,
    /// Replication throughput.
    Throughput,
    /// Large-keyring bootstrap.
    Bootstrap,
    /// Peak RSS of `sma watch` (needs bootstrap's keyring; runs it).
    Memory,
    /// Server footprint.
    Footprint,
    /// `sma status` wall time.
    Coldstart,
    /// Wall time and round trips of each command behind a delay proxy.
    Wan,
    /// Cost of each operation by group size and by keyring size.
    Growth,
}

/// The parts that run against a server other than Dovecot.
const SCRIPT_SERVER_PARTS: [Part; 2] = [Part::Latency, Part::Wan];

/// Accounts of the rig, one per scenario.
const ACCT_PAIR: usize = 0;
const ACCT_THROUGHPUT: usize = 1;
const ACCT_BOOT: usize = 2;
const ACCT_BOOT_POLL: usize = 3;
const ACCT_BOOT_FRESH: usize = 4;
const ACCT_FOOTPRINT: usize = 5;
/// The first of the WAN part's accounts (one per run and RTT).
const ACCT_WAN: usize = 6;

fn main() -> Result<()> {
    let args = Args::parse();
    if args.messages == 0 || args.ops.contains(&0) || args.peers == 0 {
        bail!("--messages, --ops and --peers must be at least 1");
    }
    if args.growth_devices.iter().any(|&n| n < 2) || args.growth_keyring.contains(&0) {
        bail!("--growth-devices must be at least 2 and --growth-keyring at least 1");
    }
    if args.wan_rtt_ms.iter().any(|&r| !(r > 0.0 && r < 10_000.0)) {
        bail!("--wan-rtt-ms must be above 0 and below 10000");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print_table();
    }
    Ok(())
}

async fn run(args: &Args) -> Result<Report> {
    let wants = |p: Part| args.only.is_empty() || args.only.contains(&p);
    let sec = match args.security {
        SecArg::Tls => Sec::Tls,
        SecArg::Plain => Sec::Plain,
    };
    let sma_bin = args.sma_bin.clone().unwrap_or_else(cli::default_sma_bin);
    let progress = |what: &str| eprintln!("sma-bench: {what}");
    let kind = server_kind(args)?;
    progress(&format!("starting {}", kind.name()));
    let wan_accounts = if wants(Part::Wan) {
        wan::accounts_needed(args.wan_rtt_ms.len(), args.wan_runs)
    } else {
        0
    };
    let growth_accounts = if wants(Part::Growth) {
        growth::accounts_needed(args.growth_devices.len(), args.growth_keyring.len())
    } else {
        0
    };
    let rig = Rig::start(kind, ACCT_WAN + wan_accounts + growth_accounts, sec)?;
    let mut report = Report::new(sec, cfg!(debug_assertions), &sma_bin, &rig.server);

    if wants(Part::Latency) || wants(Part::Rounds) || wants(Part::Coldstart) {
        pair_parts(args, &rig, &sma_bin, &wants, &mut report).await?;
    }

    let key_bytes = autocrypt_key_bytes()?;
    if wants(Part::Throughput) {
        progress("replication throughput");
        let mut pair = rig.group(ACCT_THROUGHPUT, &["a", "b"]).await?;
        let (a, rest) = pair.split_at_mut(1);
        report.throughput = Some(
            throughput::run(
                &rig,
                ACCT_THROUGHPUT,
                &mut a[0],
                &mut rest[0],
                &args.ops,
                (args.keyed_ops, key_bytes),
                args.per_op_ops,
            )
            .await?,
        );
    }

    if wants(Part::Bootstrap) || wants(Part::Memory) {
        let parts = (wants(Part::Memory), wants(Part::Coldstart));
        bootstrap_part(args, &rig, &sma_bin, key_bytes, parts, &mut report).await?;
    }

    if wants(Part::Footprint) {
        progress(&format!(
            "server footprint ({} ops, 5 devices, 1 offline)",
            args.footprint_ops
        ));
        report.footprint = Some(footprint::run(&rig, ACCT_FOOTPRINT, args.footprint_ops).await?);
    }

    if wants(Part::Wan) {
        report.wan = Some(wan_part(args, &rig, &sma_bin, sec).await?);
    }

    if wants(Part::Growth) {
        report.growth = Some(growth_part(args, &rig, ACCT_WAN + wan_accounts).await?);
    }
    Ok(report)
}

/// The parts measured on one paired account: idle rounds, delivery
/// latency and the cold start of `sma status`.
async fn pair_parts(
    args: &Args,
    rig: &Rig,
    sma_bin: &Path,
    wants: &impl Fn(Part) -> bool,
    report: &mut Report,
) -> Result<()> {
    let progress = |what: &str| eprintln!("sma-bench: {what}");
    progress("pairing two devices");
    let mut pair = rig.group(ACCT_PAIR, &["a", "b"]).await?;
    let (a, rest) = pair.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut rest[0]);
    if wants(Part::Rounds) {
        progress("idle sync round");
        report.idle_round = Some(rounds::run(rig, ACCT_PAIR, b, args.idle_rounds).await?);
    }
    if wants(Part::Latency) {
        progress("delivery latency (poll, then IDLE; the IDLE runs take ~1 s per message)");
        report.latency =
            Some(latency::run(rig, ACCT_PAIR, a, b, args.messages, args.body_bytes).await?);
    }
    if wants(Part::Coldstart) {
        progress("sma status cold start");
        let home = rig.home(ACCT_PAIR, "b");
        report.cold_start.push(cli::cold_start(
            sma_bin,
            rig,
            ACCT_PAIR,
            &home,
            b.core().group().keyring().len(),
            args.status_runs,
        )?);
    }
    Ok(())
}

/// The server `--server` asks for, if the parts asked for run on it.
fn server_kind(args: &Args) -> Result<ServerKind> {
    let kind = match (args.server, &args.server_script) {
        (ServerArg::JmapScript, Some(script)) => ServerKind::JmapScript(script.clone()),
        (ServerArg::JmapScript, None) => bail!("--server jmap-script needs --server-script PATH"),
        (_, Some(_)) => bail!("--server-script goes with --server jmap-script"),
        (ServerArg::Dovecot, None) => ServerKind::Dovecot,
        (ServerArg::Cyrus, None) => ServerKind::Cyrus,
        (ServerArg::CyrusJmap, None) => ServerKind::CyrusJmap,
    };
    if kind.is_jmap() && args.only != [Part::Wan] {
        bail!(
            "against {} only the WAN part runs: add --only wan",
            kind.name()
        );
    }
    if kind != ServerKind::Dovecot
        && (args.only.is_empty() || args.only.iter().any(|p| !SCRIPT_SERVER_PARTS.contains(p)))
    {
        bail!(
            "against {} only the latency and WAN parts run: add --only latency,wan",
            kind.name()
        );
    }
    Ok(kind)
}

/// The bootstrap runs, then (`memory`, `coldstart`) the peak RSS of `sma
/// watch` and the cold start of `sma status` with the large keyring.
async fn bootstrap_part(
    args: &Args,
    rig: &Rig,
    sma_bin: &Path,
    key_bytes: usize,
    (memory, coldstart): (bool, bool),
    report: &mut Report,
) -> Result<()> {
    let progress = |what: &str| eprintln!("sma-bench: {what}");
    progress(&format!(
        "bootstrap with {} peers ({key_bytes}-byte keys)",
        args.peers
    ));
    let (aged, mut a) =
        bootstrap::one(rig, ACCT_BOOT, args.peers, key_bytes, true, Wait::Idle).await?;
    progress("bootstrap again, polling instead of IDLE");
    let (aged_poll, _) =
        bootstrap::one(rig, ACCT_BOOT_POLL, args.peers, key_bytes, true, Wait::Poll).await?;
    let fresh = if args.fresh_bootstrap {
        progress("bootstrap with the keyring ops still in the sync log");
        let fresh = bootstrap::one(
            rig,
            ACCT_BOOT_FRESH,
            args.peers,
            key_bytes,
            false,
            Wait::Idle,
        );
        Some(fresh.await?.0)
    } else {
        None
    };
    let b_home = rig.home(ACCT_BOOT, "b");
    let joiner_peers = aged.joiner_peers;
    report.bootstrap = Some(bootstrap::BootstrapReport {
        peers: args.peers,
        key_bytes,
        aged,
        aged_poll,
        fresh,
    });
    if memory {
        progress("peak RSS of sma watch");
        report.memory =
            Some(cli::memory(sma_bin, rig, ACCT_BOOT, &mut a, &b_home, joiner_peers).await?);
    }
    if coldstart {
        progress("sma status cold start with the large keyring");
        report.cold_start.push(cli::cold_start(
            sma_bin,
            rig,
            ACCT_BOOT,
            &b_home,
            joiner_peers,
            args.status_runs,
        )?);
    }

    Ok(())
}

/// The commands behind a delay proxy, with their IMAP traces if asked.
async fn wan_part(args: &Args, rig: &Rig, sma_bin: &Path, sec: Sec) -> Result<wan::WanReport> {
    let progress = |what: &str| eprintln!("sma-bench: {what}");
    progress("commands behind a delay proxy (WAN)");
    let wan = wan::run(
        rig,
        &wan::WanArgs {
            sma_bin,
            rtts_ms: &args.wan_rtt_ms,
            runs: args.wan_runs,
            first_account: ACCT_WAN,
            trace: args.wan_trace && sec == Sec::Plain,
        },
    )
    .await?;
    for t in &wan.traces {
        eprintln!("sma-bench: trace of {}:", t.command);
        for (conn, at, line) in &t.lines {
            eprintln!("  c{conn} {at:8.1} ms  {line}");
        }
    }
    Ok(wan)
}

/// The growth curves, and their charts if `--charts-dir` is given.
async fn growth_part(args: &Args, rig: &Rig, first_account: usize) -> Result<growth::GrowthReport> {
    let report = growth::run(
        rig,
        &growth::GrowthArgs {
            devices: &args.growth_devices,
            keyring: &args.growth_keyring,
            key_bytes: autocrypt_key_bytes()?,
            first_account,
        },
    )
    .await
    .context("growth part")?;
    if let Some(dir) = &args.charts_dir {
        for path in charts::write_all(&report, dir)? {
            eprintln!("sma-bench: wrote {}", path.display());
        }
    }
    Ok(report)
}
