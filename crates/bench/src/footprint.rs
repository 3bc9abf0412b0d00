//! Server footprint: messages and bytes in the SMA folders after many
//! operations among five devices, one of them offline.

use anyhow::Result;
use serde::Serialize;
use sma::Device;
use sma_imap::{ImapSession, Transport, UidRange};
use tokio::time::Instant;

use crate::rig::{observations, unix_now, Rig};

/// Ops each online device records per round.
const OPS_PER_DEVICE_ROUND: usize = 100;

/// The SMA folders at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// Ops made so far (all devices).
    pub ops: usize,
    /// Messages in all SMA folders.
    pub messages: usize,
    /// Their bytes (RFC822.SIZE).
    pub bytes: u64,
    /// Bytes in the offline device's inbox.
    pub offline_inbox_bytes: u64,
    /// Size of one online device's saved protocol state (JSON bytes).
    pub state_json_bytes: usize,
}

/// The footprint run.
#[derive(Clone, Debug, Serialize)]
pub struct FootprintReport {
    /// Devices in the group.
    pub devices: usize,
    /// Devices that stayed offline.
    pub offline: usize,
    /// Snapshots as history grew (the last after settling rounds).
    pub snapshots: Vec<Snapshot>,
    /// Wall time of the whole run, seconds.
    pub secs: f64,
}

/// Every SMA folder of the account: its name, messages and their bytes
/// (RFC822.SIZE).
pub async fn sma_folders(t: &mut ImapSession) -> Result<Vec<(String, usize, u64)>> {
    let mut out = Vec::new();
    for f in t.list("", "*").await? {
        if !f.name.contains("Autocrypt_SMA") || !f.is_selectable() {
            continue;
        }
        t.examine(&f.name).await?;
        let headers = t.fetch_headers(UidRange::all()).await?;
        let sum: u64 = headers.iter().map(|h| u64::from(h.size)).sum();
        out.push((f.name, headers.len(), sum));
    }
    Ok(out)
}

async fn snapshot(
    t: &mut ImapSession,
    ops: usize,
    offline_inbox: &str,
    state: &Device,
) -> Result<Snapshot> {
    let folders = sma_folders(t).await?;
    let messages = folders.iter().map(|f| f.1).sum();
    let bytes = folders.iter().map(|f| f.2).sum();
    let offline_inbox_bytes = folders
        .iter()
        .find(|f| f.0 == offline_inbox)
        .map_or(0, |f| f.2);
    Ok(Snapshot {
        ops,
        messages,
        bytes,
        offline_inbox_bytes,
        state_json_bytes: serde_json::to_vec(state.core())?.len(),
    })
}

/// Builds a five-device group on `account`, leaves the last offline and
/// makes `total_ops` keyring ops on the others, snapshotting the server.
pub async fn run(rig: &Rig, account: usize, total_ops: usize) -> Result<FootprintReport> {
    let start = Instant::now();
    let mut devs = rig.group(account, &["a", "b", "c", "d", "e"]).await?;
    let offline = devs.pop().map(|d| d.inbox()).unwrap_or_default();
    let mut sessions = Vec::new();
    for _ in &devs {
        sessions.push(rig.session(account).await?);
    }
    let mut probe = rig.session(account).await?;
    let per_round = OPS_PER_DEVICE_ROUND * devs.len();
    let rounds = total_ops.div_ceil(per_round).max(1);
    let marks = [rounds / 10, rounds / 2, rounds];
    let mut snapshots = vec![snapshot(&mut probe, 0, &offline, &devs[0]).await?];
    let mut ops = 0;
    for r in 1..=rounds {
        for (k, (d, t)) in devs.iter_mut().zip(sessions.iter_mut()).enumerate() {
            let prefix = format!("fp{r}d{k}x");
            let obs = observations(&prefix, OPS_PER_DEVICE_ROUND, 0, unix_now());
            ops += d.observe_all(obs)?.len();
            d.sync(t).await?;
        }
        if marks.contains(&r) && r > 0 {
            snapshots.push(snapshot(&mut probe, ops, &offline, &devs[0]).await?);
        }
    }
    for _ in 0..3 {
        for (d, t) in devs.iter_mut().zip(sessions.iter_mut()) {
            d.sync(t).await?;
        }
    }
    snapshots.push(snapshot(&mut probe, ops, &offline, &devs[0]).await?);
    Ok(FootprintReport {
        devices: devs.len() + 1,
        offline: 1,
        snapshots,
        secs: start.elapsed().as_secs_f64(),
    })
}
