//! Replication throughput: keyring ops recorded on A, batched into sync
//! messages, applied at B. The floor moves the same messages' bytes with
//! raw APPEND + FETCH.

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use sma::Device;
use sma_imap::{ImapSession, Transport};
use tokio::time::Instant;

use crate::counting::Counting;
use crate::rig::{observations, raw_message, unix_now, Rig};

/// Floor folder for the throughput runs.
const FLOOR_FOLDER: &str = "bench_floor_throughput";

/// One run of `ops` operations.
#[derive(Clone, Debug, Serialize)]
pub struct ThroughputRun {
    /// Operations recorded on A and replicated to B.
    pub ops: usize,
    /// Key bytes each op carries (0: a `last_seen` update only).
    pub key_bytes: usize,
    /// Recording them on A (one store transaction for all), seconds.
    pub record_secs: f64,
    /// From A's first sync round until B had applied all, seconds.
    pub replicate_secs: f64,
    /// Of `replicate_secs`, the time spent waiting for IMAP commands (both
    /// devices); the rest is local work: crypto, JSON, the store.
    pub imap_secs: f64,
    /// ops / replicate_secs.
    pub ops_per_sec: f64,
    /// ops / (record_secs + replicate_secs).
    pub end_to_end_ops_per_sec: f64,
    /// Sync rounds (A then B) it took.
    pub rounds: usize,
    /// Sync messages appended (both directions).
    pub messages: usize,
    /// Bytes appended (both directions).
    pub bytes: usize,
    /// Largest single sync message.
    pub max_message_bytes: usize,
    /// The floor: the same message sizes, APPEND then SELECT + FETCH, seconds.
    pub floor_secs: f64,
    /// ops / floor_secs.
    pub floor_ops_per_sec: f64,
    /// replicate_secs / floor_secs.
    pub ratio: f64,
}

/// Recording ops one at a time, one store transaction each.
#[derive(Clone, Debug, Serialize)]
pub struct PerOpSave {
    /// Ops recorded.
    pub ops: usize,
    /// Ops per second.
    pub ops_per_sec: f64,
    /// Size of the whole protocol state as JSON (a save writes only the change).
    pub state_json_bytes: usize,
}

/// All throughput figures.
#[derive(Clone, Debug, Serialize)]
pub struct ThroughputReport {
    /// One entry per `--ops` value.
    pub runs: Vec<ThroughputRun>,
    /// Local recording with a save per op (the store's cost).
    pub per_op_save: PerOpSave,
}

/// Runs every size in `sizes` with keyless ops, then `keyed.0` ops
/// carrying `keyed.1`-byte keys (if any), then the per-op-save measurement
/// (with keys).
pub async fn run(
    rig: &Rig,
    account: usize,
    a: &mut Device,
    b: &mut Device,
    sizes: &[usize],
    keyed: (usize, usize),
    per_op_sample: usize,
) -> Result<ThroughputReport> {
    let key_bytes = keyed.1;
    let mut ta = Counting::new(rig.session(account).await?);
    let mut tb = Counting::new(rig.session(account).await?);
    // Settle anything pending.
    for _ in 0..2 {
        a.sync(&mut ta).await?;
        b.sync(&mut tb).await?;
    }
    let mut plan: Vec<(usize, usize)> = sizes.iter().map(|&n| (n, 0)).collect();
    if keyed.0 > 0 {
        plan.push(keyed);
    }
    let mut runs = Vec::new();
    for (k, (n, key)) in plan.into_iter().enumerate() {
        let prefix = format!("t{k}x");
        runs.push(one_run(rig, account, (a, b), (&mut ta, &mut tb), n, key, &prefix).await?);
    }
    let sample = per_op_sample.max(1);
    let list = observations("saved", sample, key_bytes, unix_now());
    let t = Instant::now();
    for o in list {
        a.observe_all([o])?;
    }
    let secs = t.elapsed().as_secs_f64();
    let state_json_bytes = serde_json::to_vec(a.core())?.len();
    Ok(ThroughputReport {
        runs,
        per_op_save: PerOpSave {
            ops: sample,
            ops_per_sec: sample as f64 / secs,
            state_json_bytes,
        },
    })
}

