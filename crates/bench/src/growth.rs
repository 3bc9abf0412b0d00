//! Growth curves: the cost of each operation as the group grows (send,
//! broadcast, sync rounds, join, server footprint at N devices) and as the
//! keyring grows (sync rounds and bootstrap at N entries).
//!
//! Each group size and each keyring size gets a fresh account of the rig,
//! so one point never sees another's messages.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sma::Device;
use sma_imap::ImapSession;
use tokio::time::Instant;

use crate::bootstrap::{self, BootstrapRun, Wait};
use crate::counting::Counting;
use crate::footprint;
use crate::rig::{observations, pair, unix_now, Rig};
use crate::stats::{median, ms};

/// Times each timed operation runs per point (the median wall is reported).
const REPS: usize = 5;
/// Passes over all devices before a group counts as settled.
const SETTLE_PASSES: usize = 12;
/// Application body of the send and broadcast measurements, bytes.
const BODY_BYTES: usize = 256;

/// One counted IMAP session.
type Session = Counting<ImapSession>;

/// What one operation cost.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cost {
    /// Wall time, ms (median of the repetitions where there are several).
    pub wall_ms: f64,
    /// IMAP commands sent (`ImapSession::commands_sent`), all sessions.
    pub commands: u64,
    /// Messages appended.
    pub messages: usize,
    /// Bytes appended.
    pub bytes: usize,
}

/// Messages and bytes in the SMA folders at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct Footprint {
    /// Messages in all SMA folders.
    pub messages: usize,
    /// Their bytes (RFC822.SIZE).
    pub bytes: u64,
}

/// The figures of one group size.
#[derive(Clone, Debug, Serialize)]
pub struct GroupPoint {
    /// Devices in the group.
    pub devices: usize,
    /// `send` of one application message to one other device.
    pub send_one: Cost,
    /// `send` of one application message to all other devices.
    pub broadcast: Cost,
    /// A sync round of one device when nothing changed.
    pub idle_round: Cost,
    /// The sync round of the device that recorded one keyring change (it
    /// sends the change to every other device).
    pub change_round: Cost,
    /// The other devices' sync rounds that apply that change, summed
    /// (wall: their sum, as if one after the other).
    pub change_apply: Cost,
    /// Pairing the last device into the others' group (`pair` and `join`,
    /// both sides; waits by IMAP IDLE, as the product does).
    pub join: Cost,
    /// Then sync rounds of every device until none sends anything, summed.
    pub join_settle: Cost,
    /// The server once every device has synced.
    pub footprint_settled: Footprint,
    /// The server right after a change was sent, before anyone read it.
    pub footprint_after_change: Footprint,
    /// Wall time of the whole point (building the group included), s.
    pub secs: f64,
}

/// The figures of one keyring size.
#[derive(Clone, Debug, Serialize)]
pub struct KeyringPoint {
    /// Entries in the keyring.
    pub entries: usize,
    /// Pairing a new device and its catch-up (history older than 7 days;
    /// waits poll every 2 ms instead of IDLE, so Dovecot's ~0.5 s IDLE
    /// delay is not counted).
    pub bootstrap: BootstrapRun,
    /// A founder's sync round when nothing changed.
    pub idle_round: Cost,
    /// The founder's round after recording one keyring change.
    pub change_round: Cost,
    /// The joiner's round that applies it.
    pub change_apply: Cost,
}

/// All growth figures.
#[derive(Clone, Debug, Serialize)]
pub struct GrowthReport {
    /// Bytes of each peer key in the keyring points.
    pub key_bytes: usize,
    /// Repetitions behind each median wall time.
    pub reps: usize,
    /// One point per `--growth-devices` value.
    pub groups: Vec<GroupPoint>,
    /// One point per `--growth-keyring` value.
    pub keyrings: Vec<KeyringPoint>,
}

/// What to measure and where.
pub struct GrowthArgs<'a> {
    /// Group sizes (devices).
    pub devices: &'a [usize],
    /// Keyring sizes (entries).
    pub keyring: &'a [usize],
    /// Bytes of each peer key.
    pub key_bytes: usize,
    /// The first of the accounts this part uses (one per point).
    pub first_account: usize,
}

