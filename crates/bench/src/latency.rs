//! Delivery latency: device A sends an application message to B; time from
//! A's APPEND completing until B has verified, decrypted and delivered it.
//! The floor is the same IMAP stack moving an equal-size message with no
//! SMA logic.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use serde::Serialize;
use sma::{Device, Event};
use sma_imap::{ImapSession, Transport};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use crate::counting::Counting;
use crate::rig::{raw_message, Rig};
use crate::stats::Summary;

/// Messages sent before measuring (connection set-up, first IDLE).
const WARMUP: usize = 3;
/// Longest wait for one delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// In paced IDLE mode, pause between a delivery and the next send so that
/// the receiver is back in IDLE; back to back, the next message is sent
/// right after the delivery, while the receiver finishes its round (it
/// lands before or just after IDLE starts: Cyrus wakes the new IDLE at
/// once, Dovecot after its usual delay).
const IDLE_SETTLE: Duration = Duration::from_millis(100);
/// Floor folder for the latency runs, below the server's prefix.
const FLOOR_FOLDER: &str = "bench_floor_latency";

/// The floor's folder on the rig's server.
fn floor_folder(rig: &Rig) -> String {
    format!("{}{FLOOR_FOLDER}", rig.server.folder_prefix())
}

/// One mode (IDLE or immediate poll): product vs floor.
#[derive(Clone, Debug, Serialize)]
pub struct Compared {
    /// The product's delivery latency.
    pub product: Summary,
    /// The raw-IMAP floor.
    pub floor: Summary,
    /// product p50 / floor p50.
    pub ratio_p50: f64,
    /// product p50 − floor p50, in ms.
    pub overhead_p50_ms: f64,
    /// product p99 − floor p99, in ms.
    pub overhead_p99_ms: f64,
}

impl Compared {
    fn new(product: Summary, floor: Summary) -> Self {
        Compared {
            ratio_p50: if floor.p50_ms > 0.0 {
                product.p50_ms / floor.p50_ms
            } else {
                0.0
            },
            overhead_p50_ms: product.p50_ms - floor.p50_ms,
            overhead_p99_ms: product.p99_ms - floor.p99_ms,
            product,
            floor,
        }
    }
}

/// Every latency figure.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyReport {
    /// Size of the sealed message A appends (the floor appends as much).
    pub message_bytes: usize,
    /// Application body size.
    pub body_bytes: usize,
    /// B woken by IDLE, each message sent [`IDLE_SETTLE`] after the
    /// previous delivery.
    pub idle: Compared,
    /// B woken by IDLE, each message sent right after the previous
    /// delivery.
    pub idle_back_to_back: Compared,
    /// B fetching right after A's APPEND returned.
    pub poll: Compared,
    /// One IMAP round trip (NOOP) on this machine.
    pub noop_rtt: Summary,
    /// Transport calls of one product poll-mode delivery (B's side).
    pub poll_calls: Vec<&'static str>,
    /// Of each product poll-mode delivery, the time B spent waiting for
    /// IMAP commands; the rest of the delivery is local work (verification,
    /// decryption, the store commit).
    pub poll_imap: Summary,
}

fn body(i: usize, len: usize) -> Vec<u8> {
    let mut b = format!("{i:08}").into_bytes();
    b.resize(len.max(8), b'x');
    b
}

fn index_of(body_b64: &str) -> Option<usize> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(body_b64)
        .ok()?;
    std::str::from_utf8(raw.get(..8)?).ok()?.parse().ok()
}

