//! Bootstrap: pairing a new device into a group whose keyring holds many
//! peers, versus raw transfer of the same bytes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;
use sma::clock::OffsetClock;
use sma::Device;
use sma_imap::Transport;
use tokio::time::Instant;

use crate::counting::Counting;
use crate::rig::{observations, pair, unix_now, Rig};
use crate::throughput::floor;

/// How far in the past the "aged" group's history lies: beyond the 7 days
/// for which acknowledged ops are kept for late joiners.
const AGE_SECS: i64 = 8 * 86_400;

/// One bootstrap.
#[derive(Clone, Debug, Serialize)]
pub struct BootstrapRun {
    /// Ops still in the founder's sync log when pairing started.
    pub log_ops_before: usize,
    /// `pair` + `join` wall time, seconds (includes two IDLE wake-ups).
    pub pair_secs: f64,
    /// Then sync rounds until nothing more is sent, seconds.
    pub catch_up_secs: f64,
    /// pair_secs + catch_up_secs.
    pub total_secs: f64,
    /// Messages appended (both devices, pairing and catch-up).
    pub messages: usize,
    /// Bytes appended.
    pub bytes: usize,
    /// Largest message (the welcome).
    pub max_message_bytes: usize,
    /// Bytes appended during catch-up only.
    pub catch_up_bytes: usize,
    /// Raw APPEND + SELECT + FETCH of the same message sizes, seconds.
    pub floor_secs: f64,
    /// total_secs / floor_secs.
    pub ratio: f64,
    /// Peers in the joiner's keyring afterwards.
    pub joiner_peers: usize,
    /// Each wait for a change during pairing, seconds: the member's, the joiner's.
    pub waits: [Vec<f64>; 2],
}

/// The bootstraps.
#[derive(Clone, Debug, Serialize)]
pub struct BootstrapReport {
    /// Peers in the keyring.
    pub peers: usize,
    /// Bytes of each peer's key (base64 keydata is 4/3 of this).
    pub key_bytes: usize,
    /// The keyring was built more than 7 days ago (sync log pruned): the
    /// steady state of a group with a large keyring. Waits use IMAP IDLE.
    pub aged: BootstrapRun,
    /// The same with waits polling (re-SELECT) every 2 ms instead of IDLE:
    /// the product's own cost without Dovecot's IDLE notification delay.
    pub aged_poll: BootstrapRun,
    /// The keyring was recorded just now: its ops are still in the log and
    /// are sent again after the welcome (IDLE).
    pub fresh: Option<BootstrapRun>,
}

/// How waiting is done during a bootstrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// IMAP IDLE, as the product does.
    Idle,
    /// Re-SELECT every 2 ms, comparing UIDNEXT.
    Poll,
}

/// Sets up a founder on `account` with `n` keyed peers (history aged or
/// fresh) and a pending device `b`, pairs them and lets them catch up.
/// Returns the figures and the founder (the joiner's home is
/// `rig.home(account, "b")`).
pub async fn one(
    rig: &Rig,
    account: usize,
    n: usize,
    key_bytes: usize,
    aged: bool,
    wait: Wait,
) -> Result<(BootstrapRun, Device)> {
    let wrap = |s| match wait {
        Wait::Idle => Counting::new(s),
        Wait::Poll => Counting::polling(s, Duration::from_millis(2)),
    };
    let mut a = founder(rig, account, n, key_bytes, aged).await?;
    let mut ta = wrap(rig.session(account).await?);
    // Heartbeat, and with no peer yet, pruning of old acknowledged ops.
    a.sync(&mut ta).await?;
    let log_ops_before = a.core().book().log().len();
    let mut b = rig.init_device(account, "b").await?;
    let mut tb = wrap(rig.session(account).await?);
    ta.take_log();
    tb.take_log();
    let start = Instant::now();
    pair(&mut a, &mut ta, &mut b, &mut tb).await?;
    let pair_secs = start.elapsed().as_secs_f64();
    let (la, lb) = (ta.take_log(), tb.take_log());
    let secs = |w: &[Duration]| w.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
    let waits = [secs(&la.waits), secs(&lb.waits)];
    let mut sequence: Vec<(bool, usize)> = Vec::new();
    sequence.extend(la.appended.iter().map(|x| (true, x.size)));
    sequence.extend(lb.appended.iter().map(|x| (false, x.size)));
    let pair_msgs = sequence.len();
    let start = Instant::now();
    catch_up(
        (&mut a, &mut ta),
        (&mut b, &mut tb),
        50 + n / 100,
        &mut sequence,
    )
    .await?;
    let catch_up_secs = start.elapsed().as_secs_f64();
    let total_secs = pair_secs + catch_up_secs;
    let floor_secs = floor(rig, account, &sequence).await?;
    let bytes = sequence.iter().map(|x| x.1).sum();
    Ok((
        BootstrapRun {
            log_ops_before,
            pair_secs,
            catch_up_secs,
            total_secs,
            messages: sequence.len(),
            bytes,
            max_message_bytes: sequence.iter().map(|x| x.1).max().unwrap_or(0),
            catch_up_bytes: sequence[pair_msgs..].iter().map(|x| x.1).sum(),
            floor_secs,
            ratio: total_secs / floor_secs,
            joiner_peers: b.core().group().keyring().len(),
            waits,
        },
        a,
    ))
}

/// The founder `a` of `account` with `n` keyed peers observed, their
/// history `aged` (recorded [`AGE_SECS`] ago) or fresh.
async fn founder(
    rig: &Rig,
    account: usize,
    n: usize,
    key_bytes: usize,
    aged: bool,
) -> Result<Device> {
    if !aged {
        let mut a = rig.init_device(account, "a").await?;
        a.observe_all(observations("boot", n, key_bytes, unix_now()))?;
        return Ok(a);
    }
    let clock = Arc::new(OffsetClock {
        offset_secs: -AGE_SECS,
    });
    let mut old = rig.init_device_with_clock(account, "a", clock).await?;
    let then = unix_now().saturating_sub(AGE_SECS as u64);
    old.observe_all(observations("boot", n, key_bytes, then))?;
    drop(old);
    Ok(Device::open(&rig.home(account, "a"))?)
}

/// Syncs both devices in turns until two rounds in a row append nothing
/// (at most `max_rounds`), adding what each appended to `sequence`
/// (`true` for the first device).
async fn catch_up<T: Transport>(
    (a, ta): (&mut Device, &mut Counting<T>),
    (b, tb): (&mut Device, &mut Counting<T>),
    max_rounds: usize,
    sequence: &mut Vec<(bool, usize)>,
) -> Result<()> {
    let mut quiet = 0;
    let mut rounds = 0;
    while quiet < 2 {
        rounds += 1;
        if rounds > max_rounds {
            bail!("bootstrap catch-up did not settle after {rounds} rounds");
        }
        a.sync(ta).await?;
        b.sync(tb).await?;
        let la = ta.take_log().appended;
        let lb = tb.take_log().appended;
        quiet = if la.is_empty() && lb.is_empty() {
            quiet + 1
        } else {
            0
        };
        sequence.extend(la.iter().map(|x| (true, x.size)));
        sequence.extend(lb.iter().map(|x| (false, x.size)));
    }
    Ok(())
}
