//! Running a check and printing what it found: the number of states
//! explored, and each discovery as a numbered trace of named actions.

use std::collections::BTreeMap;
use std::fmt::{Debug, Write as _};
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stateright::{Checker, Expectation, Model, Path};

/// A model that counts the states it expanded: every state whose
/// properties the checker evaluated and whose successors it generated.
pub trait Explored {
    /// States expanded so far.
    fn explored(&self) -> usize;
}

/// A counter for [`Explored`], bumped in `Model::actions`.
#[derive(Debug, Default)]
pub struct Counter(AtomicUsize);

impl Counter {
    /// Counts one expanded state.
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// What one exhaustive check found.
pub struct Outcome<M: Model> {
    /// The bound: the most actions on a checked path.
    pub steps: usize,
    /// Distinct states explored: every property was evaluated on each.
    pub states: usize,
    /// Distinct states generated (those explored, and the successors of
    /// the last layer, which lie past the bound and are not checked).
    pub generated: usize,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Per property, its discovery (a counterexample for `always`, an
    /// example for `sometimes`).
    pub discoveries: BTreeMap<&'static str, Path<M::State, M::Action>>,
    /// Per property, its expectation.
    pub expectations: BTreeMap<&'static str, Expectation>,
}

impl<M: Model> Outcome<M> {
    /// Names of `always` properties with a counterexample.
    pub fn violated(&self) -> Vec<&'static str> {
        self.discoveries
            .keys()
            .filter(|p| self.expectations[*p] == Expectation::Always)
            .copied()
            .collect()
    }

    /// Names of `sometimes` properties without an example.
    pub fn never_seen(&self) -> Vec<&'static str> {
        self.expectations
            .iter()
            .filter(|(p, e)| **e == Expectation::Sometimes && !self.discoveries.contains_key(*p))
            .map(|(p, _)| *p)
            .collect()
    }

    /// A one-line summary.
    pub fn summary(&self, name: &str) -> String {
        format!(
            "{name}: {} states explored exhaustively (every path of up to {} steps; {} distinct \
             states generated), {} properties, {:.1} s",
            self.states,
            self.steps,
            self.generated,
            self.expectations.len(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Checks `model` breadth-first on every path of up to `steps` actions:
/// every state such a path reaches is checked against every property.
pub fn check<M>(model: M, steps: usize, threads: usize) -> Outcome<M>
where
    M: Model + Explored + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + Send + Sync + 'static,
    M::Action: Clone + Debug + Send + Sync + 'static,
{
    let started = Instant::now();
    let expectations = model
        .properties()
        .into_iter()
        .map(|p| (p.name, p.expectation))
        .collect();
    // stateright counts the initial state as depth 1 and skips (without
    // checking) a state at the target depth: steps + 2 checks every state
    // `steps` actions away.
    let checker = model
        .checker()
        .threads(threads.max(1))
        .target_max_depth(steps + 2)
        .spawn_bfs()
        .join();
    Outcome {
        steps,
        states: checker.model().explored(),
        generated: checker.unique_state_count(),
        elapsed: started.elapsed(),
        discoveries: checker.discoveries().into_iter().collect(),
        expectations,
    }
}

/// A path as numbered steps: each action, then what `describe` says about
/// the state it led to.
pub fn trace<S, A>(path: &Path<S, A>, describe: impl Fn(&S, &S) -> String) -> String
where
    S: Clone,
    A: Clone + Debug,
{
    let steps = path.clone().into_vec();
    let mut out = String::new();
    for (i, pair) in steps.windows(2).enumerate() {
        let (before, action) = &pair[0];
        let (after, _) = &pair[1];
        let Some(action) = action else { continue };
        let _ = writeln!(out, "{:>3}. {action:?}", i + 1);
        for line in describe(before, after).lines() {
            let _ = writeln!(out, "       {line}");
        }
    }
    out
}

/// Number of worker threads: `MODEL_THREADS`, else the machine's cores
/// (at most 2: the CI machine has two, shared).
pub fn threads() -> usize {
    env_usize("MODEL_THREADS").unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(2)
    })
}

/// A positive integer from the environment.
pub fn env_usize(var: &str) -> Option<usize> {
    std::env::var(var)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
}
