//! `join`: the pending device's side of pairing, in three phases — answer
//! the hello the code belongs to, wait for the member's key confirmation (or abort), then
//! open and install the welcome.

use std::time::Duration;

use serde::Serialize;
use sma_crypto::PairingCode;
use sma_imap::{FetchedHeader, Transport, Uid};
use sma_proto::envelope::{peek_marker, Body, Envelope, Kind};
use sma_proto::pairing::{code_fits, JoinerConfirmed, JoinerPairing};
use sma_proto::payload::{
    self, AnnouncedState, PairAbort, PairConfirm, PairHello, PairWelcome, Welcome, WelcomePart,
};
use sma_proto::{welcome_parts, DeviceId, MessageId, PeerMisbehaved, ProtoError};
use tokio::time::Instant;

use crate::config::Role;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::pair::{
    delete_by_message_id, pairing_in_headers, pairing_message, wait_for_change, Awaiting, Found,
    PairingInbox,
};

/// What `join` did.
#[derive(Clone, Debug, Serialize)]
pub struct JoinReport {
    /// Always `joined`.
    pub event: &'static str,
    /// Our id.
    pub device_id: String,
    /// Active members, us included.
    pub members: usize,
}

/// Progress of `join` while the welcome (the whole group state) arrives
/// and is installed: stage `welcome` counts bytes downloaded, stage
/// `keyring` counts correspondents installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JoinProgress {
    /// Always `progress`.
    pub event: &'static str,
    /// `welcome` or `keyring`.
    pub stage: &'static str,
    /// Units done.
    pub done: u64,
    /// Units in total.
    pub total: u64,
}

impl JoinProgress {
    fn new(stage: &'static str, done: u64, total: u64) -> Self {
        JoinProgress {
            event: "progress",
            stage,
            done,
            total,
        }
    }
}

/// Welcomes from `member` among `headers` not looked at yet: UID and
/// size, from the headers alone.
fn new_welcomes(
    headers: &[FetchedHeader],
    member: &DeviceId,
    seen: &std::collections::BTreeSet<Uid>,
) -> Vec<(Uid, u64)> {
    headers
        .iter()
        .filter(|h| !seen.contains(&h.uid))
        .filter(|h| {
            peek_marker(&h.header).is_ok_and(|m| m.kind == Kind::PairWelcome && &m.from == member)
        })
        .map(|h| (h.uid, u64::from(h.size)))
        .collect()
}

impl Device {
    /// `join`: completes pairing on the pending device with the typed code.
    pub async fn join<T: Transport>(
        &mut self,
        t: &mut T,
        code: &PairingCode,
        timeout: Duration,
    ) -> Result<JoinReport> {
        self.join_with_progress(t, code, timeout, |_| {}).await
    }

    /// [`Device::join`], reporting the download and installation of the
    /// welcome (which carries the whole keyring) to `on_progress`.
    pub async fn join_with_progress<T: Transport>(
        &mut self,
        t: &mut T,
        code: &PairingCode,
        timeout: Duration,
        mut on_progress: impl FnMut(&JoinProgress),
    ) -> Result<JoinReport> {
        match self.info.role {
            Role::Pending => {}
            Role::Removed => return Err(self.removed_error()),
            _ => return Err(Error::AlreadyMember),
        }
        let deadline = Deadline {
            at: self.clock.deadline(timeout),
            secs: timeout.as_secs(),
        };
        // A dropped connection is resumed: our reply may already be on its
        // way, and the member takes one reply per code.
        let t = &mut sma_imap::Resuming::new(t);
        let mut inbox = PairingInbox::new(self.inbox());
        // 1. Answer the hello the code belongs to.
        let (hello, others) = self.await_hello(t, &mut inbox, code, &deadline).await?;
        self.remember_fallback(t);
        let member_id = hello.payload.member_id.clone();
        let (state, reply) = JoinerPairing::respond(
            &mut self.rng,
            &self.info.account,
            &self.info.id,
            &self.engine.identity().cert(),
            &hello.payload,
            code,
        )?;
        let member_inbox = self.info.folders.inbox(&member_id);
        let (reply_id, bytes) = pairing_message(self, Kind::PairReply, &member_id, &reply);
        t.append(&member_inbox, &[], &bytes).await?;
        // Our inbox is still selected (an APPEND leaves the selection).
        let del = self.deletion(t.capabilities());
        del.remove(t, inbox.folder(), &[hello.uid]).await?;
        // 2. The member's key confirmation, or its abort.
        let confirmed = match self
            .await_confirmation(t, &mut inbox, state, &member_id, &deadline)
            .await
        {
            Ok(confirmed) => confirmed,
            Err(e) => {
                if matches!(e, Error::Timeout { .. }) {
                    delete_by_message_id(t, &del, &member_inbox, &reply_id).await;
                }
                return Err(e);
            }
        };
        // 3. The welcome (and its parts), sealed to the confirmed session
        //    and our device key.
        let (welcome, mut uids) = self
            .await_welcome(
                t,
                &mut inbox,
                &confirmed,
                &member_id,
                &deadline,
                &mut on_progress,
            )
            .await?;
        // The confirmation goes with the welcome: one deletion.
        uids.extend(&confirmed.uids);
        del.remove(t, inbox.folder(), &uids).await?;
        self.install_welcome(welcome, &mut on_progress)?;
        // Other members' requests go: their `pair` sees it and ends.
        for (_, id) in &others {
            delete_by_message_id(t, &del, inbox.folder(), id).await;
        }
        self.announce(t, AnnouncedState::Member, false).await?;
        let members = self.engine.group().active_members().count();
        Ok(JoinReport {
            event: "joined",
            device_id: self.info.id.to_string(),
            members,
        })
    }

