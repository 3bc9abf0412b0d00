//! Running a check and printing what it found: the number of states
//! explored, and each discovery as a numbered trace of named actions.

use std::collections::BTreeMap;
use std::fmt::{Debug, Write as _};
use std::hash::Hash;
use std::time::{Duration, Instant};

use stateright::{Checker, Expectation, Model, Path};

/// What one exhaustive check found.
pub struct Outcome<M: Model> {
    /// Distinct states explored.
    pub states: usize,
    /// States generated, repeats included.
    pub generated: usize,
    /// Deepest path explored.
    pub depth: usize,
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
            "{name}: {} distinct states explored ({} generated), depth {}, {:.1} s",
            self.states,
            self.generated,
            self.depth,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Checks `model` breadth-first up to `depth` actions (every state with a
/// shorter path is checked against every property).
pub fn check<M>(model: M, depth: usize, threads: usize) -> Outcome<M>
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + Send + Sync + 'static,
    M::Action: Clone + Debug + Send + Sync + 'static,
{
    let started = Instant::now();
    let expectations = model
        .properties()
        .into_iter()
        .map(|p| (p.name, p.expectation))
        .collect();
    let checker = model
        .checker()
        .threads(threads.max(1))
        .target_max_depth(depth)
        .spawn_bfs()
        .join();
    Outcome {
        states: checker.unique_state_count(),
        generated: checker.state_count(),
        depth: checker.max_depth(),
        elapsed: started.elapsed(),
        discoveries: checker.discoveries().into_iter().collect(),
        expectations,
    }
}

/// A path as numbered steps: each action, then what `describe` says about
/// the state it led to.
pub fn trace<S, A: Debug>(path: &Path<S, A>, describe: impl Fn(&S, &S) -> String) -> String
where
    S: Clone,
    A: Clone,
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
    std::env::var(var).ok()?.trim().parse().ok().filter(|n| *n > 0)
}
