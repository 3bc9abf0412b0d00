//! `pair` (on a member device) and the pairing-message plumbing shared
//! with `join` (see `join.rs`).

use std::time::Duration;

use tokio::time::Instant;

use serde::Serialize;
use sma_crypto::{Certificate, PairingCode};
use sma_imap::{ImapError, Transport, Uid, UidRange};

use crate::deletion::Deletion;
use sma_proto::engine::membership::Joiner;
use sma_proto::envelope::{peek_marker, Body, Envelope, Kind, Marker, Recipient};
use sma_proto::pairing::MemberPairing;
use sma_proto::payload::{self, AnnouncedState, PairAbort, PairReply};
use sma_proto::state::MemberStatus;
use sma_proto::{DeviceId, MessageId, ProtoError};
use tracing::{info, warn};

use crate::announce;
use crate::device::Device;
use crate::error::{Error, Result};

pub use crate::join::{JoinProgress, JoinReport};

/// Default time `pair` waits for the joiner.
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(600);
/// Default time `join` waits for the member.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Progress of `pair`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PairEvent {
    /// Show this code to the person.
    Code {
        /// The pairing code, grouped.
        code: String,
        /// The pending device.
        device_id: String,
        /// The pending device's key fingerprint, to compare with what
        /// `init` and `join` print on the new device.
        fingerprint: String,
    },
    /// The device is now a member.
    Paired {
        /// The new member.
        device_id: String,
    },
}

/// A device `pair` could pair.
#[derive(Clone, Debug)]
pub struct PendingDevice {
    /// Its current announcement.
    pub announcement: announce::SeenAnnouncement,
    /// When its id is announced under more than one key: all of them (it
    /// is refused).
    pub look_alike: Option<Vec<String>>,
}

/// A pairing message found in an inbox.
pub(crate) struct Found<T> {
    pub(crate) uid: Uid,
    pub(crate) marker: Marker,
    pub(crate) payload: T,
}

/// An inbox read again and again during a pairing. Each read selects it
/// (read-write) and asks, in the flight that reads the headers, for the
/// bodies of the messages that arrived since the last read: pairing
/// messages are small, so they come with their headers and
/// [`pairing_in_headers`] needs no second round trip.
pub(crate) struct PairingInbox {
    folder: String,
    /// The first UID not seen by an earlier read.
    next: Uid,
}

impl PairingInbox {
    /// Reads of `folder`, the first of which asks for the bodies from UID 1.
    pub(crate) fn new(folder: String) -> Self {
        PairingInbox { folder, next: 1 }
    }

    /// The folder read.
    pub(crate) fn folder(&self) -> &str {
        &self.folder
    }

    /// Every header of the folder, which stays selected.
    pub(crate) async fn read<T: Transport>(
        &mut self,
        t: &mut T,
    ) -> Result<Vec<sma_imap::FetchedHeader>> {
        let (_, headers) = t
            .open_and_fetch_headers(&self.folder, false, UidRange::all(), Some(self.next))
            .await?;
        if let Some(last) = headers.iter().map(|h| h.uid).max() {
            self.next = self.next.max(last.saturating_add(1));
        }
        Ok(headers)
    }

    /// [`Self::read`], then the pairing messages of `kind` from `sender`
    /// (any if None) in it.
    pub(crate) async fn find<T: Transport, P: for<'de> serde::Deserialize<'de>>(
        &mut self,
        t: &mut T,
        kind: Kind,
        sender: Option<&DeviceId>,
    ) -> Result<Vec<Found<P>>> {
        let headers = self.read(t).await?;
        pairing_in_headers(t, &headers, kind, sender).await
    }
}

