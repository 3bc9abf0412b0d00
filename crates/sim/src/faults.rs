//! Faults the scheduler injects between commands, and the rogue device.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sma_proto::core::CoreState;
use sma_proto::device::{build_announcement, verify_announcement, Identity};
use sma_proto::envelope::{Envelope, Kind};
use sma_proto::hlc::Hlc;
use sma_proto::ids::DeviceId;
use sma_proto::payload::AnnouncedState;
use sma_proto::state::{AccountKeyRecord, Change, MemberRecord, MemberStatus, PeerState};
use sma_proto::{Engine, Timestamp};

use sma_imap::Uid;

use crate::scenario::Sim;
use crate::world::{load_identity, Kind as SlotKind};

/// The application-message cap of an inbox (`sma send` refuses beyond it).
const APP_CAP: usize = 100;

/// Most messages kept for later replay.
const CAPTURE_MAX: usize = 40;

impl Sim {
    /// Between two commands: maybe crash a device, delete a folder, reset a
    /// UIDVALIDITY, deliver a held-back message, replay an old one, or move
    /// the wall clock.
    pub(crate) fn inject_faults(&mut self) -> Result<(), String> {
        let p = self.plan.clone();
        let n = self.w.slots.len();
        if self.w.rng.gen_bool(p.p_crash) {
            let i = self.w.rng.gen_range(0..n);
            if self.w.slots[i].home.is_some() {
                let op = self.w.actors[i].as_ref().map(|a| a.op).unwrap_or("idle");
                self.note(format!("CRASH {} during {op}", self.w.slots[i].name));
                self.w.crash(i);
                self.stats.crashes += 1;
                self.count("crash");
            }
        }
        // The announcements only go once no device is still looking for a
        // group: a device that runs `init` while there is none founds a
        // second group (a split the protocol reports, §16.1).
        let all_inited = self.w.slots.iter().all(|s| s.id.is_some());
        if self.w.rng.gen_bool(p.p_delete_folder) {
            self.delete_a_folder(all_inited);
        }
        if self.w.rng.gen_bool(p.p_delete_msgs) {
            self.delete_some_messages(all_inited);
        }
        self.keep_link_cut();
        if self.w.rng.gen_bool(p.p_validity) {
            let folders: Vec<String> = self
                .w
                .net
                .lock()
                .server
                .folder_counts()
                .into_iter()
                .map(|(f, _)| f)
                .collect();
            let f = folders[self.w.rng.gen_range(0..folders.len())].clone();
            self.note(format!("UIDVALIDITY reset {f}"));
            self.w.net.lock().server.reset_uid_validity(&f);
            self.stats.faults += 1;
            self.count("uidvalidity reset");
        }
        let delayed = self.w.net.lock().server.delayed.len();
        if delayed > 0 && self.w.rng.gen_bool(0.25) {
            let k = self.w.rng.gen_range(0..delayed);
            self.note(format!("deliver late #{k}"));
            self.w.net.lock().server.release(k);
        }
        if self.w.rng.gen_bool(0.05) {
            self.capture();
        }
        if !self.captured.is_empty() && self.w.rng.gen_bool(p.p_replay) {
            let k = self.w.rng.gen_range(0..self.captured.len());
            let (folder, bytes) = self.captured[k].clone();
            if self.w.net.lock().server.append(&folder, &bytes).is_ok() {
                self.note(format!("REPLAY into {folder}"));
                self.injected += 1;
                self.stats.faults += 1;
                self.count("replay");
            }
        }
        if self.w.rng.gen_bool(0.003) {
            let minutes = self.w.rng.gen_range(1..90);
            self.w.clock.jump(minutes * 60_000);
            self.note(format!("clock +{minutes} min"));
            self.count("wall-clock jump");
        }
        self.step_a_device_clock();
        Ok(())
    }

    /// Now and then, a device whose clock takes steps has it stepped (by
    /// up to two hours either way, as NTP does after a long sleep; never
    /// past ±36 h from true time).
    fn step_a_device_clock(&mut self) {
        if self.plan.clocks.is_empty() {
            return;
        }
        let n = self.w.clocks.len();
        let i = self.w.rng.gen_range(0..n);
        if !self.w.clocks[i].error().steps || !self.w.rng.gen_bool(0.004) {
            return;
        }
        let minutes: i64 = self.w.rng.gen_range(-120..=120);
        self.w.clocks[i].step(minutes * 60_000);
        self.note(format!(
            "clock of {} steps {minutes:+} min",
            self.w.slots[i].name
        ));
        self.count("device clock step");
    }

    /// The provider deletes a whole SMA folder.
    fn delete_a_folder(&mut self, all_inited: bool) {
        let folders: Vec<String> = self
            .w
            .net
            .lock()
            .server
            .folder_counts()
            .into_iter()
            .map(|(f, _)| f)
            .filter(|f| f.starts_with("_Autocrypt_SMA"))
            .filter(|f| all_inited || f != "_Autocrypt_SMA")
            .collect();
        if folders.is_empty() {
            return;
        }
        let f = folders[self.w.rng.gen_range(0..folders.len())].clone();
        self.note(format!("DELETE folder {f}"));
        let _ = self.w.net.lock().server.delete(None, &f);
        self.folder_deletions += 1;
        self.stats.folders_deleted += 1;
        self.stats.faults += 1;
        self.count("folder deletion");
    }

