//! Taking finished operations back: recording what they reported in the
//! ledger and checking safety on the returned device.

use rand::Rng;
use sma::init::InitReport;
use sma::lifecycle::RemovalReport;
use sma::pair::JoinReport;
use sma::{DeviceId, Error, Role};
use sma_imap::ImapError;
use sma_proto::hlc::Hlc;
use sma_proto::state::{Change, PeerState, PreferEncrypt};

use crate::ledger::SentApp;
use crate::scenario::Sim;
use crate::world::{load_identity, OpResult};

/// Addresses honest devices write keyring entries for.
const PEERS: [&str; 4] = [
    "alice@example.org",
    "bob@example.org",
    "carol@example.net",
    "dave@example.com",
];

/// Whether an error is one the injected faults explain.
fn expected(e: &Error) -> bool {
    match e {
        Error::Imap(i) => matches!(
            i,
            ImapError::ConnectionLost(_)
                | ImapError::NoSuchFolder { .. }
                | ImapError::Timeout { .. }
        ),
        Error::Timeout { .. } | Error::CodeRejected(_) | Error::InboxFull(..) => true,
        _ => false,
    }
}

impl Sim {
    /// Takes back every finished operation.
    pub(crate) fn collect(&mut self) -> Result<(), String> {
        self.check_sealed_recipients()?;
        let finished = std::mem::take(&mut self.w.finished);
        for (i, done) in finished {
            self.w.slots[i].dev = done.dev;
            let name = self.w.slots[i].name.clone();
            let succeeded = done.result.succeeded();
            *self.stats.op_kinds.entry(done.result.name()).or_default() += 1;
            let line = self.take_result(i, done.result)?;
            if succeeded {
                self.check_saved(i, &name)?;
            }
            let queued = self.w.slots[i]
                .dev
                .as_ref()
                .and_then(|d| d.pending_messages().ok())
                .map_or(0, |q| q.len());
            self.note(format!("done {name} {line} (queued {queued})"));
            if let Some(dev) = self.w.slots[i].dev.as_ref() {
                self.ledger
                    .check_state(&format!("{name} ({})", dev.id()), dev.core().group())?;
                self.known_removed[i] = dev
                    .core()
                    .group()
                    .members()
                    .values()
                    .filter(|m| m.status == sma_proto::state::MemberStatus::Removed)
                    .map(|m| m.id.clone())
                    .collect();
            }
        }
        Ok(())
    }

    /// No device seals anything to a device after it learnt that device's
    /// removal: every sync or application message appended to a removed
    /// device's inbox came from a device that did not know yet (as of the
    /// end of its previous operation).
    fn check_sealed_recipients(&mut self) -> Result<(), String> {
        let journal: Vec<(usize, String, std::sync::Arc<Vec<u8>>)> = {
            let s = self.w.net.lock();
            s.server.journal[self.journal_seen..].to_vec()
        };
        self.journal_seen += journal.len();
        for (actor, folder, bytes) in journal {
            let Ok(marker) = sma_proto::envelope::peek_marker(&bytes) else {
                continue;
            };
            if !marker.kind.is_sealed() || self.w.slots[actor].kind != crate::world::Kind::Honest {
                continue;
            }
            let Some(owner) = self
                .w
                .slots
                .iter()
                .filter_map(|s| s.id.clone())
                .find(|id| folder.ends_with(id.as_str()))
            else {
                continue;
            };
            if self.known_removed[actor].contains(&owner) {
                return Err(format!(
                    "{} sealed a {} message to {owner} after it had learnt that {owner} was removed",
                    self.w.slots[actor].name, marker.kind
                ));
            }
        }
        Ok(())
    }

    /// Every operation ends by saving: after a success the state a second
    /// process reads from the store equals the device's own (this catches
    /// a change the store's incremental save missed).
    fn check_saved(&self, i: usize, name: &str) -> Result<(), String> {
        let (Some(dev), Some(home)) = (&self.w.slots[i].dev, &self.w.slots[i].home) else {
            return Ok(());
        };
        let (_, _, stored) = load_identity(home)?;
        let mine = dev.core();
        if stored.group() != mine.group() || stored.book().log() != mine.book().log() {
            return Err(format!(
                "{name}: the stored state differs from the device's after a successful operation \
                 (keyring {} vs {}, log {} vs {}, members equal: {})",
                stored.group().keyring().len(),
                mine.group().keyring().len(),
                stored.book().log().len(),
                mine.book().log().len(),
                stored.group().members() == mine.group().members()
            ));
        }
        Ok(())
    }