/// The pairing messages of `kind` from `sender` among `headers` of the
/// selected folder, fetched and parsed (invalid ones are skipped).
pub(crate) async fn pairing_in_headers<T: Transport, P: for<'de> serde::Deserialize<'de>>(
    t: &mut T,
    headers: &[sma_imap::FetchedHeader],
    kind: Kind,
    sender: Option<&DeviceId>,
) -> Result<Vec<Found<P>>> {
    let uids: Vec<Uid> = headers
        .iter()
        .filter(|h| {
            peek_marker(&h.header)
                .is_ok_and(|m| m.kind == kind && sender.is_none_or(|s| &m.from == s))
        })
        .map(|h| h.uid)
        .collect();
    let mut out = Vec::new();
    for msg in t.fetch_messages(&uids, kind.size_cap() as u32).await? {
        let Some(raw) = msg.body else { continue };
        let parsed = Envelope::parse(&raw).and_then(|env| match env.body {
            Body::Plain { payload } => Ok((env.marker, payload::from_json::<P>(&payload)?)),
            _ => Err(sma_proto::InvalidMessage::Missing("pairing body")),
        });
        match parsed {
            Ok((marker, payload)) => out.push(Found {
                uid: msg.uid,
                marker,
                payload,
            }),
            Err(e) => warn!(uid = msg.uid, error = %e, "invalid pairing message ignored"),
        }
    }
    Ok(out)
}

pub(crate) fn pairing_message<P: serde::Serialize>(
    dev: &mut Device,
    kind: Kind,
    to: &DeviceId,
    payload: &P,
) -> (MessageId, Vec<u8>) {
    let id = MessageId::random(&mut dev.rng);
    let env = Envelope {
        account: dev.info.account.clone(),
        date: dev.now(),
        marker: Marker {
            kind,
            from: dev.info.id.clone(),
            to: Recipient::Device(to.clone()),
            id: id.clone(),
        },
        body: Body::Plain {
            payload: payload::to_json(payload).to_vec(),
        },
    };
    (id, env.to_bytes())
}

/// A person is waiting during pairing: poll at least this often even if the
/// server's IDLE is slow or silent (Courier reports changes after 60 s).
pub const PAIRING_POLL: Duration = Duration::from_secs(3);

/// How soon the other device's program answers a pairing message (no
/// person involved): within this window after our message, poll instead of
/// IDLE, whose notifications some servers delay (Dovecot: ~0.5 s each).
pub const ANSWER_WINDOW: Duration = Duration::from_secs(5);

/// Poll period within [`ANSWER_WINDOW`]: at most 2 commands per period.
pub const ANSWER_POLL: Duration = Duration::from_millis(40);

/// Who the wait is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Awaiting {
    /// A person (typing the code, starting `join`): IDLE.
    Person,
    /// The other device's program, which received our message at `since`.
    Answer {
        /// When we sent (or received) what it answers.
        since: Instant,
    },
}

/// Waits on the selected folder (our inbox, which the caller has just
/// read) until it changes, [`PAIRING_POLL`] passes, or the deadline, and
/// the caller reads it again. Not re-selecting it before IDLE matters: a
/// message that arrived since that read would be counted by a fresh SELECT
/// and then never reported by IDLE. While an answer is due
/// ([`Awaiting::Answer`] within [`ANSWER_WINDOW`]) it only sleeps
/// [`ANSWER_POLL`], so the caller's next read polls.
///
/// Returns whether IDLE ended quietly (no change within [`PAIRING_POLL`]).
pub(crate) async fn wait_for_change<T: Transport>(
    t: &mut T,
    clock: &dyn crate::clock::Clock,
    deadline: Instant,
    awaiting: Awaiting,
) -> Result<bool> {
    let left = deadline.saturating_duration_since(clock.instant());
    if left.is_zero() {
        return Ok(false);
    }
    match awaiting {
        Awaiting::Answer { since }
            if clock.instant().saturating_duration_since(since) < ANSWER_WINDOW =>
        {
            tokio::time::sleep(left.min(ANSWER_POLL)).await;
            Ok(false)
        }
        _ => Ok(t.idle(left.min(PAIRING_POLL)).await? == sma_imap::IdleOutcome::TimedOut),
    }
}

