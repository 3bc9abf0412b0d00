//! The background watch of `sma serve`: like `sma watch`, but the device
//! lock is held only during a sync round, never while waiting in IDLE, so
//! requests keep being answered. Events go out as `event` notifications.

use sma::round::{HEARTBEAT_ON_START_SECS, HEARTBEAT_SECS, WATCH_POLL};
use sma::Event;
use sma::{Session, SessionConfig};
use sma_imap::{Backoff, Transport};

use super::protocol::RpcError;
use super::server::{Shared, WatchTask};
use crate::views::WatchStopped;

/// The pause before a JMAP device's watch opens a new session after a
/// network or server failure.
const JMAP_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts the watch unless it runs already.
pub(super) async fn start(shared: &Shared) -> Result<(), RpcError> {
    let mut slot = shared.watch.lock().await;
    if slot.as_ref().is_some_and(|w| !w.handle.is_finished()) {
        return Ok(());
    }
    // Resolve the settings now, so that a missing password is this
    // request's error rather than a notification.
    let config = {
        let mut g = shared.core.lock().await;
        let password = g.password()?;
        let dev = g.device()?;
        dev.session_config(&password)?
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let s = shared.clone();
    let handle = tokio::spawn(async move {
        if let Err(e) = run(&s, config, stop_rx).await {
            let kind = e
                .data
                .as_ref()
                .and_then(|d| d.get("kind"))
                .and_then(|k| k.as_str())
                .map(str::to_owned);
            let stopped = WatchStopped::new(e.code, e.message, kind);
            if let Err(unsent) = s.event(&stopped) {
                // Nobody to answer: the log is the only place left.
                tracing::error!(error = %unsent.message, watch_error = %stopped.error, "watch: cannot report that the watch stopped");
            }
        }
    });
    *slot = Some(WatchTask { stop, handle });
    Ok(())
}

async fn run(
    s: &Shared,
    config: SessionConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), RpcError> {
    let mut t = tokio::select! {
        r = config.connect() => r.map_err(sma::Error::from)?,
        _ = stop.changed() => return Ok(()),
    };
    let mut heartbeat_after = HEARTBEAT_ON_START_SECS;
    // Whether the step's error was a network failure: a JMAP session has
    // no connection that `is_lost` could report, so its errors say it.
    let transient = std::sync::atomic::AtomicBool::new(false);
    let note = |e: sma::Error| {
        if matches!(&e, sma::Error::Imap(i) if i.is_transient()) {
            transient.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        e
    };
    loop {
        transient.store(false, std::sync::atomic::Ordering::Relaxed);
        let step = async {
            let inbox = {
                let mut g = s.core.lock().await;
                let dev = g.device()?;
                // Handed out once the inbox pass is committed, before the
                // server deletes what it processed (as `sma watch` does).
                let mut handed_out: Result<(), RpcError> = Ok(());
                dev.sync_round_handing_out(&mut t, heartbeat_after, |dev, events| {
                    let msgs = dev.pending_messages()?;
                    let all = events.iter().cloned();
                    for e in all.chain(msgs.iter().cloned().map(Event::Message)) {
                        if let Err(unsent) = s.event(&e) {
                            handed_out = Err(unsent);
                            return Ok(());
                        }
                    }
                    dev.delivered(&msgs)
                })
                .await
                .map_err(note)?;
                handed_out?;
                dev.inbox()
            };
            t.select(&inbox)
                .await
                .map_err(|e| note(sma::Error::from(e)))?;
            t.idle_until(WATCH_POLL, s.kick.notified())
                .await
                .map_err(|e| note(sma::Error::from(e)))?;
            Ok::<(), RpcError>(())
        };
        let result = tokio::select! {
            r = step => r,
            _ = stop.changed() => return Ok(()),
        };
        heartbeat_after = HEARTBEAT_SECS;
        if let Err(e) = result {
            let jmap_failed = !t.is_imap() && transient.load(std::sync::atomic::Ordering::Relaxed);
            if !t.is_lost() && !jmap_failed {
                return Err(e);
            }
            tracing::warn!(error = %e.message, "watch: connection lost; reconnecting");
            let Some((again, attempts)) = reconnect(&config, jmap_failed, &mut stop).await? else {
                return Ok(());
            };
            t = again;
            s.event(&Event::Reconnected {
                attempts: attempts + 1,
            })?;
        }
    }
}

/// A new session after a lost one (after a pause if it was a JMAP
/// failure: a server that answers the session but fails every call must
/// not make the loop spin), with the attempts it took; `None` once `stop`
/// changes.
async fn reconnect(
    config: &SessionConfig,
    jmap_failed: bool,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Option<(Session, u32)>, RpcError> {
    if jmap_failed {
        tokio::select! {
            () = tokio::time::sleep(JMAP_RETRY_PAUSE) => {}
            _ = stop.changed() => return Ok(None),
        }
    }
    let mut attempts = 0u32;
    let mut backoff = Backoff::default();
    let again = config.connect_with_retry(&mut backoff, u32::MAX, |n, _, _| {
        attempts = n;
    });
    let t = tokio::select! {
        r = again => r.map_err(sma::Error::from)?,
        _ = stop.changed() => return Ok(None),
    };
    Ok(Some((t, attempts)))
}