    /// A `remove` may have rotated the account key (whatever it reported):
    /// that key is a legitimate one.
    fn record_rotation(&mut self, i: usize) {
        if let Some(k) = self.w.slots[i]
            .dev
            .as_ref()
            .and_then(|d| d.core().group().current_account_key())
        {
            if self.ledger.account_keys.insert(k.fingerprint.clone()) {
                self.stats.rotations += 1;
            }
        }
    }

    /// Checks an error: expected ones are counted, others fail the seed.
    fn failed(&mut self, i: usize, op: &str, e: &Error) -> Result<String, String> {
        let me = self.w.slots[i].id.clone();
        if matches!(e, Error::Removed { .. })
            && me.is_some_and(|id| self.ledger.removal_attempted.contains(&id))
        {
            // Only an authenticated op may stop a device: its own state
            // lists it as removed (or it left, and wiped its state).
            let authenticated = self.w.slots[i]
                .dev
                .as_ref()
                .is_none_or(|d| d.engine().is_removed() || d.core().group().members().is_empty());
            if !authenticated {
                return Err(format!(
                    "{} stopped as removed without an authenticated removal: {e}",
                    self.w.slots[i].name
                ));
            }
            // Removed (or left) for real: this device is done.
            self.w.slots[i].gone = true;
            self.w.slots[i].dev = None;
            self.stats.ops_failed += 1;
            return Ok(format!("{op}: found itself removed"));
        }
        if expected(e) {
            self.stats.ops_failed += 1;
            Ok(format!("{op} failed: {e}"))
        } else {
            Err(format!(
                "{} {op} failed unexpectedly: {e} ({e:?})",
                self.w.slots[i].name
            ))
        }
    }

    fn take_result(&mut self, i: usize, result: OpResult) -> Result<String, String> {
        match result {
            OpResult::Init(Ok(rep)) => self.init_ok(i, &rep),
            OpResult::Init(Err(e)) => self.failed(i, "init", &e),
            OpResult::Sync(Ok(r)) => {
                self.stats.ops_ok += 1;
                self.stats.applied += r.applied as u64;
                self.stats.relayed += r.relayed as u64;
                Ok(format!("sync ok applied={} sent={}", r.applied, r.sent))
            }
            OpResult::Sync(Err(e)) => self.failed(i, "sync", &e),
            OpResult::Recv(Ok(msgs)) => {
                let me = self.w.slots[i].id.clone().ok_or("recv without id")?;
                for m in &msgs {
                    self.ledger.deliver(&me, m)?;
                    self.stats.delivered += 1;
                }
                self.stats.ops_ok += 1;
                Ok(format!("recv ok {}", msgs.len()))
            }
            OpResult::Recv(Err(e)) => self.failed(i, "recv", &e),
            OpResult::Send(Ok(rep), body) => {
                let from = self.w.slots[i].id.clone().ok_or("send without id")?;
                let to = rep.to.clone();
                self.ledger.acked.insert(
                    body,
                    SentApp {
                        message_id: rep.message_id.clone(),
                        from,
                        to,
                    },
                );
                self.stats.ops_ok += 1;
                Ok(format!("send ok {}", rep.message_id))
            }
            OpResult::Send(Err(e), _) => self.failed(i, "send", &e),
            OpResult::Pair(r, target) => self.pair_done(i, r, target),
            OpResult::Join(Ok(rep), right) => self.join_ok(i, &rep, right),
            OpResult::Join(Err(e), _) => self.failed(i, "join", &e),
            OpResult::Remove(r, target) => self.remove_done(i, r, target),
            OpResult::Leave(r) => match r {
                Ok(_) => {
                    // Its departure travels best-effort (others may only
                    // expire it later), so it is not checked as removed.
                    self.w.slots[i].gone = true;
                    self.w.slots[i].dev = None;
                    self.stats.ops_ok += 1;
                    Ok("leave ok".into())
                }
                Err(e) => self.failed(i, "leave", &e),
            },
        }
    }

    /// A device initialised: its identity (and, for a founder, the account
    /// key) enters the ledger.
    fn init_ok(&mut self, i: usize, rep: &InitReport) -> Result<String, String> {
        let home = self.w.slots[i].home.clone().ok_or("init without home")?;
        let (info, key, core) = load_identity(&home)?;
        let fpr = key.fingerprint().to_string();
        self.ledger
            .fingerprints
            .insert(info.id.clone(), fpr.clone());
        self.w.slots[i].id = Some(info.id.clone());
        self.w.slots[i].fingerprint = Some(fpr);
        if rep.role == Role::Founder {
            self.ledger.legit.insert(info.id.clone());
            if let Some(k) = core.group().current_account_key() {
                self.ledger.account_keys.insert(k.fingerprint.clone());
            }
        }
        self.stats.ops_ok += 1;
        Ok(format!("init ok as {} ({})", rep.role.as_str(), info.id))
    }

