//! The long horizon (a share of the seeds): after quiescence, one member
//! (the keeper) stays online while the others go offline for months of
//! virtual time (to about 120 days). They come back after about 29, 61 and
//! 89 days as the fastest judging clock measures it — they must catch up and
//! not be expired under the default 90-day policy — and one stays silent
//! past the policy: every live member must expire it, and on its return it
//! must find itself removed. Meanwhile the keeper keeps writing (keyring
//! changes, application messages), so returning devices have ops to catch
//! up on and messages of every age to judge: those older than 30 days by
//! the recipient's clock are deleted undelivered, the younger ones
//! delivered. A delivered message is replayed within and past the 60-day
//! memory of processed ids and must not be delivered again.

use rand::seq::SliceRandom;
use sma::clock::Clock;
use sma::DeviceId;
use sma_proto::engine::inbox::APP_MAX_AGE_SECS;
use sma_proto::state::MemberStatus;

use crate::scenario::Sim;
use crate::world::Op;

const DAY_MS: u64 = 86_400_000;
/// Online members sync (and receive) this often, in true time.
const TICK_MS: u64 = 10 * DAY_MS;
/// Where the phase ends, in true time after its start.
const END_MS: u64 = 120 * DAY_MS;

/// What an offline device does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Comes back after this many days (by the fastest judging clock).
    Return(u64),
    /// Stays silent past the policy.
    Expire,
}

/// The state of a long-horizon run.
struct Horizon {
    /// The member that stays online.
    keeper: usize,
    /// True time at the start of the run.
    t0: u64,
    /// The devices online now.
    online: Vec<usize>,
    /// Devices still away: slot, role, their clock when they left.
    pending: Vec<(usize, Role, u64)>,
    /// What the keeper sent meanwhile.
    sent: Vec<Sent>,
    /// True time of the next tick.
    next_tick: u64,
    /// A message the keeper received, to replay.
    replay: Option<Vec<u8>>,
    /// Replays done so far.
    replays: usize,
    /// When the silent device was expired everywhere.
    expired_at: Option<u64>,
}

impl Horizon {
    /// Devices away that will come back in time.
    fn returners(&self) -> Vec<usize> {
        self.pending
            .iter()
            .filter(|p| matches!(p.1, Role::Return(_)))
            .map(|p| p.0)
            .collect()
    }
}

/// A message sent to offline devices: its body and the sender's clock just
/// before and just after the send.
struct Sent {
    body: Vec<u8>,
    from_ms: (u64, u64),
}

impl Sim {
    fn dev_clock(&self, i: usize) -> u64 {
        self.w.clocks[i].now_ms()
    }

    async fn run_op(&mut self, i: usize, op: Op) -> Result<(), String> {
        if !self.w.ensure_open(i)? {
            return Ok(());
        }
        self.w.start(i, op);
        self.drain(50_000).await
    }

    fn status_everywhere(&self, online: &[usize], id: &DeviceId) -> Vec<Option<MemberStatus>> {
        online
            .iter()
            .filter_map(|&j| self.w.slots[j].dev.as_ref())
            .map(|d| d.core().group().status_of(id))
            .collect()
    }

    /// Every online member and every device still offline with a return
    /// role must hold the returning devices active.
    fn check_not_expired(&self, online: &[usize], returners: &[usize]) -> Result<(), String> {
        for &d in returners {
            let Some(id) = self.w.slots[d].id.clone() else {
                continue;
            };
            let st = self.status_everywhere(online, &id);
            if st.iter().any(|s| *s != Some(MemberStatus::Active)) {
                return Err(format!(
                    "{} (offline less than the 90-day policy by every clock) was expired: statuses {st:?}",
                    self.w.slots[d].name
                ));
            }
        }
        Ok(())
    }