/// Whether the message `id` is still in `folder` (a missing folder holds
/// nothing). Leaves `folder` selected read-only.
async fn still_in<T: Transport>(t: &mut T, folder: &str, id: &MessageId) -> Result<bool> {
    match t.examine(folder).await {
        Ok(_) => {}
        Err(ImapError::NoSuchFolder { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let found = t
        .search_header("Message-ID", &sma_proto::envelope::message_id_for(id))
        .await?;
    Ok(!found.is_empty())
}

pub(crate) async fn delete_by_message_id<T: Transport>(
    t: &mut T,
    del: &Deletion,
    folder: &str,
    id: &MessageId,
) {
    let result = async {
        t.select(folder).await?;
        let uids = t
            .search_header("Message-ID", &sma_proto::envelope::message_id_for(id))
            .await?;
        del.remove(t, folder, &uids).await?;
        Ok::<_, ImapError>(())
    }
    .await;
    if let Err(e) = result {
        warn!(error = %e, "could not clean up a pairing message");
    }
}

impl Device {
    /// Pending devices that could be paired: announced as pending, not
    /// members; oldest first.
    pub async fn pending_devices<T: Transport>(&mut self, t: &mut T) -> Result<Vec<PendingDevice>> {
        let all = announce::read_all(t, &self.info.folders.announce())
            .await?
            .unwrap_or_default();
        let group = self.engine.group();
        let mut pending: Vec<_> = announce::latest_per_device(&all, self.now())
            .into_values()
            .filter(|s| {
                s.ann.state == AnnouncedState::Pending
                    && match group.member(&s.ann.device_id) {
                        None => true,
                        // Admitted by a pairing whose welcome never arrived
                        // (the member crashed or lost the connection after
                        // admitting it): it still announces itself pending
                        // with the same key, so it can be paired again.
                        Some(m) => {
                            m.status == MemberStatus::Active && m.fingerprint == s.fingerprint
                        }
                    }
            })
            .collect();
        let now = self.now();
        pending.sort_by_key(|s| {
            (
                s.ann
                    .heartbeat
                    .min(now + crate::lifecycle::HEARTBEAT_FUTURE_SLACK_SECS),
                s.uid,
            )
        });
        // An id announced under two keys is an impostor's work: such a
        // device is refused rather than one of its keys picked.
        Ok(pending
            .into_iter()
            .map(|s| {
                let keys = announce::fingerprints_of(&all, &s.ann.device_id);
                PendingDevice {
                    look_alike: (keys.len() > 1).then(|| keys.into_iter().collect()),
                    announcement: s,
                }
            })
            .collect())
    }

    /// `pair`: shows a code for a pending device and waits until it joined.
    pub async fn pair<T: Transport>(
        &mut self,
        t: &mut T,
        device: Option<&DeviceId>,
        timeout: Duration,
        mut on_event: impl FnMut(&PairEvent),
    ) -> Result<String> {
        self.require_member()?;
        let deadline = self.clock.deadline(timeout);
        // The joiner is waiting and the code allows one attempt: a dropped
        // connection is resumed, not the exchange started over.
        let t = &mut sma_imap::Resuming::new(t);
        // Bring our state up to date first: the welcome carries it.
        self.process_inbox(t).await?;
        let target = self.choose_joiner(t, device).await?;
        let joiner = Candidate::of(&target)?;
        let code = PairingCode::generate(&mut self.rng);
        let (state, hello) = MemberPairing::start(
            &mut self.rng,
            &self.info.account,
            &self.info.id,
            &self.engine.identity().cert(),
            &joiner.id,
            joiner.cert.clone(),
            &code,
        );
        let (hello_id, bytes) = pairing_message(self, Kind::PairHello, &joiner.id, &hello);
        t.append(&joiner.inbox(self), &[], &bytes).await?;
        on_event(&PairEvent::Code {
            code: code.display_grouped(),
            device_id: joiner.id.to_string(),
            fingerprint: joiner.cert.fingerprint().to_string(),
        });
        drop(code);
        let attempt = (&joiner, &hello_id);
        let (reply, reply_uids) = self
            .await_reply(t, attempt, state.attempt(), (deadline, timeout))
            .await?;
        let confirmed = match state.on_reply(&reply.payload) {
            Ok(c) => c,
            Err(e) => {
                let inbox = self.inbox();
                self.deletion(t.capabilities())
                    .remove(t, &inbox, &reply_uids)
                    .await?;
                return Err(self.reject_reply(t, attempt, &reply.payload, e).await);
            }
        };
        self.admit_and_welcome(t, (&joiner, &target.ann), confirmed, &reply_uids)
            .await?;
        on_event(&PairEvent::Paired {
            device_id: joiner.id.to_string(),
        });
        Ok(joiner.id.to_string())
    }

    /// The pending device to pair: `device`, or the newest candidate.
    /// Refuses look-alikes (one id under two keys).
    async fn choose_joiner<T: Transport>(
        &mut self,
        t: &mut T,
        device: Option<&DeviceId>,
    ) -> Result<announce::SeenAnnouncement> {
        let pending = self.pending_devices(t).await?;
        let target = match device {
            Some(id) => pending
                .iter()
                .find(|s| &s.announcement.ann.device_id == id)
                .ok_or_else(|| match self.engine.group().status_of(id) {
                    Some(_) => Error::Usage(format!(
                        "device {id} is already known to the group; only pending devices can be paired"
                    )),
                    None => Error::UnknownDevice(id.to_string()),
                })?,
            None => pending.last().ok_or(Error::NoPendingDevice)?,
        };
        if let Some(fingerprints) = &target.look_alike {
            return Err(Error::LookAlike {
                device_id: target.announcement.ann.device_id.to_string(),
                fingerprints: fingerprints.clone(),
            });
        }
        Ok(target.announcement.clone())
    }

    /// Waits for the joiner's reply to our attempt (deleting replies of
    /// other attempts) and returns it with the UIDs of its copies, which
    /// the caller deletes once it answered (our inbox stays selected);
    /// on timeout deletes our hello. When a quiet wait
    /// finds our hello gone and the next read of our inbox no reply, the
    /// joiner took another member's request (it deletes the others once
    /// it joined): [`Error::PairingWithdrawn`].
    async fn await_reply<T: Transport>(
        &mut self,
        t: &mut T,
        (joiner, hello_id): (&Candidate, &MessageId),
        attempt: &sma_proto::RandomId,
        (deadline, timeout): (Instant, Duration),
    ) -> Result<(Found<PairReply>, Vec<Uid>)> {
        let inbox = self.inbox();
        let mut reader = PairingInbox::new(inbox.clone());
        let mut hello_gone = false;
        loop {
            let replies: Vec<Found<PairReply>> =
                reader.find(t, Kind::PairReply, Some(&joiner.id)).await?;
            let (ours, stale): (Vec<_>, Vec<_>) = replies
                .into_iter()
                .partition(|r| &r.payload.attempt == attempt);
            if !stale.is_empty() {
                let uids: Vec<_> = stale.iter().map(|r| r.uid).collect();
                self.deletion(t.capabilities())
                    .remove(t, &inbox, &uids)
                    .await?;
            }
            // The first counts (one reply per code); a copy left by a
            // resumed APPEND goes with it.
            let uids: Vec<_> = ours.iter().map(|r| r.uid).collect();
            if let Some(r) = ours.into_iter().next() {
                return Ok((r, uids));
            }
            if hello_gone {
                return Err(Error::PairingWithdrawn(joiner.id.to_string()));
            }
            if self.clock.instant() >= deadline {
                let del = self.deletion(t.capabilities());
                delete_by_message_id(t, &del, &joiner.inbox(self), hello_id).await;
                return Err(Error::Timeout {
                    what: format!("device {} to run `sma join` with the code", joiner.id),
                    secs: timeout.as_secs(),
                });
            }
            if wait_for_change(t, &*self.clock, deadline, Awaiting::Person).await? {
                hello_gone = !still_in(t, &joiner.inbox(self), hello_id).await?;
            }
        }
    }

    /// A bad reply burns the code: abort the attempt, delete our hello, and
    /// say so (exit 3).
    async fn reject_reply<T: Transport>(
        &mut self,
        t: &mut T,
        (joiner, hello_id): (&Candidate, &MessageId),
        reply: &PairReply,
        e: ProtoError,
    ) -> Error {
        let abort = PairAbort {
            attempt: reply.attempt.clone(),
            reason: "code-rejected".into(),
        };
        let (_, bytes) = pairing_message(self, Kind::PairAbort, &joiner.id, &abort);
        let inbox = joiner.inbox(self);
        if let Err(e) = t.append(&inbox, &[], &bytes).await {
            return e.into();
        }
        let del = self.deletion(t.capabilities());
        delete_by_message_id(t, &del, &inbox, hello_id).await;
        let id = &joiner.id;
        Error::CodeRejected(match e {
            ProtoError::CodeRejected => format!(
                "device {id} answered with a different code; the code is burnt — run `sma pair` again for a fresh code"
            ),
            other => format!(
                "pairing with device {id} failed ({}); the code is burnt — run `sma pair` again",
                sma_proto::error::chain(&other)
            ),
        })
    }

    /// Admits the joiner into our state (stored before anything is sent),
    /// then hands it the state: confirmation and welcome in one flight,
    /// and deletes its reply (`reply_uids` in our inbox, still selected).
    /// Tells the other members with the next sync (now, if it works).
    async fn admit_and_welcome<T: Transport>(
        &mut self,
        t: &mut T,
        (joiner, ann): (&Candidate, &sma_proto::payload::Announcement),
        confirmed: sma_proto::pairing::MemberConfirmed,
        reply_uids: &[Uid],
    ) -> Result<()> {
        let now = self.timestamp();
        let welcome = self.engine.admit(
            &Joiner {
                id: &joiner.id,
                cert: &joiner.cert,
                name: &ann.name,
                heartbeat: ann.heartbeat,
            },
            now,
        )?;
        // Sealed before the admission is stored: a welcome that cannot be
        // handed over leaves the joiner unadmitted.
        let sealed = confirmed
            .finish(&mut self.rng, &welcome, &self.engine.identity().key)
            .map_err(Error::from);
        let messages = match sealed
            .and_then(|(confirm, welcomes)| self.welcome_messages(&joiner.id, &confirm, &welcomes))
        {
            Ok(m) => m,
            Err(e) => {
                self.discard_unsaved()?;
                return Err(e);
            }
        };
        self.save()?;
        let inbox = joiner.inbox(self);
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        t.append_all(&inbox, &refs).await?;
        // Answered: the reply goes (a copy left behind is a stale reply
        // the next `pair` deletes).
        let ours = self.inbox();
        if let Err(e) = self
            .deletion(t.capabilities())
            .remove(t, &ours, reply_uids)
            .await
        {
            warn!(error = %e, "could not delete the joiner's reply");
        }
        info!(device = %joiner.id, "paired; telling the other members");
        if let Err(e) = self.send_syncs(t).await {
            warn!(error = %e, "could not tell the other members yet; the next sync will");
        }
        Ok(())
    }
}

impl Device {
    /// The confirmation, the welcome and its parts as messages, each
    /// within the welcome cap (else a clear error: the joiner would have
    /// to drop it).
    fn welcome_messages(
        &mut self,
        joiner: &DeviceId,
        confirm: &sma_proto::payload::PairConfirm,
        welcomes: &[sma_proto::payload::PairWelcome],
    ) -> Result<Vec<Vec<u8>>> {
        let mut out = vec![pairing_message(self, Kind::PairConfirm, joiner, confirm).1];
        let cap = Kind::PairWelcome.size_cap();
        for w in welcomes {
            let (_, bytes) = pairing_message(self, Kind::PairWelcome, joiner, w);
            if bytes.len() > cap {
                return Err(Error::Local(format!(
                    "the group state does not fit in a welcome: a message of {} MiB, over the {} MiB cap; \
                     the device was not admitted",
                    bytes.len() >> 20,
                    cap >> 20
                )));
            }
            out.push(bytes);
        }
        Ok(out)
    }
}

/// The device being paired: its id and the certificate of its announcement.
struct Candidate {
    id: DeviceId,
    cert: Certificate,
}

impl Candidate {
    /// Reads the announcement's certificate; one that cannot be encrypted
    /// to cannot be paired.
    fn of(ann: &announce::SeenAnnouncement) -> Result<Candidate> {
        let id = ann.ann.device_id.clone();
        let cert = Certificate::from_armored(&ann.ann.cert).map_err(ProtoError::from)?;
        if !cert.can_encrypt() {
            return Err(Error::Server(format!(
                "device {id} announced a certificate without an encryption subkey; it cannot be paired"
            )));
        }
        Ok(Candidate { id, cert })
    }

    fn inbox(&self, dev: &Device) -> String {
        dev.info.folders.inbox(&self.id)
    }
}

/// The first 20 hex digits of a fingerprint in groups of four, as people
/// compare them on two screens (80 bits: a look-alike key cannot be made
/// to match).
pub fn short_fingerprint(fingerprint: &str) -> String {
    let digits: Vec<char> = fingerprint
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(20)
        .collect();
    digits
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}
