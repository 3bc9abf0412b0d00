//! Quiescence: sync rounds on every live member until their states agree,
//! then a `recv` everywhere.

use rand::seq::SliceRandom;

use super::Sim;
use crate::world::{Kind, Op};

impl Sim {
    /// Sync rounds on every live member until the states converge, then a
    /// `recv` everywhere.
    pub(super) async fn quiesce(&mut self) -> Result<(), String> {
        let mut converged_rounds = 0;
        // A day later on every clock: leftovers of dead pairing attempts
        // are stale now. A device judges them by its own clock against the
        // sender's Date, so with skewed clocks that is a day plus the gap
        // between the two clocks.
        self.w.clock.jump(25 * 3600 * 1000 + self.clock_gap_ms());
        for round in 0..30 {
            self.release_all();
            let mut members = Vec::new();
            for i in 0..self.w.slots.len() {
                if self.w.slots[i].kind == Kind::Honest
                    && self.w.ensure_open(i)?
                    && self.w.slots[i].is_member()
                {
                    members.push(i);
                }
            }
            members.shuffle(&mut self.w.rng);
            for &i in &members {
                self.w.start(i, Op::Sync);
            }
            let applied = self.stats.applied;
            self.drain(50_000).await?;
            let quiet = self.stats.applied == applied;
            if self.converged() {
                converged_rounds += 1;
                if converged_rounds >= 2 {
                    for &i in &members {
                        self.w.start(i, Op::Recv);
                    }
                    self.drain(50_000).await?;
                    return Ok(());
                }
            } else {
                converged_rounds = 0;
            }
            if quiet && converged_rounds == 0 {
                // Nothing moves: make retransmission (and heartbeats) due.
                self.w.clock.jump(2 * 3600 * 1000);
            }
            self.note(format!("quiescence round {round}"));
        }
        Err(format!(
            "no convergence after 30 quiet sync rounds:\n{}",
            self.divergence()
        ))
    }

    /// The live members' states and their comparable parts (see
    /// [`crate::ledger::Ledger::comparable`]).
    fn comparable_states(
        &self,
    ) -> Vec<(
        sma::DeviceId,
        sma_proto::state::GroupState,
        crate::ledger::Comparable,
    )> {
        self.ledger.comparable_live(&self.w)
    }

    /// Describes how the live members' states differ.
    fn divergence(&self) -> String {
        let states = self.comparable_states();
        let mut out = String::new();
        for p in states.windows(2) {
            if p[0].2 != p[1].2 {
                out += &format!(
                    "{} vs {}:\n{}",
                    p[0].0,
                    p[1].0,
                    crate::ledger::describe_difference(&p[0].1, &p[1].1)
                );
            }
        }
        out
    }

    fn converged(&self) -> bool {
        self.comparable_states()
            .windows(2)
            .all(|p| p[0].2 == p[1].2)
    }
}
