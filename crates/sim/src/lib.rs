//! # sma-sim — deterministic simulation of sma devices
//!
//! Runs 2–6 real [`sma::Device`]s (the real driver, store and protocol
//! core) against an in-memory IMAP server behind the same
//! [`sma_imap::Transport`] trait as the real session, on a single-threaded
//! tokio runtime with paused (virtual) time, from one `u64` seed:
//!
//! * [`server`]: the IMAP server model (per-folder UIDs and UIDVALIDITY,
//!   APPENDUID, EXPUNGE, CREATE/DELETE semantics, STATUS, header search,
//!   IDLE wake-ups);
//! * [`net`]: every command waits at a gate where the scheduler decides the
//!   interleaving and the faults (connection dropped before or after the
//!   command took effect, duplicated or late APPEND);
//! * [`world`]: device slots and the operations they run (init, pair with
//!   right and wrong codes, join, sync, send, recv), crash and restart from
//!   the home;
//! * [`scenario`]: the seeded plan and its phases; [`ledger`]: the
//!   invariants; [`taint`]: the members they leave out of convergence.
//!
//! A failing seed is replayed with
//! `SIM_SEED=<seed> cargo test -p sma-sim --test sim replay`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
mod collect;
mod faults;
mod horizon;
pub mod ledger;
pub mod net;
pub mod plan;
pub mod scenario;
pub mod server;
pub mod taint;
pub mod world;

use std::path::PathBuf;

pub use scenario::Stats;

/// Why a seed failed.
#[derive(Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// What went wrong.
    pub reason: String,
    /// The last scheduling decisions and outcomes before the failure.
    pub trace: Vec<String>,
}

impl Failure {
    /// The reason's first line and the command that replays the seed.
    pub fn summary(&self) -> String {
        format!(
            "seed {} failed: {}\n  replay with: SIM_SEED={} cargo test -p sma-sim --test sim replay -- --nocapture",
            self.seed,
            self.reason.lines().next().unwrap_or_default(),
            self.seed
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {} failed: {}", self.seed, self.reason)?;
        writeln!(f, "last steps:")?;
        for l in &self.trace {
            writeln!(f, "  {l}")?;
        }
        write!(
            f,
            "replay with: SIM_SEED={} cargo test -p sma-sim --test sim replay -- --nocapture",
            self.seed
        )
    }
}

/// Where device homes go: memory-backed when available (SQLite syncs every
/// transaction).
fn scratch_root() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

/// Runs the scenario of one seed to the end and checks every invariant.
/// A panic anywhere in the driver is reported as a failure of the seed.
pub fn run_seed(seed: u64) -> Result<Stats, Failure> {
    let fail = |reason: String, trace: Vec<String>| Failure {
        seed,
        reason,
        trace,
    };
    let dir = tempfile::Builder::new()
        .prefix("sma-sim-")
        .tempdir_in(scratch_root())
        .map_err(|e| fail(format!("cannot create a scratch directory: {e}"), vec![]))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| fail(format!("cannot build the runtime: {e}"), vec![]))?;
    let path = dir.path().to_owned();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(scenario::run_scenario(seed, &path))
    }));
    match outcome {
        Ok(Ok(stats)) => Ok(stats),
        Ok(Err((reason, trace))) => Err(fail(reason, trace)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err(fail(format!("panicked: {msg}"), vec![]))
        }
    }
}