/// Runs all four measurements on a paired (A, B) of `account`.
pub async fn run(
    rig: &Rig,
    account: usize,
    a: &mut Device,
    b: &mut Device,
    n: usize,
    body_len: usize,
) -> Result<LatencyReport> {
    let (poll_product, message_bytes, poll_calls, poll_imap) =
        product_poll(rig, account, a, b, n, body_len).await?;
    let poll_floor = floor_poll(rig, account, n, message_bytes).await?;
    let mut idle = Vec::new();
    for settle in [IDLE_SETTLE, Duration::ZERO] {
        let product = product_idle(rig, account, (a, b), (n, body_len), settle).await?;
        let floor = floor_idle(rig, account, (n, message_bytes), settle).await?;
        idle.push(Compared::new(Summary::of(&product), Summary::of(&floor)));
    }
    let noop_rtt = noop_rtt(rig, account, n).await?;
    let (Some(idle_back_to_back), Some(idle)) = (idle.pop(), idle.pop()) else {
        bail!("an IDLE pattern was not measured");
    };
    Ok(LatencyReport {
        message_bytes,
        body_bytes: body_len,
        idle,
        idle_back_to_back,
        poll: Compared::new(Summary::of(&poll_product), Summary::of(&poll_floor)),
        noop_rtt: Summary::of(&noop_rtt),
        poll_calls,
        poll_imap: Summary::of(&poll_imap),
    })
}

/// B runs `recv` with zero wait right after A's `send` returned.
async fn product_poll(
    rig: &Rig,
    account: usize,
    a: &mut Device,
    b: &mut Device,
    n: usize,
    body_len: usize,
) -> Result<(Vec<Duration>, usize, Vec<&'static str>, Vec<Duration>)> {
    let mut ta = Counting::new(rig.session(account).await?);
    let mut tb = Counting::new(rig.session(account).await?);
    let b_id = b.id().clone();
    let mut samples = Vec::with_capacity(n);
    let mut imap = Vec::with_capacity(n);
    let mut calls = Vec::new();
    for i in 0..WARMUP + n {
        a.send(&mut ta, Some(&b_id), "bench", &body(i, body_len))
            .await?;
        let sent = Instant::now();
        tb.take_log();
        let mut found = false;
        let mut delivered_at = sent;
        let mut busy = Duration::ZERO;
        for _ in 0..100 {
            let msgs = b.recv(&mut tb, Duration::ZERO).await?;
            delivered_at = Instant::now();
            busy = tb.log.busy_total();
            b.delivered(&msgs)?;
            if msgs.iter().any(|m| index_of(&m.body_b64) == Some(i)) {
                found = true;
                break;
            }
        }
        if !found {
            bail!("message {i} did not arrive at B after 100 immediate polls");
        }
        if i >= WARMUP {
            samples.push(delivered_at - sent);
            imap.push(busy);
        }
        if i + 1 == WARMUP + n {
            calls = tb.take_log().calls;
        }
    }
    let size = ta
        .log
        .appended
        .last()
        .map(|x| x.size)
        .ok_or_else(|| anyhow!("A appended nothing"))?;
    Ok((samples, size, calls, imap))
}

/// B runs the real `watch` loop (IDLE); A sends one message at a time,
/// `settle` after the previous delivery.
async fn product_idle(
    rig: &Rig,
    account: usize,
    (a, b): (&mut Device, &mut Device),
    (n, body_len): (usize, usize),
    settle: Duration,
) -> Result<Vec<Duration>> {
    let mut ta = rig.session(account).await?;
    let b_id = b.id().clone();
    let password = rig.password(account);
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let watch = b.watch(
        &password,
        move |ev| {
            if let Event::Message(m) = ev {
                let at = Instant::now();
                if let Some(i) = index_of(&m.body_b64) {
                    let _ = tx.send((i, at));
                }
            }
        },
        std::future::pending::<()>(),
    );
    let driver = async {
        // Let the watch loop finish its first round and enter IDLE.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut samples = Vec::with_capacity(n);
        for i in 0..WARMUP + n {
            tokio::time::sleep(settle).await;
            a.send(&mut ta, Some(&b_id), "bench", &body(i, body_len))
                .await?;
            let sent = Instant::now();
            loop {
                let (j, at) = timeout(DELIVERY_TIMEOUT, rx.recv())
                    .await
                    .with_context(|| format!("message {i} not delivered by watch within 60 s"))?
                    .ok_or_else(|| anyhow!("the watch loop ended"))?;
                if j == i {
                    if i >= WARMUP {
                        samples.push(at.saturating_duration_since(sent));
                    }
                    break;
                }
            }
        }
        Ok::<_, anyhow::Error>(samples)
    };
    tokio::select! {
        r = watch => bail!("the watch loop ended early: {r:?}"),
        d = driver => d,
    }
}

