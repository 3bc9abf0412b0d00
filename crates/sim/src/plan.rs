//! The plan of a scenario (drawn from its seed) and the counters it reports.

use rand::Rng;
use sma_proto::folders::Layout;

use crate::clock::{ClockError, MAX_DRIFT_PPM, MAX_SKEW_MS};
use crate::net::Lacks;

/// Fault rates and sizes of one scenario, all drawn from the seed.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Honest devices (2–6).
    pub honest: usize,
    /// Whether a rogue device takes part.
    pub rogue: bool,
    /// Two devices found at the same time.
    pub founder_race: bool,
    /// The founder's layout.
    pub layout: Layout,
    /// Scheduling steps (granted commands) of the chaos phase.
    pub steps: usize,
    /// Per command: connection dropped before / after it takes effect.
    pub p_drop: f64,
    /// Per APPEND: stored twice.
    pub p_dup: f64,
    /// Per APPEND: delivered late.
    pub p_delay: f64,
    /// Per step: a device process is killed.
    pub p_crash: f64,
    /// Per step: a folder is deleted under the devices.
    pub p_delete_folder: f64,
    /// Per step: the provider deletes some messages of a folder.
    pub p_delete_msgs: f64,
    /// Per step: a folder's UIDVALIDITY changes.
    pub p_validity: f64,
    /// Per step: an old message is replayed.
    pub p_replay: f64,
    /// Per step and idle device: it starts an operation.
    pub p_start: f64,
    /// Whether members are removed and leave.
    pub lifecycle: bool,
    /// Per APPEND of a running `pair` or `join`: its process is killed
    /// right after it.
    pub p_pairing_crash: f64,
    /// Extensions the server does without.
    pub lacks: Lacks,
    /// How each slot's clock is wrong (empty: every device reads true
    /// time).
    pub clocks: Vec<ClockError>,
    /// Whether the scenario ends with months offline (virtual time to
    /// about 120 days; see [`crate::horizon`]).
    pub long_horizon: bool,
}

impl Plan {
    /// Draws a plan from the scenario's random source.
    pub fn draw(rng: &mut impl Rng) -> Plan {
        let level = |rng: &mut dyn rand::RngCore, levels: &[f64]| -> f64 {
            levels[rng.gen_range(0..levels.len())]
        };
        let mut plan = Plan {
            honest: rng.gen_range(2..=6),
            rogue: rng.gen_bool(0.3),
            founder_race: rng.gen_bool(0.15),
            layout: if rng.gen_bool(0.5) {
                Layout::Flat
            } else {
                Layout::Nested
            },
            // Mostly short scenarios (cheap seeds, many interleavings),
            // some long ones (deep histories).
            steps: if rng.gen_bool(0.7) {
                rng.gen_range(40..=120)
            } else {
                rng.gen_range(120..=320)
            },
            p_drop: level(rng, &[0.0, 0.001, 0.004, 0.01]),
            p_dup: level(rng, &[0.0, 0.02, 0.08]),
            p_delay: level(rng, &[0.0, 0.03, 0.1]),
            p_crash: level(rng, &[0.0, 0.005, 0.02]),
            p_delete_folder: level(rng, &[0.0, 0.0, 0.005, 0.015]),
            p_delete_msgs: level(rng, &[0.0, 0.01, 0.04]),
            p_validity: level(rng, &[0.0, 0.003, 0.01]),
            p_replay: level(rng, &[0.0, 0.01, 0.03]),
            p_start: level(rng, &[0.05, 0.15, 0.3]),
            lifecycle: rng.gen_bool(0.4),
            p_pairing_crash: level(rng, &[0.0, 0.1, 0.3]),
            // Drawn last, so the rest of a seed's plan stays as it was.
            lacks: Lacks {
                uidplus: rng.gen_bool(0.25),
                idle: rng.gen_bool(0.25),
                move_: rng.gen_bool(0.25),
            },
            clocks: Vec::new(),
            long_horizon: false,
        };
        // Drawn after the rest, so the other parts of a seed's plan stay
        // as they were. Half the seeds give every device a clock of its
        // own: off by up to ±36 h (often by the most), drifting by up to
        // ±1000 ppm, and on some devices stepped now and then.
        if rng.gen_bool(0.5) {
            let slots = plan.honest + usize::from(plan.rogue);
            plan.clocks = (0..slots)
                .map(|_| ClockError {
                    offset_ms: if rng.gen_bool(0.3) {
                        if rng.gen_bool(0.5) {
                            MAX_SKEW_MS
                        } else {
                            -MAX_SKEW_MS
                        }
                    } else {
                        rng.gen_range(-MAX_SKEW_MS..=MAX_SKEW_MS)
                    },
                    drift_ppm: rng.gen_range(-MAX_DRIFT_PPM..=MAX_DRIFT_PPM),
                    steps: rng.gen_bool(0.3),
                })
                .collect();
        }
        plan.long_horizon = rng.gen_bool(0.2);
        plan
    }
}

