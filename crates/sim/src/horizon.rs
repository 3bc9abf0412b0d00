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
            return Ok(());
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
        self.stats.horizon.ran = true;
        self.note(format!(
            "LONG HORIZON keeper {} away {away:?}",
            self.w.slots[keeper].name
        ));
        // Everyone syncs once more (a fresh heartbeat), and one of those
        // going away sends the keeper a message to replay later.
        for &i in &slots {
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
        let last: Vec<u64> = away.iter().map(|&(d, _)| self.dev_clock(d)).collect();
        for &(d, role) in &away {
            if role == Role::Expire {
                if let Some(id) = self.w.slots[d].id.clone() {
                    self.ledger.removal_attempted.insert(id);
                }
            }
        }
        let t0 = self.w.clock.now_ms();
        let mut online = vec![keeper];
        let mut pending: Vec<(usize, Role, u64)> = away
            .iter()
            .zip(&last)
            .map(|(&(d, r), &l)| (d, r, l))
            .collect();
        let mut sent: Vec<Sent> = Vec::new();
        let mut next_tick = t0 + TICK_MS;
        let mut replays = 0;
        let mut expired_at: Option<u64> = None;
        loop {
            let now = self.w.clock.now_ms();
            // When the next returner is due: the first moment the fastest
            // online clock has advanced the given days past its last sign
            // of life.
            let due = |this: &Sim, days: u64, last: u64| -> u64 {
                online
                    .iter()
                    .map(|&j| {
                        let target = last + days * DAY_MS;
                        now + this.w.clocks[j].true_ms_for(target.saturating_sub(this.dev_clock(j)))
                    })
                    .min()
                    .unwrap_or(now)
            };
            let next_return = pending
                .iter()
                .filter_map(|&(d, r, l)| match r {
                    Role::Return(days) => Some((due(self, days, l), d)),
                    Role::Expire => expired_at.map(|t| (t + 10 * DAY_MS, d)),
                })
                .min();
            let at = next_return.map_or(next_tick, |(t, _)| t.min(next_tick));
            if at >= t0 + END_MS && next_return.is_none() {
                break;
            }
            self.w.clock.jump(at.saturating_sub(now));
            if let Some((t, d)) = next_return.filter(|(t, _)| *t <= at) {
                let _ = t;
                let returners: Vec<usize> = pending
                    .iter()
                    .filter(|p| matches!(p.1, Role::Return(_)))
                    .map(|p| p.0)
                    .collect();
                self.check_not_expired(&online, &returners)?;
                let role = pending
                    .iter()
                    .find(|p| p.0 == d)
                    .map(|p| p.1)
                    .ok_or("no role")?;
                pending.retain(|p| p.0 != d);
                match role {
                    Role::Return(days) => {
                        self.note(format!(
                            "{} returns after {days} days",
                            self.w.slots[d].name
                        ));
                        self.come_back(d, &sent).await?;
                        let k = match days {
                            29 => 0,
                            61 => 1,
                            _ => 2,
                        };
                        self.stats.horizon.returned[k] += 1;
                        online.push(d);
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
                continue;
            }
            // A tick of the online members.
            next_tick += TICK_MS;
            self.tick(keeper, &online, &mut sent).await?;
            let day = (self.w.clock.now_ms() - t0) / DAY_MS;
            if let (Some(bytes), true) = (replay.as_ref(), replays < 2) {
                // Once within the 60-day memory of processed ids, once past.
                if (replays == 0 && day >= 20) || (replays == 1 && day >= 70) {
                    self.replay_to(keeper, bytes, day as usize).await?;
                    self.stats.horizon.replays_refused[replays] += 1;
                    replays += 1;
                }
            }
            let returners: Vec<usize> = pending
                .iter()
                .filter(|p| matches!(p.1, Role::Return(_)))
                .map(|p| p.0)
                .collect();
            self.check_not_expired(&online, &returners)?;
            if let Some(&(x, _, _)) = pending.iter().find(|p| p.1 == Role::Expire) {
                let id = self.w.slots[x].id.clone().ok_or("member without id")?;
                let st = self.status_everywhere(&online, &id);
                if expired_at.is_none() && st.iter().all(|s| *s == Some(MemberStatus::Removed)) {
                    expired_at = Some(self.w.clock.now_ms());
                    self.ledger.removed.insert(
                        id,
                        self.w.slots[keeper].id.clone().ok_or("keeper without id")?,
                    );
                    self.stats.horizon.expired += 1;
                } else if expired_at.is_none() && day >= 101 {
                    return Err(format!(
                        "{} silent for {day} days (past the 90-day policy by every clock) is not expired everywhere: {st:?}",
                        self.w.slots[x].name
                    ));
                }
            }
        }
        self.stats.horizon.days = (self.w.clock.now_ms() - t0) / DAY_MS;
        Ok(())
    }
}