    /// A `pair` ended (well, refused or withdrawn): its offer is gone.
    fn pair_done(
        &mut self,
        i: usize,
        r: sma::Result<String>,
        target: usize,
    ) -> Result<String, String> {
        self.offers
            .retain(|o| !(o.member == i && o.joiner == target));
        match r {
            Ok(id) => {
                self.stats.ops_ok += 1;
                Ok(format!("pair ok {id}"))
            }
            // The target was paired by someone else meanwhile, or
            // its announcement vanished with a deleted folder.
            Err(e @ (Error::Usage(_) | Error::UnknownDevice(_) | Error::NoPendingDevice)) => {
                self.stats.ops_failed += 1;
                Ok(format!("pair refused: {e}"))
            }
            Err(e @ Error::PairingWithdrawn(_)) => {
                self.stats.ops_failed += 1;
                self.stats.withdrawn += 1;
                Ok(format!("pair withdrawn: {e}"))
            }
            Err(e) => self.failed(i, "pair", &e),
        }
    }

    /// A `join` succeeded, which it may only have with the right code.
    fn join_ok(&mut self, i: usize, rep: &JoinReport, right: bool) -> Result<String, String> {
        if !right {
            return Err(format!("{} joined with a wrong code", self.w.slots[i].name));
        }
        let id = DeviceId::parse(&rep.device_id).map_err(|e| e.to_string())?;
        // The member that admitted us stamped our record.
        if let Some(rec) = self.w.slots[i]
            .dev
            .as_ref()
            .and_then(|d| d.core().group().member(&id))
        {
            self.ledger
                .sponsor
                .insert(id.clone(), rec.name_stamp.device.clone());
        }
        self.ledger.joined.insert(id);
        self.stats.joins += 1;
        self.stats.ops_ok += 1;
        Ok(format!("join ok, {} members", rep.members))
    }

    /// A `remove` ended; a success enters the ledger.
    fn remove_done(
        &mut self,
        i: usize,
        r: sma::Result<RemovalReport>,
        target: DeviceId,
    ) -> Result<String, String> {
        self.record_rotation(i);
        match r {
            Ok(_) => {
                let by = self.w.slots[i].id.clone().ok_or("remove without id")?;
                self.ledger.removed.insert(target.clone(), by);
                self.stats.removals += 1;
                self.stats.ops_ok += 1;
                Ok(format!("remove ok {target}"))
            }
            Err(e @ (Error::UnknownDevice(_) | Error::NotYetKnown(_) | Error::Usage(_))) => {
                self.stats.ops_failed += 1;
                Ok(format!("remove refused: {e}"))
            }
            Err(e) => self.failed(i, "remove", &e),
        }
    }

    /// A member records a keyring change (as `sma keys observe` does:
    /// stamped, merged, queued for every peer and saved in one step).
    pub(crate) fn keyring_change(&mut self, i: usize) -> Result<(), String> {
        let addr = PEERS[self.w.rng.gen_range(0..PEERS.len())];
        let date: u64 = 1_767_000_000 + self.w.rng.gen_range(0..100_000);
        let key_no: u32 = self.w.rng.gen_range(0..1000);
        let mutual = self.w.rng.gen_bool(0.5);
        let now_ms = sma::clock::Clock::now_ms(&*self.w.clocks[i]);
        let Some(dev) = self.w.slots[i].dev.as_mut() else {
            return Ok(());
        };
        let mut p = PeerState::new(addr);
        p.last_seen = date;
        p.autocrypt_timestamp = date;
        p.public_key = Some(format!("key-{key_no}"));
        p.prefer_encrypt = if mutual {
            PreferEncrypt::Mutual
        } else {
            PreferEncrypt::NoPreference
        };
        p.stamp = Some(Hlc {
            ms: now_ms,
            counter: 0,
            device: dev.id().clone(),
        });
        let change = Change::Peer(p);
        dev.record_change(change.clone())
            .map_err(|e| format!("record_change failed: {e}"))?;
        if let Change::Peer(p) = &change {
            let origin = self.w.slots[i].id.clone().ok_or("member without id")?;
            self.ledger.committed(&origin, p);
        }
        let name = self.w.slots[i].name.clone();
        self.note(format!("{name} keyring change {addr}"));
        if let Some(dev) = self.w.slots[i].dev.as_ref() {
            self.ledger.check_state(&name, dev.core().group())?;
        }
        Ok(())
    }
}