async fn one_run(
    rig: &Rig,
    account: usize,
    (a, b): (&mut Device, &mut Device),
    (ta, tb): (&mut Counting<ImapSession>, &mut Counting<ImapSession>),
    n: usize,
    key_bytes: usize,
    prefix: &str,
) -> Result<ThroughputRun> {
    let target = b.core().group().keyring().len() + n;
    let list = observations(prefix, n, key_bytes, unix_now());
    let t = Instant::now();
    let recorded = a.observe_all(list)?.len();
    if recorded != n {
        bail!("{n} observations made {recorded} keyring ops, expected one each");
    }
    let record_secs = t.elapsed().as_secs_f64();
    ta.take_log();
    tb.take_log();
    // Sizes of every sync message in order, per direction (true: A→B).
    let mut sequence: Vec<(bool, usize)> = Vec::new();
    let t = Instant::now();
    let limit = 20 + n / 100;
    let mut rounds = 0;
    let mut imap = std::time::Duration::ZERO;
    while b.core().group().keyring().len() < target {
        if rounds >= limit {
            bail!(
                "B applied {} of {n} ops after {rounds} rounds; replication is stuck \
                 (a sync message over the size cap is deleted unread)",
                n + b.core().group().keyring().len() - target
            );
        }
        a.sync(ta).await?;
        let log = ta.take_log();
        imap += log.busy_total();
        sequence.extend(log.appended.iter().map(|x| (true, x.size)));
        b.sync(tb).await?;
        let log = tb.take_log();
        imap += log.busy_total();
        sequence.extend(log.appended.iter().map(|x| (false, x.size)));
        rounds += 1;
    }
    let replicate_secs = t.elapsed().as_secs_f64();
    // Let A take B's last acknowledgement (not timed).
    a.sync(ta).await?;
    b.sync(tb).await?;
    let floor_secs = floor(rig, account, &sequence).await?;
    Ok(ThroughputRun {
        ops: n,
        key_bytes,
        record_secs,
        replicate_secs,
        imap_secs: imap.as_secs_f64(),
        ops_per_sec: n as f64 / replicate_secs,
        end_to_end_ops_per_sec: n as f64 / (record_secs + replicate_secs),
        rounds,
        messages: sequence.len(),
        bytes: sequence.iter().map(|x| x.1).sum(),
        max_message_bytes: sequence.iter().map(|x| x.1).max().unwrap_or(0),
        floor_secs,
        floor_ops_per_sec: n as f64 / floor_secs,
        ratio: replicate_secs / floor_secs,
    })
}

/// Moves messages of the given sizes from one connection to the other (or
/// back): APPEND, then SELECT + FETCH on the receiving side.
pub async fn floor(rig: &Rig, account: usize, sequence: &[(bool, usize)]) -> Result<f64> {
    let mut x = rig.session(account).await?;
    let mut y = rig.session(account).await?;
    x.create(FLOOR_FOLDER).await?;
    let msgs: Vec<Vec<u8>> = sequence
        .iter()
        .enumerate()
        .map(|(i, (_, size))| raw_message(*size, &format!("tp{i}")))
        .collect();
    let t = Instant::now();
    for ((forward, _), msg) in sequence.iter().zip(&msgs) {
        let (from, to) = if *forward {
            (&mut x, &mut y)
        } else {
            (&mut y, &mut x)
        };
        let uid = from
            .append(FLOOR_FOLDER, &[], msg)
            .await?
            .ok_or_else(|| anyhow!("no APPENDUID"))?;
        to.select(FLOOR_FOLDER).await?;
        let got = to.fetch_messages(&[uid], u32::MAX).await?;
        if got.first().and_then(|m| m.body.as_ref()).map(Vec::len) != Some(msg.len()) {
            bail!("floor: message {uid} not fetched whole");
        }
    }
    Ok(t.elapsed().as_secs_f64())
}
