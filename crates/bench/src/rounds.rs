//! IMAP round trips of a sync round in which nothing changed.

use anyhow::Result;
use serde::Serialize;
use sma::Device;
use tokio::time::Instant;

use crate::counting::Counting;
use crate::rig::Rig;
use crate::stats::ms;

/// The idle-round figures.
#[derive(Clone, Debug, Serialize)]
pub struct IdleRound {
    /// IMAP commands one `Device::sync` sent (`ImapSession::commands_sent`).
    pub commands: u64,
    /// The transport calls it made, in order.
    pub calls: Vec<&'static str>,
    /// Its wall time (median of the measured rounds), ms.
    pub wall_ms: f64,
}

/// Measures one idle `sync` of `dev` (after two settling rounds), `repeat`
/// times; reports the commands of the last and the median wall time.
pub async fn run(rig: &Rig, account: usize, dev: &mut Device, repeat: usize) -> Result<IdleRound> {
    let mut t = Counting::new(rig.session(account).await?);
    dev.sync(&mut t).await?;
    dev.sync(&mut t).await?;
    let mut walls = Vec::new();
    let mut commands = 0;
    let mut calls = Vec::new();
    for _ in 0..repeat.max(1) {
        t.take_log();
        let before = t.commands_sent();
        let start = Instant::now();
        dev.sync(&mut t).await?;
        walls.push(start.elapsed());
        commands = t.commands_sent() - before;
        calls = t.take_log().calls;
    }
    Ok(IdleRound {
        commands,
        calls,
        wall_ms: ms(crate::stats::median(&walls)),
    })
}
