//! Figures of the real `sma` binary: peak RSS of `sma watch`, cold start
//! of `sma status`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sma::Device;

use crate::rig::{observations, unix_now, Rig};
use crate::stats::{median, ms};

/// The `sma` binary next to this one (same build profile), unless given.
pub fn default_sma_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("sma")))
        .unwrap_or_else(|| PathBuf::from("sma"))
}

pub fn check_bin(bin: &Path) -> Result<()> {
    if !bin.is_file() {
        bail!(
            "the sma binary {} is missing: build it first with `cargo build -p sma-cli` \
             (add --release for a release run) or pass --sma-bin",
            bin.display()
        );
    }
    Ok(())
}

/// `sma` for device `home` of `account`: its password, JSON output, no log
/// settings inherited, no standard input.
pub(crate) fn sma(bin: &Path, rig: &Rig, account: usize, home: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--home")
        .arg(home)
        .arg("--json")
        .env("SMA_PASSWORD", rig.password(account).expose())
        .env_remove("RUST_LOG")
        .env_remove("SMA_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Peak memory of `sma watch`.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryReport {
    /// Peers in the watching device's keyring.
    pub peers: usize,
    /// VmHWM after the first applied sync message, KiB.
    pub peak_rss_kib: u64,
    /// VmRSS at the same moment, KiB.
    pub rss_kib: u64,
    /// From start until the event was printed, ms.
    pub first_event_ms: f64,
}

fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

struct Killed(Child);

impl Drop for Killed {
    /// Stops the child: SIGTERM (a clean stop, so tools such as valgrind
    /// wrapped around it write their output), SIGKILL after 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sma watch` on `home`, makes `a` send it a sync message, waits
/// for the `applied` event and reads the peak RSS.
pub async fn memory(
    bin: &Path,
    rig: &Rig,
    account: usize,
    a: &mut Device,
    home: &Path,
    peers_in_keyring: usize,
) -> Result<MemoryReport> {
    check_bin(bin)?;
    let start = Instant::now();
    let mut child = Killed(
        sma(bin, rig, account, home)
            .arg("watch")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?,
    );
    let pid = child.0.id();
    let stdout = child.0.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Give watch time for its first round, then make it apply something.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut t = rig.session(account).await?;
    a.observe_all(observations("watched", 1, 0, unix_now()))?;
    a.sync(&mut t).await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("sma watch printed no `applied` event within 90 s");
        }
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) if line.contains("\"applied\"") => break,
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("sma watch exited before applying anything")
            }
        }
    }
    let first_event_ms = ms(start.elapsed());
    let peak_rss_kib = proc_status_kib(pid, "VmHWM:")?;
    let rss_kib = proc_status_kib(pid, "VmRSS:")?;
    drop(child);
    Ok(MemoryReport {
        peers: peers_in_keyring,
        peak_rss_kib,
        rss_kib,
        first_event_ms,
    })
}

/// Wall time of `sma status`.
#[derive(Clone, Debug, Serialize)]
pub struct ColdStart {
    /// Peers in the device's keyring.
    pub peers: usize,
    /// Runs.
    pub runs: usize,
    /// Median wall time, ms.
    pub median_ms: f64,
    /// Fastest run, ms.
    pub min_ms: f64,
}

/// Runs `sma status` `runs` times on `home`.
pub fn cold_start(
    bin: &Path,
    rig: &Rig,
    account: usize,
    home: &Path,
    peers: usize,
    runs: usize,
) -> Result<ColdStart> {
    check_bin(bin)?;
    let mut walls = Vec::new();
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let out = sma(bin, rig, account, home)
            .arg("status")
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        walls.push(start.elapsed());
        if !out.status.success() {
            bail!(
                "sma status failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(ColdStart {
        peers,
        runs: walls.len(),
        median_ms: ms(median(&walls)),
        min_ms: walls.iter().copied().map(ms).fold(f64::INFINITY, f64::min),
    })
}