/// Accounts [`run`] needs.
pub fn accounts_needed(devices: usize, keyring: usize) -> usize {
    devices + keyring
}

/// Measures every group size, then every keyring size.
pub async fn run(rig: &Rig, args: &GrowthArgs<'_>) -> Result<GrowthReport> {
    let mut account = args.first_account;
    let mut groups = Vec::new();
    for &n in args.devices {
        eprintln!("sma-bench: growth, {n} devices");
        let point = group_point(rig, account, n)
            .await
            .with_context(|| format!("growth point of {n} devices"))?;
        groups.push(point);
        account += 1;
    }
    let mut keyrings = Vec::new();
    for &n in args.keyring {
        eprintln!("sma-bench: growth, keyring of {n} entries");
        let point = keyring_point(rig, account, n, args.key_bytes)
            .await
            .with_context(|| format!("growth point of {n} keyring entries"))?;
        keyrings.push(point);
        account += 1;
    }
    Ok(GrowthReport {
        key_bytes: args.key_bytes,
        reps: REPS,
        groups,
        keyrings,
    })
}

/// A counted session on `account`.
async fn session(rig: &Rig, account: usize) -> Result<Session> {
    Ok(Counting::new(rig.session(account).await?))
}

/// Starts measuring `t`: clears its log, returns its command count.
fn begin(t: &mut Session) -> u64 {
    t.take_log();
    t.commands_sent()
}

/// Adds what `t` did since `begin` returned `before` to `cost`.
fn add(cost: &mut Cost, t: &mut Session, before: u64) {
    let log = t.take_log();
    cost.commands += t.commands_sent() - before;
    cost.messages += log.appended.len();
    cost.bytes += log.appended.iter().map(|a| a.size).sum::<usize>();
}

/// Rounds of every device until a whole pass applies and sends nothing.
async fn settle(devs: &mut [Device], ts: &mut [Session]) -> Result<Cost> {
    let mut cost = Cost::default();
    let start = Instant::now();
    for _ in 0..SETTLE_PASSES {
        let mut busy = false;
        for (d, t) in devs.iter_mut().zip(ts.iter_mut()) {
            let before = begin(t);
            let r = d.sync(t).await?;
            add(&mut cost, t, before);
            busy |= r.applied > 0 || r.sent > 0;
        }
        if !busy {
            cost.wall_ms = ms(start.elapsed());
            return Ok(cost);
        }
    }
    bail!("the group did not settle after {SETTLE_PASSES} passes")
}

/// Names of `n` devices.
fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("g{i}")).collect()
}