    /// The provider deletes some messages (one, or any subset) of an SMA
    /// folder: syncs, notices, pairing messages, announcements.
    fn delete_some_messages(&mut self, all_inited: bool) {
        let folders: Vec<(String, Vec<Uid>)> = {
            let s = self.w.net.lock();
            s.server
                .folder_counts()
                .into_iter()
                .map(|(f, _)| f)
                .filter(|f| f.starts_with("_Autocrypt_SMA"))
                .filter(|f| all_inited || f != "_Autocrypt_SMA")
                .filter_map(|f| {
                    let uids: Vec<Uid> = s.server.folder(&f)?.messages.keys().copied().collect();
                    (!uids.is_empty()).then_some((f, uids))
                })
                .collect()
        };
        if folders.is_empty() {
            return;
        }
        let (folder, uids) = folders[self.w.rng.gen_range(0..folders.len())].clone();
        let doomed: Vec<Uid> = match self.w.rng.gen_bool(0.5) {
            true => vec![uids[self.w.rng.gen_range(0..uids.len())]],
            false => uids
                .into_iter()
                .filter(|_| self.w.rng.gen_bool(0.5))
                .collect(),
        };
        let gone = self
            .w
            .net
            .lock()
            .server
            .expunge_as_provider(&folder, &doomed);
        if gone > 0 {
            self.note(format!("DELETE {gone} messages in {folder}"));
            self.stats.messages_deleted += gone as u64;
            self.stats.faults += 1;
            self.count("message deletion");
        }
    }

    /// While a link is cut: delete every message of its sender in its
    /// receiver's inbox, and let time pass now and then (relays wait
    /// 600 s for ops of an active origin).
    fn keep_link_cut(&mut self) {
        let Some((from, to)) = self.cut_link.clone() else {
            return;
        };
        let Some(inbox) = self
            .w
            .net
            .lock()
            .server
            .folder_counts()
            .into_iter()
            .map(|(f, _)| f)
            .find(|f| f.ends_with(&to))
        else {
            return;
        };
        let doomed: Vec<Uid> = {
            let s = self.w.net.lock();
            s.server
                .folder(&inbox)
                .map(|f| {
                    f.messages
                        .iter()
                        .filter(|(_, m)| {
                            sma_proto::envelope::peek_marker(m.header())
                                .is_ok_and(|k| k.from == from)
                        })
                        .map(|(u, _)| *u)
                        .collect()
                })
                .unwrap_or_default()
        };
        if !doomed.is_empty() {
            let gone = self
                .w
                .net
                .lock()
                .server
                .expunge_as_provider(&inbox, &doomed);
            self.stats.messages_deleted += gone as u64;
            if gone > 0 {
                self.count("cut link");
            }
        }
        if self.w.rng.gen_bool(0.08) {
            self.w.clock.jump(11 * 60_000);
            self.note("clock +11 min".into());
        }
    }

    /// Copies a random message of the server for a later replay.
    fn capture(&mut self) {
        let n = self.w.net.lock().server.all_messages().count();
        if n == 0 {
            return;
        }
        let k = self.w.rng.gen_range(0..n);
        let Some(pick) = self
            .w
            .net
            .lock()
            .server
            .all_messages()
            .nth(k)
            .map(|(f, _, m)| (f.to_owned(), m.bytes.to_vec()))
        else {
            return;
        };
        if self.captured.len() >= CAPTURE_MAX {
            let k = self.w.rng.gen_range(0..self.captured.len());
            self.captured[k] = pick;
        } else {
            self.captured.push(pick);
        }
    }

    /// Delivers every held-back message, in random order.
    pub(crate) fn release_all(&mut self) {
        loop {
            let n = self.w.net.lock().server.delayed.len();
            if n == 0 {
                return;
            }
            let k = self.w.rng.gen_range(0..n);
            self.w.net.lock().server.release(k);
        }
    }

    /// The server footprint stays bounded at every step: no folder holds
    /// more than the application-message cap plus a few messages per device
    /// plus what the scheduler injected itself.
    pub(crate) fn check_footprint_bound(&self) -> Result<(), String> {
        let n = self.w.slots.len();
        let inits: usize = self.w.slots.iter().map(|s| s.inits as usize).sum();
        let bound = APP_CAP + 8 * n + 2 * inits + self.injected;
        let s = self.w.net.lock();
        for (folder, count) in s.server.folder_counts() {
            if count > bound {
                return Err(format!(
                    "server footprint: {folder} holds {count} messages (bound {bound})"
                ));
            }
        }
        Ok(())
    }