/// Counts of what happened, for the summary.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Commands granted.
    pub grants: u64,
    /// Operations finished, by success.
    pub ops_ok: u64,
    /// Operations that failed with an expected error.
    pub ops_failed: u64,
    /// Faults injected.
    pub faults: u64,
    /// Crashes.
    pub crashes: u64,
    /// Successful joins.
    pub joins: u64,
    /// Joiners that two members were pairing at once.
    pub concurrent_pairings: u64,
    /// `pair` runs that ended because the joiner took another member's
    /// request.
    pub withdrawn: u64,
    /// Application messages delivered.
    pub delivered: u64,
    /// Ops applied by sync rounds.
    pub applied: u64,
    /// Live members at the end.
    pub members: usize,
    /// Removals `remove` reported.
    pub removals: u64,
    /// Of those, with a new account key.
    pub rotations: u64,
    /// Ops applied that another member than their origin relayed.
    pub relayed: u64,
    /// Messages the provider deleted.
    pub messages_deleted: u64,
    /// Folders the provider deleted.
    pub folders_deleted: u64,
    /// Live members at the end that applied ops a removed device wrote
    /// after its removal (left out of the convergence check).
    pub tainted: usize,
    /// Extensions the server did without.
    pub lacks: Lacks,
    /// Hash of the whole schedule and every outcome (determinism check).
    pub trace_hash: u64,
    /// Operations finished (successfully or not), by kind.
    pub op_kinds: std::collections::BTreeMap<&'static str, u64>,
    /// Faults injected, by kind.
    pub fault_kinds: std::collections::BTreeMap<&'static str, u64>,
    /// Whether the devices' clocks were skewed.
    pub skewed: bool,
    /// The largest difference between two device clocks seen (ms).
    pub max_clock_gap_ms: u64,
    /// What the long-horizon phase observed.
    pub horizon: HorizonStats,
}

/// What the long-horizon phase observed (see [`crate::horizon`]).
#[derive(Clone, Debug, Default)]
pub struct HorizonStats {
    /// Whether it ran.
    pub ran: bool,
    /// Virtual days it covered.
    pub days: u64,
    /// Devices that came back after about 29, 61 and 89 days, caught up
    /// and were not expired.
    pub returned: [u64; 3],
    /// Devices expired by the policy (every live member holds them
    /// removed).
    pub expired: u64,
    /// Expired devices that, on their return, found themselves removed.
    pub learnt_removal: u64,
    /// Application messages older than 30 days (by the recipient's clock)
    /// deleted undelivered.
    pub too_old_dropped: u64,
    /// Application messages younger than 30 days delivered after a long
    /// absence.
    pub late_delivered: u64,
    /// Replays of delivered messages refused: within the 60-day memory of
    /// processed ids, and past it.
    pub replays_refused: [u64; 2],
}
