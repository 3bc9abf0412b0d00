//! One seeded scenario: set-up, a chaos phase with faults, a calm phase, and
//! quiescence with the final checks.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rand::seq::SliceRandom;
use rand::Rng;

use crate::ledger::Ledger;
use crate::net::{Cmd, Grant, Waiting};
pub use crate::plan::{Plan, Stats};
use crate::world::{Kind, Op, World};

/// A code shown by a running `pair`, waiting to be typed on the joiner.
pub struct Offer {
    /// The member's slot.
    pub member: usize,
    /// The joiner's slot.
    pub joiner: usize,
    /// Filled by the member's `pair` when it shows the code.
    pub code: Arc<Mutex<Option<String>>>,
}

/// The running scenario.
pub struct Sim {
    /// Devices, network, clock.
    pub w: World,
    /// The plan.
    pub plan: Plan,
    /// Expectations and observations.
    pub ledger: Ledger,
    /// Codes on display.
    pub offers: Vec<Offer>,
    /// Whether faults are injected now.
    pub faults_on: bool,
    /// Counters.
    pub stats: Stats,
    /// The last trace lines (printed on failure).
    pub trace: VecDeque<String>,
    /// Messages captured for replay: (folder, bytes).
    pub captured: Vec<(String, Vec<u8>)>,
    /// Messages the scheduler itself added (duplicates, replays, forgeries).
    pub injected: usize,
    /// Counter for unique message bodies.
    pub next_body: u64,
    /// Removals and leaves started.
    pub lifecycle_ops: u32,
    /// A process to kill once its current command ran (buggify).
    pub crash_after: Option<usize>,
    /// Folders deleted by the fault injector.
    pub folder_deletions: u32,
    /// How often the rogue struck.
    pub rogue_acts: u32,
    /// Print every trace line as it happens (`SIM_VERBOSE=1`).
    pub verbose: bool,
    /// Per slot, the devices its state listed as removed when its last
    /// operation ended: it must never seal anything to them afterwards.
    pub known_removed: Vec<std::collections::BTreeSet<sma::DeviceId>>,
    /// How much of the server's APPEND journal the invariants have read.
    pub journal_seen: usize,
    /// A link the provider cuts while faults are on: every message from
    /// the first device in the inbox of the second (named by its id) is
    /// deleted, so what it sends arrives only through relays.
    pub cut_link: Option<(sma::DeviceId, String)>,
}

const TRACE_LINES: usize = 60;

mod late;
mod quiesce;
mod run;
pub use run::run_scenario;

impl Sim {
    /// Records a trace line and folds it into the trace hash.
    pub fn note(&mut self, line: String) {
        for b in line.bytes() {
            self.stats.trace_hash =
                (self.stats.trace_hash ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        if self.verbose {
            eprintln!("[sim] {line}");
        }
        self.trace.push_back(line);
        if self.trace.len() > TRACE_LINES {
            self.trace.pop_front();
        }
    }

    /// The difference between the fastest and the slowest device clock
    /// now (ms).
    pub fn clock_gap_ms(&self) -> u64 {
        let skews = self.w.clocks.iter().map(|c| c.skew_ms());
        let (lo, hi) = skews.fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(s), hi.max(s)));
        hi.saturating_sub(lo).max(0) as u64
    }

    /// Records the largest difference between two device clocks so far.
    pub fn note_clock_gap(&mut self) {
        if self.plan.clocks.is_empty() {
            return;
        }
        self.stats.max_clock_gap_ms = self.stats.max_clock_gap_ms.max(self.clock_gap_ms());
    }

    /// Counts a fault of `kind` (for the sweep's coverage).
    pub fn count(&mut self, kind: &'static str) {
        *self.stats.fault_kinds.entry(kind).or_default() += 1;
    }