    /// Online members: a keyring change on the keeper, a message from it to
    /// everyone, and a receive on every online member.
    async fn tick(
        &mut self,
        keeper: usize,
        online: &[usize],
        sent: &mut Vec<Sent>,
    ) -> Result<(), String> {
        let alone = self.w.slots[keeper]
            .dev
            .as_ref()
            .is_none_or(|d| d.core().group().active_members().all(|m| &m.id == d.id()));
        if self.w.ensure_open(keeper)? && !alone {
            self.keyring_change(keeper)?;
            self.next_body += 1;
            let body = format!("{}#{}", self.w.slots[keeper].name, self.next_body).into_bytes();
            let from = self.w.slots[keeper].id.clone().ok_or("keeper without id")?;
            self.ledger.attempted.insert(body.clone(), from);
            let a = self.dev_clock(keeper);
            self.run_op(
                keeper,
                Op::Send {
                    to: None,
                    body: body.clone(),
                },
            )
            .await?;
            let b = self.dev_clock(keeper);
            if self.ledger.acked.contains_key(&body) {
                sent.push(Sent {
                    body,
                    from_ms: (a, b),
                });
            }
        }
        for &j in online {
            self.run_op(j, Op::Recv).await?;
        }
        Ok(())
    }

    /// The returner `d` comes back: a sync (where it judges the age of what
    /// waited for it), then a receive.
    async fn come_back(&mut self, d: usize, sent: &[Sent]) -> Result<(), String> {
        let me = self.w.slots[d].id.clone().ok_or("returner without id")?;
        let c0 = self.dev_clock(d);
        self.run_op(d, Op::Sync).await?;
        self.run_op(d, Op::Recv).await?;
        let c1 = self.dev_clock(d);
        if !self.w.slots[d].is_member() {
            return Err(format!(
                "{} came back within the policy but is no member any more",
                self.w.slots[d].name
            ));
        }
        let max_age = APP_MAX_AGE_SECS * 1000;
        for s in sent {
            let Some(app) = self.ledger.acked.get(&s.body) else {
                continue;
            };
            if !app.to.contains(&me) {
                continue;
            }
            let got = self
                .ledger
                .delivered
                .contains_key(&(me.clone(), s.body.clone()));
            if c0.saturating_sub(s.from_ms.1) > max_age + 3_600_000 {
                // Older than 30 days by the recipient's clock.
                if got {
                    return Err(format!(
                        "{} got {:?}, older than 30 days by its clock",
                        self.w.slots[d].name,
                        String::from_utf8_lossy(&s.body)
                    ));
                }
                self.stats.horizon.too_old_dropped += 1;
                self.ledger.may_expire.insert((me.clone(), s.body.clone()));
            } else if c1.saturating_sub(s.from_ms.0) + 3_600_000 < max_age {
                if got {
                    self.stats.horizon.late_delivered += 1;
                }
                // (If not, the final check reports it.)
            } else {
                self.ledger.may_expire.insert((me.clone(), s.body.clone()));
            }
        }
        Ok(())
    }

    /// Appends a delivered message again to the keeper's inbox and lets the
    /// keeper receive: it must not be delivered again (the ledger checks)
    /// and must be gone from the inbox.
    async fn replay_to(&mut self, keeper: usize, bytes: &[u8], k: usize) -> Result<(), String> {
        let inbox = self.w.slots[keeper]
            .dev
            .as_ref()
            .map(|d| d.inbox())
            .ok_or("keeper not open")?;
        let uid = self
            .w
            .net
            .lock()
            .server
            .append(&inbox, bytes)
            .map_err(|e| e.to_string())?;
        self.note(format!("REPLAY after {} days", k));
        self.run_op(keeper, Op::Recv).await?;
        let still = self
            .w
            .net
            .lock()
            .server
            .folder(&inbox)
            .is_some_and(|f| f.messages.contains_key(&uid));
        if still {
            return Err("a replayed application message was left in the inbox".into());
        }
        Ok(())
    }

