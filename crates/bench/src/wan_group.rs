//! A broadcast to five devices on a simulated wide-area network.
//!
//! Four more devices join the group of the WAN run's two (each `init`
//! pending and paired with the founder through the delay proxy, untimed);
//! then the founder's `sma send --all` to its five peers is timed. Its
//! floor is one pipelined session appending to five folders.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::sma;
use crate::proxy::DelayProxy;
use crate::rig::Rig;
use crate::wan_steps::{init_command, json_field, start_pair, timed};

/// Peers the founder broadcasts to.
pub const RECIPIENTS: usize = 5;

/// Grows the group of `founder` and `b` to [`RECIPIENTS`] peers of the
/// founder, then times `send --all` of `body` from the founder.
pub fn product(
    rig: &Rig,
    proxy: &DelayProxy,
    bin: &Path,
    account: usize,
    (founder, b): (&Path, &Path),
    body: &Path,
) -> Result<Duration> {
    let mut homes = vec![founder.to_path_buf(), b.to_path_buf()];
    for i in 2..=RECIPIENTS {
        let name = format!("wan-{i}");
        let home = rig.home(account, &name);
        let (_, out) = timed(init_command(rig, proxy, bin, account, &home, &name), "init")?;
        let id = json_field(&out, "device_id")?;
        // By id: pending devices announced within one second (the
        // server's time resolution) have no reliable "newest".
        let (pair, code) = start_pair(rig, bin, account, (founder, &id))?;
        let mut join = sma(bin, rig, account, &home);
        join.args(["join", "--timeout", "120", "--code", &code]);
        timed(join, "join")?;
        let out = pair.wait_with_output().context("waiting for sma pair")?;
        if !out.status.success() {
            bail!(
                "sma pair failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        homes.push(home);
    }
    // Everyone learns of everyone before the timed broadcast.
    for _ in 0..2 {
        for home in &homes {
            let mut cmd = sma(bin, rig, account, home);
            cmd.arg("sync");
            timed(cmd, "sync")?;
        }
    }
    let mut send = sma(bin, rig, account, founder);
    send.args(["send", "--all"]).arg(body);
    let (wall, out) = timed(send, "send --all")?;
    let sent_to = count_recipients(&out);
    if sent_to < RECIPIENTS {
        bail!("sma send --all reached {sent_to} devices, not {RECIPIENTS}: {out}");
    }
    Ok(wall)
}

/// Recipients listed in `send`'s JSON answer (`"to": [...]`).
fn count_recipients(out: &str) -> usize {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("to").and_then(|t| t.as_array()).map(Vec::len))
        .max()
        .unwrap_or(0)
}