async fn floor_sessions(rig: &Rig, account: usize) -> Result<(ImapSession, ImapSession, u32)> {
    let mut fa = rig.session(account).await?;
    let mut fb = rig.session(account).await?;
    let folder = floor_folder(rig);
    fa.create(&folder).await?;
    let state = fb.select(&folder).await?;
    let next = state
        .uid_next
        .ok_or_else(|| anyhow!("the server sent no UIDNEXT"))?;
    Ok((fa, fb, next))
}

/// Floor, poll mode: APPEND on one connection, then SELECT + FETCH on another.
async fn floor_poll(rig: &Rig, account: usize, n: usize, size: usize) -> Result<Vec<Duration>> {
    let (mut fa, mut fb, _) = floor_sessions(rig, account).await?;
    let folder = floor_folder(rig);
    let mut samples = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
        let msg = raw_message(size, &format!("poll{i}"));
        let uid = fa
            .append(&folder, &[], &msg)
            .await?
            .ok_or_else(|| anyhow!("no APPENDUID"))?;
        let sent = Instant::now();
        fb.select(&folder).await?;
        let got = fb.fetch_messages(&[uid], u32::MAX).await?;
        if got.first().and_then(|m| m.body.as_ref()).map(Vec::len) != Some(size) {
            bail!("floor: message {uid} not fetched whole");
        }
        if i >= WARMUP {
            samples.push(sent.elapsed());
        }
    }
    Ok(samples)
}

/// Floor, IDLE mode: APPEND on one connection wakes an IDLE on another,
/// which then fetches the message; each APPEND `settle` after the
/// previous delivery.
async fn floor_idle(
    rig: &Rig,
    account: usize,
    (n, size): (usize, usize),
    settle: Duration,
) -> Result<Vec<Duration>> {
    let (mut fa, mut fb, next) = floor_sessions(rig, account).await?;
    let folder = floor_folder(rig);
    let (tx, mut rx) = mpsc::unbounded_channel::<(u32, Instant)>();
    let waiter = floor_waiter(&mut fb, next, tx);
    let driver = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut samples = Vec::with_capacity(n);
        for i in 0..WARMUP + n {
            let msg = raw_message(size, &format!("idle{i}"));
            tokio::time::sleep(settle).await;
            let uid = fa
                .append(&folder, &[], &msg)
                .await?
                .ok_or_else(|| anyhow!("no APPENDUID"))?;
            let sent = Instant::now();
            loop {
                let (u, at) = timeout(DELIVERY_TIMEOUT, rx.recv())
                    .await
                    .context("floor: IDLE did not wake within 60 s")?
                    .ok_or_else(|| anyhow!("floor waiter ended"))?;
                if u == uid {
                    if i >= WARMUP {
                        samples.push(at.saturating_duration_since(sent));
                    }
                    break;
                }
            }
        }
        Ok::<_, anyhow::Error>(samples)
    };
    tokio::select! {
        r = waiter => bail!("floor waiter ended early: {r:?}"),
        d = driver => d,
    }
}

/// IDLE until woken, then fetch the next message; forever.
async fn floor_waiter(
    fb: &mut ImapSession,
    mut next: u32,
    tx: mpsc::UnboundedSender<(u32, Instant)>,
) -> Result<()> {
    loop {
        fb.idle(Duration::from_secs(30)).await?;
        for m in fb.fetch_messages(&[next], u32::MAX).await? {
            let at = Instant::now();
            next = m.uid + 1;
            let _ = tx.send((m.uid, at));
        }
    }
}

/// One NOOP round trip.
async fn noop_rtt(rig: &Rig, account: usize, n: usize) -> Result<Vec<Duration>> {
    let mut s = rig.session(account).await?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
        let t = Instant::now();
        s.noop().await?;
        if i >= WARMUP {
            samples.push(t.elapsed());
        }
    }
    Ok(samples)
}