    /// The long-horizon phase (see the module documentation).
    pub(crate) async fn long_horizon(&mut self) -> Result<(), String> {
        let Some((keeper, away, slots)) = self.horizon_roles() else {
            return Ok(());
        };
        self.stats.horizon.ran = true;
        self.note(format!(
            "LONG HORIZON keeper {} away {away:?}",
            self.w.slots[keeper].name
        ));
        let replay = self.horizon_prelude(keeper, &away, &slots).await?;
        let last: Vec<u64> = away.iter().map(|&(d, _)| self.dev_clock(d)).collect();
        for &(d, role) in &away {
            if role == Role::Expire {
                if let Some(id) = self.w.slots[d].id.clone() {
                    self.ledger.removal_attempted.insert(id);
                }
            }
        }
        let t0 = self.w.clock.now_ms();
        let mut run = Horizon {
            keeper,
            t0,
            online: vec![keeper],
            pending: away
                .iter()
                .zip(&last)
                .map(|(&(d, r), &l)| (d, r, l))
                .collect(),
            sent: Vec::new(),
            next_tick: t0 + TICK_MS,
            replay,
            replays: 0,
            expired_at: None,
        };
        loop {
            let now = self.w.clock.now_ms();
            let next_return = self.next_return(&run, now);
            let at = next_return.map_or(run.next_tick, |(t, _)| t.min(run.next_tick));
            if at >= t0 + END_MS && next_return.is_none() {
                break;
            }
            self.w.clock.jump(at.saturating_sub(now));
            match next_return.filter(|(t, _)| *t <= at) {
                Some((_, d)) => self.horizon_return(&mut run, d).await?,
                None => self.horizon_tick(&mut run).await?,
            }
        }
        self.stats.horizon.days = (self.w.clock.now_ms() - t0) / DAY_MS;
        Ok(())
    }

    /// The keeper and the devices going away with their roles (`None`:
    /// too few live members). Every other member stays silent to the end
    /// as well and may be expired.
    #[allow(clippy::type_complexity)]
    fn horizon_roles(&mut self) -> Option<(usize, Vec<(usize, Role)>, Vec<usize>)> {
        let live: Vec<DeviceId> = self
            .ledger
            .comparable_live(&self.w)
            .into_iter()
            .map(|(id, _, _)| id)
            .filter(|id| !self.ledger.removal_attempted.contains(id))
            .collect();
        let mut slots: Vec<usize> = (0..self.w.slots.len())
            .filter(|&i| {
                self.w.slots[i]
                    .id
                    .as_ref()
                    .is_some_and(|id| live.contains(id))
            })
            .collect();
        if slots.len() < 2 {
            return None;
        }
        slots.shuffle(&mut self.w.rng);
        let keeper = slots[0];
        let mut roles = vec![
            Role::Return(29),
            Role::Return(61),
            Role::Return(89),
            Role::Expire,
        ];
        roles.shuffle(&mut self.w.rng);
        let away: Vec<(usize, Role)> = slots[1..].iter().copied().zip(roles).collect();
        // Every other member (a fifth one away, a tainted one, one a
        // `remove` was tried on) stays silent to the end as well: it is
        // expired like the one with that role, and may find out at the
        // final quiescence.
        for i in 0..self.w.slots.len() {
            if self.w.slots[i].kind == crate::world::Kind::Honest
                && self.w.slots[i].is_member()
                && i != keeper
                && !away.iter().any(|&(d, _)| d == i)
            {
                if let Some(id) = self.w.slots[i].id.clone() {
                    self.ledger.removal_attempted.insert(id);
                }
            }
        }
        Some((keeper, away, slots))
    }

    /// Everyone syncs once more (a fresh heartbeat), and one of those going
    /// away sends the keeper a message; returns its bytes, to replay later.
    async fn horizon_prelude(
        &mut self,
        keeper: usize,
        away: &[(usize, Role)],
        slots: &[usize],
    ) -> Result<Option<Vec<u8>>, String> {
        for &i in slots {
            self.run_op(i, Op::Sync).await?;
        }
        let (o, _) = away[0];
        let from = self.w.slots[o].id.clone().ok_or("member without id")?;
        let to = self.w.slots[keeper].id.clone();
        self.next_body += 1;
        let body = format!("{}#{}", self.w.slots[o].name, self.next_body).into_bytes();
        self.ledger.attempted.insert(body.clone(), from);
        self.run_op(
            o,
            Op::Send {
                to: to.clone(),
                body: body.clone(),
            },
        )
        .await?;
        let replay = self.ledger.acked.get(&body).and_then(|app| {
            let s = self.w.net.lock();
            let found = s.server.all_messages().find_map(|(_, _, m)| {
                sma_proto::envelope::peek_marker(m.header())
                    .is_ok_and(|k| k.id.as_str() == app.message_id)
                    .then(|| m.bytes.to_vec())
            });
            found
        });
        self.run_op(keeper, Op::Recv).await?;
        Ok(replay)
    }