    /// The rogue device (pending, never paired) forges what a non-member
    /// can: sync messages sealed with its own key to every member claiming
    /// membership, a keyring entry and a new account key, and an
    /// announcement claiming to be a founding member.
    pub(crate) fn rogue_act(&mut self, i: usize) -> Result<(), String> {
        debug_assert_eq!(self.w.slots[i].kind, SlotKind::Rogue);
        let Some(home) = self.w.slots[i].home.clone() else {
            return Ok(());
        };
        let (info, key, _) = load_identity(&home)?;
        let announce = info.folders.announce();
        let now = sma::clock::Clock::now(&*self.w.clocks[i]);
        let now_ms = sma::clock::Clock::now_ms(&*self.w.clocks[i]);
        let mut rng = ChaCha20Rng::seed_from_u64(self.w.rng.gen());
        // Members' certificates are public: read them from the announcements.
        let anns = self.announcements(&announce);
        let me = Identity {
            id: info.id.clone(),
            account: info.account.clone(),
            key,
        };
        let ts = Timestamp::from_ms(now_ms);
        let mut rogue = Engine::new(me, CoreState::default()).map_err(|e| format!("rogue: {e}"))?;
        claim_members(&mut rogue, &anns, &info.id, now, ts)?;
        let addr = format!("forged{}@evil.example", self.w.rng.gen_range(0..5));
        self.ledger.rogue_addrs.insert(addr.clone());
        let mut p = PeerState::new(&addr);
        p.last_seen = now;
        p.autocrypt_timestamp = now;
        p.public_key = Some("forged".into());
        p.stamp = Some(rogue.stamp(ts));
        forge(&mut rogue, Change::Peer(p), ts)?;
        let stamp = rogue.stamp(ts);
        let own = active_record(
            (info.id.clone(), rogue.identity().fingerprint()),
            rogue.identity().cert().to_armored(),
            "rogue".into(),
            stamp.clone(),
            now,
        );
        forge(&mut rogue, Change::Member(own), ts)?;
        forge(
            &mut rogue,
            Change::AccountKey(AccountKeyRecord {
                generation: 99,
                stamp,
                fingerprint: "F".repeat(40),
                secret: "forged".into(),
            }),
            ts,
        )?;
        let out = rogue
            .outgoing_syncs(&mut rng, ts, 86_400)
            .map_err(|e| format!("rogue seal: {e}"))?;
        let forged_ann = build_announcement(
            &mut rng,
            rogue.identity(),
            "rogue",
            now,
            now,
            AnnouncedState::Member,
            info.folders.layout,
            true,
        )
        .map_err(|e| format!("rogue announcement: {e}"))?;
        let mut messages: Vec<(String, Vec<u8>)> = out
            .into_iter()
            .map(|o| (info.folders.inbox(&o.peer), o.bytes))
            .collect();
        messages.push((announce, forged_ann));
        let appended = {
            let mut s = self.w.net.lock();
            messages
                .iter()
                .filter(|(folder, bytes)| s.server.append(folder, bytes).is_ok())
                .count()
        };
        self.injected += appended;
        self.note(format!("ROGUE forged {appended} messages"));
        Ok(())
    }

    /// The announcements in `folder` (members' certificates are public).
    fn announcements(&self, folder: &str) -> Vec<Envelope> {
        let s = self.w.net.lock();
        s.server
            .folder(folder)
            .map(|f| {
                f.messages
                    .values()
                    .filter_map(|m| Envelope::parse(&m.bytes).ok())
                    .filter(|e| e.marker.kind == Kind::Announce)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Commits `change` as the rogue's own op at `ts`.
fn forge(rogue: &mut Engine, change: Change, ts: Timestamp) -> Result<(), String> {
    rogue
        .commit(change, ts)
        .map(|_| ())
        .map_err(|e| format!("rogue commit: {e}"))
}

/// The rogue claims every member announced in `anns` (but itself, `own`)
/// as active and alive at `now`.
fn claim_members(
    rogue: &mut Engine,
    anns: &[Envelope],
    own: &DeviceId,
    now: u64,
    ts: Timestamp,
) -> Result<(), String> {
    for env in anns {
        let Ok((ann, cert)) = verify_announcement(env) else {
            continue;
        };
        if &ann.device_id == own {
            continue;
        }
        let stamp = Hlc {
            ms: 0,
            counter: 0,
            device: ann.device_id.clone(),
        };
        let claim = active_record(
            (ann.device_id.clone(), cert.fingerprint().to_string()),
            ann.cert.clone(),
            ann.name.clone(),
            stamp,
            now,
        );
        forge(rogue, Change::Member(claim), ts)?;
    }
    Ok(())
}

/// A forged member record claiming the device `(id, fingerprint)` active
/// and alive at `now`, with its certificate and name.
fn active_record(
    (id, fingerprint): (DeviceId, String),
    cert: String,
    name: String,
    name_stamp: Hlc,
    now: u64,
) -> MemberRecord {
    MemberRecord {
        id,
        fingerprint,
        cert,
        name,
        name_stamp,
        status: MemberStatus::Active,
        heartbeat: now,
        final_seq: None,
        left_seq: 0,
    }
}