    /// Waits for a hello the code fits (PROTOCOL 9.3 step 2): the newest
    /// per member counts, older ones and forged ones are deleted. If hellos
    /// wait but the code fits none, nothing is answered (exit 3, no code
    /// used).
    async fn await_hello<T: Transport>(
        &mut self,
        t: &mut T,
        inbox: &mut PairingInbox,
        code: &PairingCode,
        deadline: &Deadline,
    ) -> Result<(Found<PairHello>, Vec<(DeviceId, MessageId)>)> {
        loop {
            let found: Vec<Found<PairHello>> = inbox.find(t, Kind::PairHello, None).await?;
            let hellos = Hellos::sort(found, code);
            if !hellos.stale.is_empty() {
                self.deletion(t.capabilities())
                    .remove(t, inbox.folder(), &hellos.stale)
                    .await?;
            }
            if let Some(chosen) = hellos.chosen {
                return Ok((chosen, hellos.others));
            }
            if !hellos.others.is_empty() {
                let members: Vec<String> =
                    hellos.others.iter().map(|(m, _)| m.to_string()).collect();
                return Err(Error::CodeRejected(format!(
                    "the code fits none of the pairing requests waiting for this device (from {}); nothing was sent and no code was used — check the code shown by `sma pair` and type it again",
                    members.join(", ")
                )));
            }
            deadline.check(
                &*self.clock,
                "a member device to run `sma pair` (no pairing request arrived)",
            )?;
            wait_for_change(t, &*self.clock, deadline.at, Awaiting::Person).await?;
        }
    }

    /// Waits for the member's confirmation of our attempt and checks it;
    /// one read of our inbox per wait looks for both it and an abort. An
    /// abort or a wrong tag means the code was rejected (exit 3). The
    /// confirmations stay in the inbox (the caller deletes them with the
    /// welcome, which often came in the same read).
    async fn await_confirmation<T: Transport>(
        &mut self,
        t: &mut T,
        inbox: &mut PairingInbox,
        state: JoinerPairing,
        member_id: &DeviceId,
        deadline: &Deadline,
    ) -> Result<Confirmed> {
        let since = self.clock.instant();
        loop {
            let headers = inbox.read(t).await?;
            let aborts: Vec<Found<PairAbort>> =
                pairing_in_headers(t, &headers, Kind::PairAbort, Some(member_id)).await?;
            if aborts.iter().any(|a| &a.payload.attempt == state.attempt()) {
                let uids: Vec<_> = aborts.iter().map(|a| a.uid).collect();
                self.deletion(t.capabilities())
                    .remove(t, inbox.folder(), &uids)
                    .await?;
                return Err(Error::CodeRejected(format!(
                    "device {member_id} rejected the code; it is burnt — run `sma pair` there again and type the new code"
                )));
            }
            let confirms: Vec<Found<PairConfirm>> =
                pairing_in_headers(t, &headers, Kind::PairConfirm, Some(member_id)).await?;
            if let Some(c) = confirms
                .iter()
                .find(|c| &c.payload.attempt == state.attempt())
            {
                let uids: Vec<Uid> = confirms.iter().map(|c| c.uid).collect();
                let proof = state.on_confirm(&c.payload).map_err(|_| {
                    Error::CodeRejected(format!(
                        "device {member_id} did not prove knowledge of the code; pairing aborted — run `sma pair` again"
                    ))
                });
                if proof.is_err() {
                    self.deletion(t.capabilities())
                        .remove(t, inbox.folder(), &uids)
                        .await?;
                }
                return Ok(Confirmed {
                    proof: proof?,
                    uids,
                    headers,
                });
            }
            deadline.check(&*self.clock, "the member device to confirm the code")?;
            wait_for_change(t, &*self.clock, deadline.at, Awaiting::Answer { since }).await?;
        }
    }

