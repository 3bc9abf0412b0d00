//! Running one scenario from its seed: the plan drawn, the phases in
//! order, the final checks and the counters reported.

use std::collections::VecDeque;
use std::time::Duration;

use super::Sim;
use crate::ledger::{check_final, Ledger};
use crate::plan::{Plan, Stats};
use crate::world::World;

/// Runs the scenario of `seed` to the end. `dir` holds the device homes.
pub async fn run_scenario(
    seed: u64,
    dir: &std::path::Path,
) -> Result<Stats, (String, Vec<String>)> {
    let mut sim = Sim::new(seed, dir);
    let plan_line = format!("{:?}", sim.plan);
    sim.note(plan_line);
    let guarded = tokio::time::timeout(Duration::from_secs(365 * 86_400), sim.phases()).await;
    let r = match guarded {
        Ok(r) => r,
        Err(_) => Err("the scenario did not finish (virtual-time watchdog)".into()),
    };
    match r {
        Ok(()) => Ok(sim.final_stats()),
        Err(e) => Err((e, sim.trace.into_iter().collect())),
    }
}

impl Sim {
    /// The scenario of `seed`: its plan drawn, its world made in `dir`.
    fn new(seed: u64, dir: &std::path::Path) -> Sim {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed ^ 0x5eed);
        let plan = Plan::draw(&mut rng);
        let rogues = usize::from(plan.rogue);
        let mut sim = Sim {
            w: World::new(seed, dir, plan.honest, rogues, &plan.clocks),
            plan,
            ledger: Ledger::default(),
            offers: Vec::new(),
            faults_on: false,
            stats: Stats::default(),
            trace: VecDeque::new(),
            captured: Vec::new(),
            injected: 0,
            next_body: 0,
            rogue_acts: 0,
            lifecycle_ops: 0,
            folder_deletions: 0,
            crash_after: None,
            verbose: std::env::var_os("SIM_VERBOSE").is_some_and(|v| v != "0"),
            known_removed: Vec::new(),
            journal_seen: 0,
            cut_link: None,
        };
        sim.known_removed = vec![Default::default(); sim.w.slots.len()];
        sim.w.net.lock().lacks = sim.plan.lacks;
        sim.stats.lacks = sim.plan.lacks;
        sim.stats.skewed = !sim.plan.clocks.is_empty();
        sim
    }

    /// Every phase in order, with the final checks after quiescence (and
    /// again after the long horizon, if the plan has one).
    async fn phases(&mut self) -> Result<(), String> {
        let t0 = std::time::Instant::now();
        self.setup().await?;
        let t1 = std::time::Instant::now();
        self.chaos().await?;
        let t2 = std::time::Instant::now();
        self.calm().await?;
        self.late_pairings().await?;
        self.membership_chaos().await?;
        self.calm().await?;
        let t3 = std::time::Instant::now();
        self.quiesce().await?;
        let t4 = std::time::Instant::now();
        check_final(&self.w, &self.ledger)?;
        if self.plan.long_horizon {
            self.long_horizon().await?;
            self.quiesce().await?;
            check_final(&self.w, &self.ledger)?;
        }
        if self.verbose {
            eprintln!(
                "[sim] phases setup {:?} chaos {:?} calm {:?} quiesce {:?} check {:?}",
                t1 - t0,
                t2 - t1,
                t3 - t2,
                t4 - t3,
                t4.elapsed()
            );
        }
        Ok(())
    }

    /// The counters of a scenario that passed, with what the end state
    /// holds (members, tainted states).
    fn final_stats(mut self) -> Stats {
        if self.verbose {
            let d = self.w.net.lock().server.downloads.clone();
            eprintln!("[sim] downloads {d:?} stats {:?}", self.stats);
            eprintln!("[sim] costs {:?}", self.w.costs);
        }
        self.stats.members = self.w.slots.iter().filter(|s| s.is_member()).count();
        let all = crate::ledger::live_states(&self.w);
        let gone = self.ledger.gone(&all, &crate::ledger::departed(&self.w));
        self.stats.tainted = crate::ledger::tainted(&self.w, &gone).len();
        self.stats
    }
}