    /// Lets one waiting command through, deciding its fault.
    fn grant_one(&mut self) {
        let waiting = self.w.net.waiting();
        if waiting.is_empty() {
            return;
        }
        let (ticket, w) = waiting[self.w.rng.gen_range(0..waiting.len())].clone();
        let grant = self.fault_for(&w);
        if grant != Grant::Go {
            self.stats.faults += 1;
            if matches!(grant, Grant::Duplicate) {
                self.injected += 1;
            }
            self.count(match grant {
                Grant::Duplicate => "duplicate append",
                Grant::Delay => "late append",
                Grant::DropBefore => "drop before",
                Grant::DropAfter => "drop after",
                Grant::Go => "none",
            });
        }
        self.stats.grants += 1;
        self.note(format!(
            "grant {} {:?} {:?}",
            self.w.slots[w.actor].name, w.cmd, grant
        ));
        self.w.net.grant(ticket, grant);
        let jitter = self.w.rng.gen_range(0..40);
        self.w.clock.jump(jitter);
        self.note_clock_gap();
        // Buggify: a pairing process killed right after one of its appends
        // (the hello, the reply, the confirmation or the welcome) is the
        // most harmful moment; make it common.
        let pairing = self.w.actors[w.actor]
            .as_ref()
            .is_some_and(|a| a.op == "pair" || a.op == "join");
        if self.faults_on
            && pairing
            && w.cmd == Cmd::Append
            && self.w.rng.gen_bool(self.plan.p_pairing_crash)
        {
            self.crash_after = Some(w.actor);
        }
    }

    /// Kills the process chosen by the buggify rule, once its command ran.
    fn buggify_crash(&mut self) {
        if let Some(i) = self.crash_after.take() {
            if self.w.busy(i) {
                let op = self.w.actors[i].as_ref().map(|a| a.op).unwrap_or("idle");
                self.note(format!(
                    "CRASH {} after an append during {op}",
                    self.w.slots[i].name
                ));
                self.w.crash(i);
                self.stats.crashes += 1;
                self.count("crash after a pairing append");
            }
        }
    }

    fn fault_for(&mut self, w: &Waiting) -> Grant {
        if !self.faults_on {
            return Grant::Go;
        }
        let p = &self.plan;
        let (dup, delay) = if w.cmd == Cmd::Append {
            (p.p_dup, p.p_delay)
        } else {
            (0.0, 0.0)
        };
        let drop = p.p_drop;
        let r: f64 = self.w.rng.gen();
        if r < dup {
            Grant::Duplicate
        } else if r < dup + delay {
            Grant::Delay
        } else if r < dup + delay + drop {
            Grant::DropBefore
        } else if r < dup + delay + 2.0 * drop {
            Grant::DropAfter
        } else {
            Grant::Go
        }
    }