/// Builds a group of `n` devices on `account` (the last one paired while
/// counted) and measures every operation.
async fn group_point(rig: &Rig, account: usize, n: usize) -> Result<GroupPoint> {
    if n < 2 {
        bail!("a growth point needs at least 2 devices, not {n}");
    }
    let start = Instant::now();
    let names = names(n);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut devs = rig.group(account, &refs[..n - 1]).await?;
    let mut ts = Vec::new();
    for _ in 0..n {
        ts.push(session(rig, account).await?);
    }
    // The last device joins through the founder.
    let mut joiner = rig.init_device(account, &names[n - 1]).await?;
    let mut join = Cost::default();
    let (tf, tj) = split_two(&mut ts, 0, n - 1);
    let (bf, bj) = (begin(tf), begin(tj));
    let t0 = Instant::now();
    pair(&mut devs[0], tf, &mut joiner, tj).await?;
    join.wall_ms = ms(t0.elapsed());
    add(&mut join, tf, bf);
    add(&mut join, tj, bj);
    devs.push(joiner);
    let join_settle = settle(&mut devs, &mut ts).await?;
    if devs
        .iter()
        .any(|d| d.core().group().active_members().count() < n)
    {
        bail!("after settling, not every device knows all {n} devices");
    }
    let footprint_settled = server_footprint(rig, account).await?;
    let (send_one, broadcast) = sends(&mut devs, &mut ts).await?;
    let idle_round = idle_round(&mut devs[0], &mut ts[0]).await?;
    let (change_round, change_apply, footprint_after_change) =
        change(rig, account, &mut devs, &mut ts).await?;
    Ok(GroupPoint {
        devices: n,
        send_one,
        broadcast,
        idle_round,
        change_round,
        change_apply,
        join,
        join_settle,
        footprint_settled,
        footprint_after_change,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// Mutable references to two distinct elements.
fn split_two<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert!(i < j, "split_two wants i < j");
    let (a, b) = v.split_at_mut(j);
    (&mut a[i], &mut b[0])
}

/// Messages and bytes in every SMA folder of `account`.
async fn server_footprint(rig: &Rig, account: usize) -> Result<Footprint> {
    let mut probe = rig.session(account).await?;
    let folders = footprint::sma_folders(&mut probe).await?;
    Ok(Footprint {
        messages: folders.iter().map(|f| f.1).sum(),
        bytes: folders.iter().map(|f| f.2).sum(),
    })
}

/// `send` to one device and to all, `REPS` times each; every recipient
/// takes its messages after each send (not timed).
async fn sends(devs: &mut [Device], ts: &mut [Session]) -> Result<(Cost, Cost)> {
    let to = devs[1].id().clone();
    let mut out = [Cost::default(), Cost::default()];
    for (k, cost) in out.iter_mut().enumerate() {
        let mut walls = Vec::new();
        for rep in 0..REPS {
            let body = vec![b'x'; BODY_BYTES];
            let before = begin(&mut ts[0]);
            let t0 = Instant::now();
            let target = (k == 0).then_some(&to);
            devs[0].send(&mut ts[0], target, "bench", &body).await?;
            walls.push(t0.elapsed());
            if rep + 1 == REPS {
                add(cost, &mut ts[0], before);
            }
            let receivers = if k == 0 { 1..2 } else { 1..devs.len() };
            for i in receivers {
                drain(&mut devs[i], &mut ts[i]).await?;
            }
        }
        cost.wall_ms = ms(median(&walls));
    }
    let [one, all] = out;
    Ok((one, all))
}

/// Takes the waiting application message of `d`.
async fn drain(d: &mut Device, t: &mut Session) -> Result<()> {
    for _ in 0..20 {
        let msgs = d.recv(t, Duration::ZERO).await?;
        d.delivered(&msgs)?;
        if !msgs.is_empty() {
            return Ok(());
        }
    }
    bail!("a sent message did not arrive after 20 rounds")
}

/// `REPS` idle sync rounds of `d` (after one settling round).
async fn idle_round(d: &mut Device, t: &mut Session) -> Result<Cost> {
    d.sync(t).await?;
    let mut cost = Cost::default();
    let mut walls = Vec::new();
    for _ in 0..REPS {
        let before = begin(t);
        let t0 = Instant::now();
        d.sync(t).await?;
        walls.push(t0.elapsed());
        cost = Cost::default();
        add(&mut cost, t, before);
    }
    cost.wall_ms = ms(median(&walls));
    Ok(cost)
}

/// Device 0 records one keyring change and syncs; the others apply it;
/// everyone settles. `REPS` times; the server is measured after the first
/// change was sent.
async fn change(
    rig: &Rig,
    account: usize,
    devs: &mut [Device],
    ts: &mut [Session],
) -> Result<(Cost, Cost, Footprint)> {
    let (mut round, mut apply) = (Cost::default(), Cost::default());
    let (mut round_walls, mut apply_walls) = (Vec::new(), Vec::new());
    let mut after_change = None;
    for rep in 0..REPS {
        settle(devs, ts).await?;
        devs[0].observe_all(observations(&format!("chg{rep}x"), 1, 0, unix_now()))?;
        round = Cost::default();
        let before = begin(&mut ts[0]);
        let t0 = Instant::now();
        devs[0].sync(&mut ts[0]).await?;
        round_walls.push(t0.elapsed());
        add(&mut round, &mut ts[0], before);
        if after_change.is_none() {
            after_change = Some(server_footprint(rig, account).await?);
        }
        apply = Cost::default();
        let mut wall = Duration::ZERO;
        for (d, t) in devs.iter_mut().zip(ts.iter_mut()).skip(1) {
            let before = begin(t);
            let t0 = Instant::now();
            let r = d.sync(t).await?;
            wall += t0.elapsed();
            add(&mut apply, t, before);
            if r.applied == 0 {
                bail!("a device applied nothing in the round after a change");
            }
        }
        apply_walls.push(wall);
    }
    round.wall_ms = ms(median(&round_walls));
    apply.wall_ms = ms(median(&apply_walls));
    let after_change = after_change.context("no change measured")?;
    Ok((round, apply, after_change))
}

/// A founder with `n` keyring entries bootstraps a joiner; then the
/// founder's idle and one-change rounds and the joiner's applying round.
async fn keyring_point(
    rig: &Rig,
    account: usize,
    n: usize,
    key_bytes: usize,
) -> Result<KeyringPoint> {
    let (boot, mut a) = bootstrap::one(rig, account, n, key_bytes, true, Wait::Poll).await?;
    let mut b = Device::open(&rig.home(account, "b"))?;
    let mut ta = session(rig, account).await?;
    let mut tb = session(rig, account).await?;
    let idle = idle_round(&mut a, &mut ta).await?;
    let (mut round, mut apply) = (Cost::default(), Cost::default());
    let (mut round_walls, mut apply_walls) = (Vec::new(), Vec::new());
    for rep in 0..REPS {
        let target = b.core().group().keyring().len() + 1;
        a.observe_all(observations(&format!("kchg{rep}x"), 1, 0, unix_now()))?;
        round = Cost::default();
        let before = begin(&mut ta);
        let t0 = Instant::now();
        a.sync(&mut ta).await?;
        round_walls.push(t0.elapsed());
        add(&mut round, &mut ta, before);
        apply = Cost::default();
        let before = begin(&mut tb);
        let t0 = Instant::now();
        b.sync(&mut tb).await?;
        apply_walls.push(t0.elapsed());
        add(&mut apply, &mut tb, before);
        if b.core().group().keyring().len() != target {
            bail!("the joiner did not apply the change in one round");
        }
        // The acknowledgement back to the founder (not timed).
        a.sync(&mut ta).await?;
    }
    round.wall_ms = ms(median(&round_walls));
    apply.wall_ms = ms(median(&apply_walls));
    Ok(KeyringPoint {
        entries: n,
        bootstrap: boot,
        idle_round: idle,
        change_round: round,
        change_apply: apply,
    })
}

impl GrowthReport {
    /// Prints the growth figures as two plain tables on stdout.
    pub fn print_table(&self) {
        println!();
        println!(
            "growth by group size (wall ms / IMAP commands; median of {} runs)",
            self.reps
        );
        println!(
            "{:>7}  {:>13}  {:>13}  {:>11}  {:>13}  {:>13}  {:>13}  {:>17}",
            "devices",
            "send one",
            "broadcast",
            "idle round",
            "change round",
            "apply (all)",
            "join",
            "server msgs/KB"
        );
        let c = |c: &Cost| format!("{:.1} / {}", c.wall_ms, c.commands);
        for g in &self.groups {
            println!(
                "{:>7}  {:>13}  {:>13}  {:>11}  {:>13}  {:>13}  {:>13}  {:>17}",
                g.devices,
                c(&g.send_one),
                c(&g.broadcast),
                c(&g.idle_round),
                c(&g.change_round),
                c(&g.change_apply),
                c(&g.join),
                format!(
                    "{} / {:.0}",
                    g.footprint_settled.messages,
                    g.footprint_settled.bytes as f64 / 1000.0
                ),
            );
        }
        println!();
        println!("growth by keyring size (wall ms / IMAP commands)");
        println!(
            "{:>8}  {:>14}  {:>10}  {:>11}  {:>13}  {:>13}",
            "entries", "bootstrap ms", "boot MB", "idle round", "change round", "apply"
        );
        for k in &self.keyrings {
            println!(
                "{:>8}  {:>14.0}  {:>10.2}  {:>11}  {:>13}  {:>13}",
                k.entries,
                k.bootstrap.total_secs * 1000.0,
                k.bootstrap.bytes as f64 / 1e6,
                c(&k.idle_round),
                c(&k.change_round),
                c(&k.change_apply),
            );
        }
    }
}
