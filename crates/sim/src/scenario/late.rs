//! Liveness after the faults: every honest device still pending is paired
//! by a live member, with rivals and wrong codes on the way.

use std::sync::{Arc, Mutex};

use rand::Rng;

use super::Sim;
use crate::world::{Kind, Op};

impl Sim {
    /// Liveness: once the faults stopped, every honest device still pending
    /// (never paired, or admitted by a pairing it never completed) can be
    /// paired by a live member. Devices whose announcement or inbox a fault
    /// deleted are left out: a pending device does not recreate them (see
    /// docs/RELIABILITY.md).
    pub(super) async fn late_pairings(&mut self) -> Result<(), String> {
        for j in 0..self.w.slots.len() {
            if self.w.slots[j].kind != Kind::Honest
                || !self.w.ensure_open(j)?
                || !self.w.slots[j].is_pending()
                || !self.still_announced(j)
            {
                continue;
            }
            let mut member = None;
            for m in 0..self.w.slots.len() {
                let leaving = self.w.slots[m]
                    .id
                    .as_ref()
                    .is_some_and(|id| self.ledger.removal_attempted.contains(id));
                if m != j && !leaving && self.w.ensure_open(m)? && self.w.slots[m].is_member() {
                    member = Some(m);
                    break;
                }
            }
            let Some(m) = member else {
                return Err("no live member left to pair with".into());
            };
            self.note(format!("late pairing of {}", self.w.slots[j].name));
            let (shown, concurrent) = self.late_codes(m, j).await?;
            let withdrawn_before = self.stats.withdrawn;
            let id = self.w.slots[j]
                .id
                .clone()
                .ok_or("pending device without id")?;
            self.ledger.legit.insert(id);
            self.w.start(
                j,
                Op::Join {
                    code: shown,
                    right: true,
                },
            );
            self.drain(50_000).await?;
            if !self.w.ensure_open(j)? || !self.w.slots[j].is_member() {
                return Err(format!(
                    "{} could not be paired after the faults stopped",
                    self.w.slots[j].name
                ));
            }
            if concurrent && self.stats.withdrawn != withdrawn_before + 1 {
                return Err(format!(
                    "{} joined through one of two members, but the other `pair` did not end as withdrawn",
                    self.w.slots[j].name
                ));
            }
        }
        Ok(())
    }

    /// The code the person types for a late pairing of `j` by `m`. Half the
    /// time a second member shows a code too and the person types either
    /// (the `bool` says so); the other `pair` must end as withdrawn.
    async fn late_codes(&mut self, m: usize, j: usize) -> Result<(String, bool), String> {
        let shown = self.late_code(m, j).await?;
        let rival = match self.late_rival(m, j)? {
            Some(r) if self.w.rng.gen_bool(0.5) => Some((r, self.late_code(r, j).await?)),
            _ => None,
        };
        let Some((r, rival_code)) = rival else {
            return Ok((shown, false));
        };
        self.stats.concurrent_pairings += 1;
        // Codes with the same first digit: the newer request (the
        // rival's) is the one answered.
        let same = selector(&shown) == selector(&rival_code);
        let take_rival = same || self.w.rng.gen_bool(0.5);
        let typed = if take_rival { r } else { m };
        self.note(format!(
            "{} types the code of {}",
            self.w.slots[j].name, self.w.slots[typed].name
        ));
        Ok((if take_rival { rival_code } else { shown }, true))
    }

    /// Starts `pair` of `j` on member `m` and runs until it shows its code.
    async fn late_code(&mut self, m: usize, j: usize) -> Result<String, String> {
        let code = Arc::new(Mutex::new(None));
        self.w.start(
            m,
            Op::Pair {
                target: j,
                code: code.clone(),
            },
        );
        for _ in 0..10_000 {
            self.w.run_until_gate().await;
            self.collect()?;
            let shown = code.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(shown) = shown {
                return Ok(shown);
            }
            if !self.w.busy(m) {
                break;
            }
            self.grant_one();
        }
        Err(format!(
            "{} could not start pairing {} after the faults stopped",
            self.w.slots[m].name, self.w.slots[j].name
        ))
    }

    /// A second live member, idle, that knows `j` is pending and is not
    /// `m`, for a concurrent late pairing.
    fn late_rival(&mut self, m: usize, j: usize) -> Result<Option<usize>, String> {
        for r in 0..self.w.slots.len() {
            let leaving = self.w.slots[r]
                .id
                .as_ref()
                .is_some_and(|id| self.ledger.removal_attempted.contains(id));
            if r != m
                && r != j
                && !leaving
                && !self.w.busy(r)
                && self.w.ensure_open(r)?
                && self.w.slots[r].is_member()
            {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Whether slot `i`'s announcement and inbox are on the server.
    fn still_announced(&self, i: usize) -> bool {
        let Some(dev) = self.w.slots[i].dev.as_ref() else {
            return false;
        };
        let s = self.w.net.lock();
        let announced = s
            .server
            .folder(&dev.info().folders.announce())
            .is_some_and(|f| {
                f.messages.values().any(|m| {
                    sma_proto::envelope::peek_marker(m.header()).is_ok_and(|k| {
                        k.kind == sma_proto::envelope::Kind::Announce && &k.from == dev.id()
                    })
                })
            });
        announced && s.server.folder(&dev.inbox()).is_some()
    }
}

/// A shown code's first digit (which request it belongs to).
fn selector(code: &str) -> Option<u8> {
    sma::PairingCode::parse(code).ok().map(|c| c.selector())
}