    /// Waits for the welcome of our attempt and all its parts (PROTOCOL
    /// 9.4), opening each, reporting the download; returns the assembled
    /// welcome and the UIDs of its messages. Each message is downloaded
    /// once: one of another attempt is left alone and not fetched again.
    async fn await_welcome<T: Transport>(
        &mut self,
        t: &mut T,
        inbox: &mut PairingInbox,
        confirmed: &Confirmed,
        member_id: &DeviceId,
        deadline: &Deadline,
        on_progress: &mut impl FnMut(&JoinProgress),
    ) -> Result<(Welcome, Vec<Uid>)> {
        let proof = &confirmed.proof;
        let since = self.clock.instant();
        let mut seen = std::collections::BTreeSet::new();
        let mut got = WelcomeSoFar::default();
        // The read that found the confirmation first: the welcome is sent
        // with it.
        let mut headers = Some(confirmed.headers.clone());
        loop {
            let headers = match headers.take() {
                Some(h) => h,
                None => inbox.read(t).await?,
            };
            for (uid, size) in new_welcomes(&headers, member_id, &seen) {
                seen.insert(uid);
                on_progress(&JoinProgress::new("welcome", got.bytes, got.bytes + size));
                let Some(found) = fetch_welcome(t, uid).await? else {
                    continue;
                };
                if &found.payload.attempt == proof.attempt() {
                    got.add(proof, &self.engine.identity().key, uid, &found.payload)?;
                }
                got.bytes += size;
                on_progress(&JoinProgress::new("welcome", got.bytes, got.bytes));
            }
            if let Some(done) = got.complete()? {
                return Ok(done);
            }
            deadline.check(&*self.clock, got.waiting_for())?;
            wait_for_change(t, &*self.clock, deadline.at, Awaiting::Answer { since }).await?;
        }
    }

    /// Installs a welcome that opened: the joiner's engine is built from
    /// it (the engine checks that it names us and keeps the protocol's
    /// rules), then stored.
    fn install_welcome(
        &mut self,
        welcome: Welcome,
        on_progress: &mut impl FnMut(&JoinProgress),
    ) -> Result<()> {
        let total = welcome.state.keyring().len() as u64;
        on_progress(&JoinProgress::new("keyring", 0, total));
        let now = self.timestamp();
        self.engine.install_welcome(welcome, now)?;
        self.info.role = Role::Member;
        self.save()?;
        on_progress(&JoinProgress::new("keyring", total, total));
        Ok(())
    }
}

/// The member's confirmation of our attempt, checked.
struct Confirmed {
    /// The confirmed session, which opens the welcome.
    proof: JoinerConfirmed,
    /// The confirmations from the member in our inbox (to delete).
    uids: Vec<Uid>,
    /// The read of our inbox that found it.
    headers: Vec<FetchedHeader>,
}

/// The welcome messages of our attempt opened so far.
#[derive(Default)]
struct WelcomeSoFar {
    welcome: Option<Welcome>,
    parts: std::collections::BTreeMap<u32, WelcomePart>,
    uids: Vec<Uid>,
    bytes: u64,
}

impl WelcomeSoFar {
    /// Opens one message of our attempt: the welcome or a part.
    fn add(
        &mut self,
        proof: &JoinerConfirmed,
        key: &sma_crypto::DeviceKey,
        uid: Uid,
        message: &PairWelcome,
    ) -> Result<()> {
        match message.part {
            None => {
                let welcome = proof.open_welcome(message, key)?;
                if welcome.parts > welcome_parts::MAX_PARTS {
                    return Err(ProtoError::Peer(PeerMisbehaved::rule(
                        "welcome",
                        "announces too many parts",
                    ))
                    .into());
                }
                self.welcome = Some(welcome);
            }
            Some(index) => {
                self.parts.insert(index, proof.open_part(message, key)?);
            }
        }
        self.uids.push(uid);
        Ok(())
    }

