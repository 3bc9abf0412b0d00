//! The simulation sweep: many seeds, each a full scenario with faults and
//! every invariant checked (see docs/RELIABILITY.md).
//!
//! * `SIM_SEEDS=N` sets how many seeds `sweep` runs (default below),
//!   `SIM_SEED_START=S` where they start (default 0).
//! * `SIM_SEED=S cargo test -p sma-sim --test sim replay -- --nocapture`
//!   replays one seed; without `SIM_SEED`, `replay` runs the regression
//!   seeds in `crates/sim/regressions.txt`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Seeds per run of the test suite (and so per CI run): about 12 minutes in
/// the dev profile on 2 cores. `SIM_SEEDS=3000` is a quicker local run;
/// see docs/RELIABILITY.md for longer sweeps.
const DEFAULT_SEEDS: u64 = 10_000;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// Seeds of bugs found and fixed, with what they found.
fn regression_seeds() -> Vec<u64> {
    let text = include_str!("../regressions.txt");
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.parse()
                .unwrap_or_else(|_| panic!("bad regression seed {l:?}"))
        })
        .collect()
}

/// How many seeds exercised each feature the invariants are about.
#[derive(Debug, Default)]
struct Coverage {
    seeds: u64,
    removal: u64,
    rotation: u64,
    relay: u64,
    join: u64,
    message_deletion: u64,
    folder_deletion: u64,
    tainted: u64,
    no_uidplus: u64,
    no_idle: u64,
    no_move: u64,
}

impl Coverage {
    fn add(&mut self, s: &sma_sim::Stats) {
        self.seeds += 1;
        self.removal += u64::from(s.removals > 0);
        self.rotation += u64::from(s.rotations > 0);
        self.relay += u64::from(s.relayed > 0);
        self.join += u64::from(s.joins > 0);
        self.message_deletion += u64::from(s.messages_deleted > 0);
        self.folder_deletion += u64::from(s.folders_deleted > 0);
        self.tainted += u64::from(s.tainted > 0);
        self.no_uidplus += u64::from(s.lacks.uidplus);
        self.no_idle += u64::from(s.lacks.idle);
        self.no_move += u64::from(s.lacks.move_);
    }

    /// Fails unless each feature was exercised by at least the given share
    /// of the seeds (a sweep that never removes anyone proves nothing about
    /// removal).
    fn assert_at_least(&self) {
        let share = |n: u64| n as f64 / self.seeds.max(1) as f64;
        for (what, n, min) in [
            ("remove", self.removal, 0.10),
            ("account-key rotation", self.rotation, 0.04),
            ("relay", self.relay, 0.06),
            ("join", self.join, 0.50),
            ("message deletion", self.message_deletion, 0.30),
            ("folder deletion", self.folder_deletion, 0.10),
            ("a server without UIDPLUS", self.no_uidplus, 0.15),
            ("a server without IDLE", self.no_idle, 0.15),
            ("a server without MOVE", self.no_move, 0.15),
        ] {
            assert!(
                share(n) >= min,
                "only {n} of {} seeds exercised {what} (want at least {:.0}%): {self:?}",
                self.seeds,
                min * 100.0
            );
        }
    }
}

/// Runs `seeds` on all cores; returns the failures and the coverage.
fn run_all(seeds: &[u64]) -> (Vec<sma_sim::Failure>, Coverage) {
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let coverage = Mutex::new(Coverage::default());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst) as usize;
                let Some(&seed) = seeds.get(k) else { return };
                match sma_sim::run_seed(seed) {
                    Ok(stats) => coverage.lock().unwrap().add(&stats),
                    Err(f) => {
                        eprintln!("{}", f.summary());
                        failures.lock().unwrap().push(f);
                    }
                }
            });
        }
    });
    (
        failures.into_inner().unwrap(),
        coverage.into_inner().unwrap(),
    )
}

#[test]
fn sweep() {
    let n = env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let start = env_u64("SIM_SEED_START").unwrap_or(0);
    let seeds: Vec<u64> = (start..start + n).collect();
    let t = Instant::now();
    let (failures, coverage) = run_all(&seeds);
    eprintln!(
        "simulated {n} seeds from {start} in {:.1} s; coverage {coverage:?}",
        t.elapsed().as_secs_f64()
    );
    if let Some(first) = failures.iter().min_by_key(|f| f.seed) {
        panic!(
            "{} of {n} seeds failed; the smallest:\n{first}",
            failures.len()
        );
    }
    if n >= 200 {
        coverage.assert_at_least();
    }
}

/// With `SIM_VERBOSE=1`, also the driver's log (filter in `SMA_LOG`,
/// default: debug for sma's crates, warnings for the others).
fn driver_log() {
    if std::env::var_os("SIM_VERBOSE").is_some_and(|v| v != "0") {
        let filter = tracing_subscriber::EnvFilter::try_from_env("SMA_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,sma=debug,sma_proto=debug,sma_imap=info")
        });
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(false)
            .try_init();
    }
}

#[test]
fn replay() {
    driver_log();
    let seeds = match env_u64("SIM_SEED") {
        Some(s) => vec![s],
        None => regression_seeds(),
    };
    assert!(!seeds.is_empty(), "no seed to replay");
    for seed in seeds {
        match sma_sim::run_seed(seed) {
            Ok(stats) => eprintln!("seed {seed} passed: {stats:?}"),
            Err(f) => panic!("{f}"),
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    for seed in [3, 17, 4242] {
        let a = sma_sim::run_seed(seed).unwrap_or_else(|f| panic!("{f}"));
        let b = sma_sim::run_seed(seed).unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "seed {seed} ran differently twice: the simulation is not deterministic"
        );
        assert_eq!(a.grants, b.grants);
    }
}
