//! The simulation sweep: many seeds, each a full scenario with faults and
//! every invariant checked (see docs/RELIABILITY.md).
//!
//! * `SIM_SEEDS=N` sets how many seeds `sweep` runs (default below),
//!   `SIM_SEED_START=S` where they start (default 0).
//! * `SIM_SEED=S cargo test -p sma-sim --test sim replay -- --nocapture`
//!   replays one seed; without `SIM_SEED`, `replay` runs the regression
//!   seeds in `crates/sim/regressions.txt`.

use std::collections::BTreeMap;
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
    /// Seeds where two members paired one joiner at once, and where a
    /// `pair` ended because the joiner took the other member's request.
    concurrent_pairing: u64,
    withdrawn: u64,
    relay: u64,
    join: u64,
    message_deletion: u64,
    folder_deletion: u64,
    tainted: u64,
    no_uidplus: u64,
    no_idle: u64,
    no_move: u64,
    /// Seeds whose devices' clocks were skewed, and the largest gap
    /// between two device clocks any of them saw (hours).
    skewed: u64,
    max_clock_gap_h: u64,
    /// Seeds that ran the long horizon, and what it observed (seeds each).
    long_horizon: u64,
    returned_29: u64,
    returned_61: u64,
    returned_89: u64,
    expired: u64,
    learnt_removal: u64,
    too_old_dropped: u64,
    late_delivered: u64,
    replay_within_60d: u64,
    replay_past_60d: u64,
    /// Per operation kind: (seeds, operations finished).
    ops: BTreeMap<&'static str, (u64, u64)>,
    /// Per fault kind: (seeds, faults injected).
    faults: BTreeMap<&'static str, (u64, u64)>,
}

/// Every operation kind the sweep must exercise, with the least share of
/// seeds that must run it.
const OPS: [(&str, f64); 8] = [
    ("init", 0.99),
    ("sync", 0.99),
    ("recv", 0.90),
    ("send", 0.50),
    ("pair", 0.60),
    ("join", 0.50),
    ("remove", 0.10),
    ("leave", 0.02),
];

/// Every fault kind the sweep must inject, with the least share of seeds
/// that must see it.
const FAULTS: [(&str, f64); 13] = [
    ("drop before", 0.20),
    ("drop after", 0.20),
    ("duplicate append", 0.20),
    ("late append", 0.25),
    ("crash", 0.40),
    ("crash after a pairing append", 0.15),
    ("folder deletion", 0.25),
    ("message deletion", 0.35),
    ("uidvalidity reset", 0.30),
    ("replay", 0.40),
    ("cut link", 0.12),
    ("rogue forgery", 0.12),
    ("wall-clock jump", 0.35),
];

impl Coverage {
    fn add(&mut self, s: &sma_sim::Stats) {
        self.seeds += 1;
        self.removal += u64::from(s.removals > 0);
        self.rotation += u64::from(s.rotations > 0);
        self.concurrent_pairing += u64::from(s.concurrent_pairings > 0);
        self.withdrawn += u64::from(s.withdrawn > 0);
        self.relay += u64::from(s.relayed > 0);
        self.join += u64::from(s.joins > 0);
        self.message_deletion += u64::from(s.messages_deleted > 0);
        self.folder_deletion += u64::from(s.folders_deleted > 0);
        self.tainted += u64::from(s.tainted > 0);
        self.no_uidplus += u64::from(s.lacks.uidplus);
        self.no_idle += u64::from(s.lacks.idle);
        self.no_move += u64::from(s.lacks.move_);
        self.skewed += u64::from(s.skewed);
        self.max_clock_gap_h = self.max_clock_gap_h.max(s.max_clock_gap_ms / 3_600_000);
        let h = &s.horizon;
        self.long_horizon += u64::from(h.ran);
        self.returned_29 += u64::from(h.returned[0] > 0);
        self.returned_61 += u64::from(h.returned[1] > 0);
        self.returned_89 += u64::from(h.returned[2] > 0);
        self.expired += u64::from(h.expired > 0);
        self.learnt_removal += u64::from(h.learnt_removal > 0);
        self.too_old_dropped += u64::from(h.too_old_dropped > 0);
        self.late_delivered += u64::from(h.late_delivered > 0);
        self.replay_within_60d += u64::from(h.replays_refused[0] > 0);
        self.replay_past_60d += u64::from(h.replays_refused[1] > 0);
        for (k, n) in &s.op_kinds {
            let e = self.ops.entry(k).or_default();
            e.0 += 1;
            e.1 += n;
        }
        for (k, n) in &s.fault_kinds {
            let e = self.faults.entry(k).or_default();
            e.0 += 1;
            e.1 += n;
        }
    }

    /// Fails unless each feature was exercised by at least the given share
    /// of the seeds (a sweep that never removes anyone proves nothing about
    /// removal).
    fn assert_at_least(&self) {
        let share = |n: u64| n as f64 / self.seeds.max(1) as f64;
        let steps = self.faults.get("device clock step").map_or(0, |e| e.0);
        assert!(
            steps * 10 >= self.skewed,
            "only {steps} of {} skewed seeds stepped a device clock: {self:?}",
            self.skewed
        );
        assert!(
            self.skewed == 0 || self.max_clock_gap_h >= 70,
            "device clocks never were 70 hours apart: {self:?}"
        );
        for (what, n, min) in [
            ("remove", self.removal, 0.10),
            ("account-key rotation", self.rotation, 0.04),
            (
                "two members pairing one joiner",
                self.concurrent_pairing,
                0.15,
            ),
            ("a pair withdrawn", self.withdrawn, 0.15),
            ("relay", self.relay, 0.06),
            ("join", self.join, 0.50),
            ("message deletion", self.message_deletion, 0.30),
            ("folder deletion", self.folder_deletion, 0.10),
            ("a server without UIDPLUS", self.no_uidplus, 0.15),
            ("a server without IDLE", self.no_idle, 0.15),
            ("a server without MOVE", self.no_move, 0.15),
            ("skewed device clocks", self.skewed, 0.40),
            ("the long horizon", self.long_horizon, 0.10),
            ("a return after 29 days", self.returned_29, 0.05),
            ("a return after 61 days", self.returned_61, 0.05),
            ("a return after 89 days", self.returned_89, 0.05),
            ("expiry past the policy", self.expired, 0.04),
            (
                "an expired device learning its removal",
                self.learnt_removal,
                0.04,
            ),
            ("a message too old to deliver", self.too_old_dropped, 0.06),
            ("a late message delivered", self.late_delivered, 0.06),
            ("a replay within 60 days", self.replay_within_60d, 0.08),
            ("a replay past 60 days", self.replay_past_60d, 0.08),
        ]
        .into_iter()
        .chain(
            OPS.iter()
                .map(|&(k, min)| (k, self.ops.get(k).map_or(0, |e| e.0), min)),
        )
        .chain(
            FAULTS
                .iter()
                .map(|&(k, min)| (k, self.faults.get(k).map_or(0, |e| e.0), min)),
        ) {
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