    /// When the next device comes back, and which: a returner the first
    /// moment the fastest online clock has advanced its days past its last
    /// sign of life; the expired one 10 days after its expiry.
    fn next_return(&self, run: &Horizon, now: u64) -> Option<(u64, usize)> {
        let due = |days: u64, last: u64| -> u64 {
            run.online
                .iter()
                .map(|&j| {
                    let target = last + days * DAY_MS;
                    now + self.w.clocks[j].true_ms_for(target.saturating_sub(self.dev_clock(j)))
                })
                .min()
                .unwrap_or(now)
        };
        run.pending
            .iter()
            .filter_map(|&(d, r, l)| match r {
                Role::Return(days) => Some((due(days, l), d)),
                Role::Expire => run.expired_at.map(|t| (t + 10 * DAY_MS, d)),
            })
            .min()
    }

    /// Device `d` comes back: a returner catches up, the expired one must
    /// learn its removal.
    async fn horizon_return(&mut self, run: &mut Horizon, d: usize) -> Result<(), String> {
        self.check_not_expired(&run.online, &run.returners())?;
        let role = run
            .pending
            .iter()
            .find(|p| p.0 == d)
            .map(|p| p.1)
            .ok_or("no role")?;
        run.pending.retain(|p| p.0 != d);
        match role {
            Role::Return(days) => {
                self.note(format!(
                    "{} returns after {days} days",
                    self.w.slots[d].name
                ));
                self.come_back(d, &run.sent).await?;
                let k = match days {
                    29 => 0,
                    61 => 1,
                    _ => 2,
                };
                self.stats.horizon.returned[k] += 1;
                run.online.push(d);
            }
            Role::Expire => {
                self.note(format!("{} returns after its expiry", self.w.slots[d].name));
                self.run_op(d, Op::Sync).await?;
                if !self.w.slots[d].gone {
                    return Err(format!(
                        "{} came back after being expired but did not learn its removal",
                        self.w.slots[d].name
                    ));
                }
                self.stats.horizon.learnt_removal += 1;
            }
        }
        Ok(())
    }

    /// A tick of the online members, the replays when due, and the checks
    /// that returners are still active and the silent one gets expired.
    async fn horizon_tick(&mut self, run: &mut Horizon) -> Result<(), String> {
        run.next_tick += TICK_MS;
        self.tick(run.keeper, &run.online, &mut run.sent).await?;
        let day = (self.w.clock.now_ms() - run.t0) / DAY_MS;
        if let (Some(bytes), true) = (run.replay.as_ref(), run.replays < 2) {
            // Once within the 60-day memory of processed ids, once past.
            if (run.replays == 0 && day >= 20) || (run.replays == 1 && day >= 70) {
                self.replay_to(run.keeper, bytes, day as usize).await?;
                self.stats.horizon.replays_refused[run.replays] += 1;
                run.replays += 1;
            }
        }
        self.check_not_expired(&run.online, &run.returners())?;
        let Some(&(x, _, _)) = run.pending.iter().find(|p| p.1 == Role::Expire) else {
            return Ok(());
        };
        let id = self.w.slots[x].id.clone().ok_or("member without id")?;
        let st = self.status_everywhere(&run.online, &id);
        if run.expired_at.is_none() && st.iter().all(|s| *s == Some(MemberStatus::Removed)) {
            run.expired_at = Some(self.w.clock.now_ms());
            self.ledger.removed.insert(
                id,
                self.w.slots[run.keeper]
                    .id
                    .clone()
                    .ok_or("keeper without id")?,
            );
            self.stats.horizon.expired += 1;
        } else if run.expired_at.is_none() && day >= 101 {
            return Err(format!(
                "{} silent for {day} days (past the 90-day policy by every clock) is not expired everywhere: {st:?}",
                self.w.slots[x].name
            ));
        }
        Ok(())
    }
}