    /// Runs actors and grants commands until no operation runs, at most
    /// `max` grants. Fails on a livelock.
    pub async fn drain(&mut self, max: usize) -> Result<(), String> {
        for _ in 0..max {
            self.w.run_until_gate().await;
            self.collect()?;
            if self.w.actors.iter().all(Option::is_none) {
                return Ok(());
            }
            self.grant_one();
        }
        let running: Vec<_> = self
            .w
            .actors
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                a.as_ref()
                    .map(|a| format!("{}:{}", self.w.slots[i].name, a.op))
            })
            .collect();
        Err(format!(
            "livelock: operations still running after {max} commands: {running:?}"
        ))
    }

    /// Set-up: the founder (or two racing founders), without faults.
    async fn setup(&mut self) -> Result<(), String> {
        let layout = self.plan.layout;
        self.w.start(0, Op::Init { layout });
        if self.plan.founder_race {
            self.w.start(1, Op::Init { layout });
        }
        self.drain(10_000).await
    }

    /// The chaos phase.
    async fn chaos(&mut self) -> Result<(), String> {
        self.faults_on = true;
        let until = self.stats.grants + self.plan.steps as u64;
        let mut iterations = 0;
        while self.stats.grants < until && iterations < 20 * self.plan.steps {
            iterations += 1;
            self.inject_faults()?;
            self.start_ops()?;
            self.w.run_until_gate().await;
            self.buggify_crash();
            self.collect()?;
            self.grant_one();
            if iterations % 8 == 0 {
                self.check_footprint_bound()?;
            }
        }
        self.faults_on = false;
        Ok(())
    }

    /// Membership under attack: once every device had its chance to pair,
    /// and if at least three are members, the provider cuts a link between
    /// two members (mostly) while the faults of the chaos phase resume;
    /// in plans with a lifecycle a member also removes another one (with
    /// or without a new account key) or, three times in ten, leaves
    /// meanwhile.
    async fn membership_chaos(&mut self) -> Result<(), String> {
        let live: Vec<usize> = (0..self.w.slots.len())
            .filter(|&i| self.w.slots[i].is_member())
            .collect();
        if live.len() < 3 {
            return Ok(());
        }
        if self.plan.lifecycle && self.w.rng.gen_bool(0.3) {
            // A member leaves (its notice to the others may be cut).
            let leaver = live[self.w.rng.gen_range(0..live.len())];
            let id = self.w.slots[leaver].id.clone().ok_or("member without id")?;
            self.ledger.removal_attempted.insert(id);
            self.lifecycle_ops += 1;
            self.note(format!("start {} leave", self.w.slots[leaver].name));
            self.w.start(leaver, Op::Leave);
        } else if self.plan.lifecycle {
            let remover = live[self.w.rng.gen_range(0..live.len())];
            let others: Vec<usize> = live.iter().copied().filter(|&i| i != remover).collect();
            let target_slot = others[self.w.rng.gen_range(0..others.len())];
            let target = self.w.slots[target_slot]
                .id
                .clone()
                .ok_or("member without id")?;
            self.ledger.removal_attempted.insert(target.clone());
            if let Some(id) = self.w.slots[remover].id.clone() {
                self.ledger.removers.insert(id);
            }
            self.lifecycle_ops += 1;
            let rotate = self.w.rng.gen_bool(0.5);
            self.note(format!(
                "start {} remove {} rotate={rotate}",
                self.w.slots[remover].name, self.w.slots[target_slot].name
            ));
            self.w.start(remover, Op::Remove { target, rotate });
        }
        // Mostly, the provider also cuts one link between two members for
        // the phase: the remover's own messages to a member, say.
        if self.w.rng.gen_bool(0.8) {
            let from = live[self.w.rng.gen_range(0..live.len())];
            let to = live[self.w.rng.gen_range(0..live.len())];
            if from != to {
                let from_id = self.w.slots[from].id.clone().ok_or("member without id")?;
                let to_id = self.w.slots[to].id.clone().ok_or("member without id")?;
                let inbox = to_id.to_string();
                self.note(format!(
                    "CUT link {} -> {}",
                    self.w.slots[from].name, self.w.slots[to].name
                ));
                self.cut_link = Some((from_id, inbox));
            }
        }
        let result = self.chaos().await;
        self.cut_link = None;
        result
    }

    /// Lets every running operation end without faults and delivers what
    /// the server held back.
    async fn calm(&mut self) -> Result<(), String> {
        self.offers.clear();
        self.release_all();
        self.drain(50_000).await
    }

    /// Starts operations on idle devices.
    fn start_ops(&mut self) -> Result<(), String> {
        self.start_joins()?;
        for i in 0..self.w.slots.len() {
            if self.w.busy(i) || !self.w.rng.gen_bool(self.plan.p_start) {
                continue;
            }
            if self.w.slots[i].id.is_none() {
                if self.w.slots[i].inits < 4 {
                    let layout = self.plan.layout;
                    self.note(format!("start {} init", self.w.slots[i].name));
                    self.w.start(i, Op::Init { layout });
                }
                continue;
            }
            if !self.w.ensure_open(i)? {
                continue;
            }
            if self.w.slots[i].kind == Kind::Rogue {
                if self.rogue_acts < 6 && self.w.rng.gen_bool(0.1) {
                    self.rogue_acts += 1;
                    self.rogue_act(i)?;
                    self.count("rogue forgery");
                }
                continue;
            }
            if self.w.slots[i].is_member() {
                self.start_member_op(i)?;
            }
        }
        Ok(())
    }

    fn start_member_op(&mut self, i: usize) -> Result<(), String> {
        let choice = self.w.rng.gen_range(0..15);
        let op = match choice {
            0..=3 => Op::Sync,
            4..=5 => Op::Recv,
            6..=8 => {
                let peers: Vec<_> = self.w.slots[i]
                    .dev
                    .as_ref()
                    .map(|d| {
                        d.core()
                            .group()
                            .active_members()
                            .filter(|m| &m.id != d.id())
                            .map(|m| m.id.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                if peers.is_empty() {
                    return Ok(());
                }
                let to = if self.w.rng.gen_bool(0.6) {
                    None
                } else {
                    Some(peers[self.w.rng.gen_range(0..peers.len())].clone())
                };
                self.next_body += 1;
                let body = format!("{}#{}", self.w.slots[i].name, self.next_body).into_bytes();
                let from = self.w.slots[i].id.clone().ok_or("member without id")?;
                self.ledger.attempted.insert(body.clone(), from);
                Op::Send { to, body }
            }
            9..=10 => return self.keyring_change(i),
            14 => match self.lifecycle_op(i) {
                Some(op) => op,
                None => return Ok(()),
            },
            11..=13 => {
                let Some(target) = self.pick_joiner(i) else {
                    return Ok(());
                };
                let code = self.offer(i, target);
                if self.w.rng.gen_bool(0.2) {
                    self.second_pairing(i, target)?;
                }
                Op::Pair { target, code }
            }
            _ => return Ok(()),
        };
        self.note(format!("start {} {}", self.w.slots[i].name, op.name()));
        self.w.start(i, op);
        Ok(())
    }

    /// Records that `member` starts pairing `joiner`; the code slot its
    /// `pair` fills when it shows the code.
    fn offer(&mut self, member: usize, joiner: usize) -> Arc<Mutex<Option<String>>> {
        let code = Arc::new(Mutex::new(None));
        self.offers.push(Offer {
            member,
            joiner,
            code: code.clone(),
        });
        code
    }

    /// Another idle member pairs `target` too, at the same time as `i`
    /// (PROTOCOL 9.3, two members at once), if there is one.
    fn second_pairing(&mut self, i: usize, target: usize) -> Result<(), String> {
        let idle: Vec<usize> = (0..self.w.slots.len())
            .filter(|&m| m != i && m != target && !self.w.busy(m) && self.w.slots[m].is_member())
            .collect();
        let Some(&m) = idle.choose(&mut self.w.rng) else {
            return Ok(());
        };
        if !self.w.ensure_open(m)? {
            return Ok(());
        }
        let code = self.offer(m, target);
        let (who, with) = (&self.w.slots[m].name, &self.w.slots[i].name);
        self.note(format!("start {who} pair (with {with})"));
        self.w.start(m, Op::Pair { target, code });
        Ok(())
    }

    /// Now and then (at most once each per scenario, and only while at least
    /// three members are active): remove another member, or leave.
    fn lifecycle_op(&mut self, i: usize) -> Option<Op> {
        if !self.plan.lifecycle || self.lifecycle_ops >= 2 {
            return None;
        }
        let dev = self.w.slots[i].dev.as_ref()?;
        let me = dev.id().clone();
        let others: Vec<_> = dev
            .core()
            .group()
            .active_members()
            .map(|m| m.id.clone())
            .filter(|id| id != &me)
            .collect();
        // Keep at least two members that know they are members (a group of
        // phantoms, admitted but never joined, cannot pair anyone).
        let live_others = (0..self.w.slots.len())
            .filter(|&j| j != i && self.w.slots[j].is_member())
            .count();
        if others.len() < 2 || live_others < 2 || !self.w.rng.gen_bool(0.3) {
            return None;
        }
        self.lifecycle_ops += 1;
        if self.w.rng.gen_bool(0.7) {
            let target = others[self.w.rng.gen_range(0..others.len())].clone();
            self.ledger.removal_attempted.insert(target.clone());
            self.ledger.removers.insert(me.clone());
            let rotate = self.w.rng.gen_bool(0.5);
            Some(Op::Remove { target, rotate })
        } else {
            self.ledger.removal_attempted.insert(me);
            Some(Op::Leave)
        }
    }

    /// An honest pending device for member `i` to pair: mostly one nobody
    /// is pairing right now, sometimes (a quarter of the time, when there
    /// is one) one another member is already pairing (PROTOCOL 9.3, two
    /// members at once).
    fn pick_joiner(&mut self, i: usize) -> Option<usize> {
        let offered = |j: usize| self.offers.iter().filter(|o| o.joiner == j).count();
        let candidates: Vec<usize> = (0..self.w.slots.len())
            .filter(|&j| {
                self.w.slots[j].kind == Kind::Honest
                    && self.w.slots[j].id.is_some()
                    && (self.w.busy(j) || self.w.slots[j].is_pending())
                    && !self.w.slots[j].is_member()
            })
            .collect();
        let (fresh, taken): (Vec<usize>, Vec<usize>) =
            candidates.into_iter().partition(|&j| offered(j) == 0);
        let second: Vec<usize> = taken
            .into_iter()
            .filter(|&j| {
                offered(j) == 1 && !self.offers.iter().any(|o| o.joiner == j && o.member == i)
            })
            .collect();
        if !second.is_empty() && self.w.rng.gen_bool(0.25) {
            return second.choose(&mut self.w.rng).copied();
        }
        fresh.choose(&mut self.w.rng).copied()
    }

    /// Types shown codes on their joiners (sometimes wrongly, sometimes not
    /// at all).
    fn start_joins(&mut self) -> Result<(), String> {
        let mut k = 0;
        while k < self.offers.len() {
            let j = self.offers[k].joiner;
            let code = self.offers[k]
                .code
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let Some(code) = code else {
                k += 1;
                continue;
            };
            if self.w.busy(j) || !self.w.ensure_open(j)? || !self.w.slots[j].is_pending() {
                k += 1;
                continue;
            }
            // The person is slow to type, now and then (another member may
            // show a code for the same device meanwhile).
            if self.w.rng.gen_bool(0.3) {
                k += 1;
                continue;
            }
            let offer = self.offers.remove(k);
            // Two members showed codes for j: the person types one of them
            // (this one, or the other if its code is shown too); the other
            // member's `pair` ends as withdrawn, or at its timeout.
            let mut code = code;
            let rivals: Vec<usize> = (0..self.offers.len())
                .filter(|&o| self.offers[o].joiner == j)
                .collect();
            for o in rivals.into_iter().rev() {
                let rival = self.offers.remove(o);
                self.stats.concurrent_pairings += 1;
                let shown = rival.code.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if let Some(other) = shown.filter(|_| self.w.rng.gen_bool(0.5)) {
                    self.note(format!(
                        "{} types the code of {}, not of {}",
                        self.w.slots[j].name,
                        self.w.slots[rival.member].name,
                        self.w.slots[offer.member].name
                    ));
                    code = other;
                }
            }
            let r: f64 = self.w.rng.gen();
            if r < 0.05 {
                self.note(format!("{} ignores the code", self.w.slots[j].name));
                continue;
            }
            let right = r >= 0.2;
            let typed = if right {
                code
            } else {
                wrong_code(&code, r < 0.1)
            };
            if right {
                let id = self.w.slots[j].id.clone().ok_or("joiner without id")?;
                self.ledger.legit.insert(id);
            }
            self.note(format!("start {} join right={right}", self.w.slots[j].name));
            self.w.start(j, Op::Join { code: typed, right });
        }
        Ok(())
    }
}

/// The same code with one digit changed: the last (the code still fits
/// its request and the member rejects it), or with `first` the first (it
/// fits no request: the joiner sends nothing, PROTOCOL 9.3 step 2).
fn wrong_code(code: &str, first: bool) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    let digit = if first {
        chars.iter().position(char::is_ascii_digit)
    } else {
        chars.iter().rposition(char::is_ascii_digit)
    };
    if let Some(k) = digit {
        chars[k] = if chars[k] == '9' {
            '0'
        } else {
            (chars[k] as u8 + 1) as char
        };
    }
    chars.into_iter().collect()
}