    /// The assembled welcome and its UIDs, once every part is here.
    fn complete(&mut self) -> Result<Option<(Welcome, Vec<Uid>)>> {
        let Some(n) = self.welcome.as_ref().map(|w| w.parts) else {
            return Ok(None);
        };
        if !(0..n).all(|i| self.parts.contains_key(&i)) {
            return Ok(None);
        }
        let Some(welcome) = self.welcome.take() else {
            return Ok(None);
        };
        let parts = std::mem::take(&mut self.parts).into_values().collect();
        let welcome = welcome_parts::assemble(welcome, parts)?;
        Ok(Some((welcome, std::mem::take(&mut self.uids))))
    }

    /// What a timeout is waiting for.
    fn waiting_for(&self) -> &'static str {
        if self.welcome.is_some() {
            "the rest of the welcome from the member device"
        } else {
            "the welcome from the member device"
        }
    }
}

/// Downloads one welcome (at most the welcome cap); `None` if it is not a
/// readable welcome.
async fn fetch_welcome<T: Transport>(t: &mut T, uid: Uid) -> Result<Option<Found<PairWelcome>>> {
    let cap = Kind::PairWelcome.size_cap() as u32;
    let Some(msg) = t.fetch_messages(&[uid], cap).await?.into_iter().next() else {
        return Ok(None);
    };
    let Some(raw) = msg.body else {
        tracing::warn!(
            uid,
            size = msg.size,
            "welcome larger than the 16 MiB cap; ignored"
        );
        return Ok(None);
    };
    let parsed = Envelope::parse(&raw).and_then(|env| match env.body {
        Body::Plain { payload } => Ok((env.marker, payload::from_json::<PairWelcome>(&payload)?)),
        _ => Err(sma_proto::InvalidMessage::Missing("pairing body")),
    });
    match parsed {
        Ok((marker, payload)) => Ok(Some(Found {
            uid,
            marker,
            payload,
        })),
        Err(e) => {
            tracing::warn!(uid, error = %e, "invalid welcome ignored");
            Ok(None)
        }
    }
}

/// When a `join` gives up, and how to say so.
struct Deadline {
    at: Instant,
    secs: u64,
}

impl Deadline {
    fn check(&self, clock: &dyn crate::clock::Clock, what: &str) -> Result<()> {
        if clock.instant() >= self.at {
            return Err(Error::Timeout {
                what: what.to_owned(),
                secs: self.secs,
            });
        }
        Ok(())
    }
}

/// The hellos in our inbox, sorted for a typed code.
struct Hellos {
    /// The newest hello the code fits (of all members' newest).
    chosen: Option<Found<PairHello>>,
    /// The newest hello of every other member: left alone unless we join,
    /// then deleted (by Message-ID) so that their `pair` ends.
    others: Vec<(DeviceId, MessageId)>,
    /// Older hellos of a member and forged ones (sender is not the member
    /// it names): deleted now.
    stale: Vec<Uid>,
}

impl Hellos {
    fn sort(mut found: Vec<Found<PairHello>>, code: &PairingCode) -> Hellos {
        found.sort_by_key(|h| std::cmp::Reverse(h.uid));
        let mut newest: std::collections::BTreeSet<DeviceId> = Default::default();
        let (mut fitting, mut others, mut stale) = (Vec::new(), Vec::new(), Vec::new());
        for h in found {
            if h.marker.from != h.payload.member_id {
                tracing::warn!(uid = h.uid, "a forged pairing request was deleted");
                stale.push(h.uid);
            } else if !newest.insert(h.payload.member_id.clone()) {
                stale.push(h.uid);
            } else if code_fits(&h.payload, code) {
                fitting.push(h);
            } else {
                others.push((h.payload.member_id.clone(), h.marker.id.clone()));
            }
        }
        // Several members' requests fit (one chance in ten for two): the
        // newest is answered, the others wait like non-fitting ones.
        let mut fitting = fitting.into_iter();
        let chosen = fitting.next();
        others.extend(fitting.map(|h| (h.payload.member_id.clone(), h.marker.id.clone())));
        Hellos {
            chosen,
            others,
            stale,
        }
    }
}
