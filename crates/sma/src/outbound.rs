//! Sending: coalesced sync messages and application messages.

use serde::Serialize;
use sma_imap::{ImapError, Transport, Uid};
use sma_proto::engine::accept::Sealed;
use sma_proto::engine::outbound::OutgoingSync;
use sma_proto::envelope::{message_id_for, Kind, Recipient};
use sma_proto::payload::{AppBody, SealedContent};
use sma_proto::sync::SentRef;
use sma_proto::{DeviceId, MessageId};
use tracing::{debug, warn};

use sma_store::Durability;

use crate::deletion::Deletion;
use crate::device::Device;
use crate::error::{Error, Result};

/// Most unprocessed messages a recipient inbox may hold before `send` refuses.
pub const APP_INBOX_CAP: u32 = 100;

/// What `send` did.
#[derive(Clone, Debug, Serialize)]
pub struct SendReport {
    /// The message id.
    pub message_id: String,
    /// Recipient device ids.
    pub to: Vec<DeviceId>,
}

impl Device {
    /// Appends every due sync message, replacing our previous unprocessed one
    /// in each peer's inbox, after checking that the messages that carry
    /// unacknowledged ops are still there. Returns how many were sent.
    pub(crate) async fn send_syncs<T: Transport>(&mut self, t: &mut T) -> Result<usize> {
        // Callers save their ops before sending; this keeps it so.
        if self.engine.has_unsaved_ops() {
            self.save()?;
        }
        let heartbeat = self.heartbeat_threshold(crate::round::HEARTBEAT_SECS)?;
        let now = self.timestamp();
        for (peer, sent) in self.engine.sync_probes(now, heartbeat) {
            if !self.still_there(t, &peer, &sent).await? {
                self.engine.vanished(&peer);
            }
        }
        let outgoing = self.engine.outgoing_syncs(&mut self.rng, now, heartbeat)?;
        if outgoing.is_empty() {
            // Deciding that may have pruned acknowledged ops from the log:
            // the store must drop them too, or a second process (and the
            // next start) would see a log this one no longer has.
            if self
                .engine
                .core()
                .book()
                .log_changes()
                .is_none_or(|c| !c.is_empty())
            {
                self.save_with(Durability::Committed)?;
            }
            return Ok(0);
        }
        let mut sent = 0;
        // Save once at the end, also when the connection fails half-way,
        // without waiting for the disk: losing this record (a crash before
        // it, a power failure after) leaves at most an extra sync message
        // behind, which the peer processes (or we replace) like any other,
        // and ops not recorded as sent are sent again.
        let result = self
            .append_syncs(t, outgoing, now.as_secs(), &mut sent)
            .await;
        self.save_with(Durability::Committed)?;
        result.map(|()| sent)
    }

    /// Whether our sync message `sent` is still in `peer`'s inbox (a
    /// missing inbox counts as present: nothing can be resent there).
    async fn still_there<T: Transport>(
        &mut self,
        t: &mut T,
        peer: &DeviceId,
        sent: &SentRef,
    ) -> Result<bool> {
        let folder = self.info.folders.inbox(peer);
        match t.select(&folder).await {
            Ok(_) => {}
            Err(ImapError::NoSuchFolder { .. }) => return Ok(true),
            Err(e) => return Err(e.into()),
        }
        let found = t
            .search_header("Message-ID", &message_id_for(&sent.message_id))
            .await?;
        Ok(!found.is_empty())
    }

    async fn append_syncs<T: Transport>(
        &mut self,
        t: &mut T,
        outgoing: Vec<OutgoingSync>,
        now: u64,
        sent: &mut usize,
    ) -> Result<()> {
        for out in outgoing {
            let folder = self.info.folders.inbox(&out.peer);
            // Select before appending: the APPENDUID then belongs to this
            // UIDVALIDITY or a later one (a change while the folder is
            // selected ends the session), never to an earlier one, so a
            // recorded UID can never name another message later.
            let missing = || warn!(peer = %out.peer, "the inbox of this member is missing; not sending to it");
            let state = match t.select(&folder).await {
                Ok(state) => state,
                Err(ImapError::NoSuchFolder { .. }) => {
                    missing();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let uid = match t.append(&folder, &[], &out.bytes).await {
                Ok(uid) => uid,
                Err(ImapError::NoSuchFolder { .. }) => {
                    missing();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(prev) = &out.replaces {
                let uids = match (prev.uid, prev.uid_validity) {
                    (Some(uid), Some(v)) if v == state.uid_validity => vec![uid],
                    _ => {
                        t.search_header("Message-ID", &message_id_for(&prev.message_id))
                            .await?
                    }
                };
                if !uids.is_empty() {
                    debug!(peer = %out.peer, "replacing our unprocessed sync message");
                    self.deletion(t.capabilities())
                        .remove(t, &folder, &uids)
                        .await?;
                }
            }
            self.engine.mark_sent(
                &out.peer,
                SentRef {
                    message_id: out.message_id,
                    uid,
                    uid_validity: uid.map(|_| state.uid_validity),
                    covers: out.covers,
                    at: now,
                    upto: None,
                },
            );
            *sent += 1;
        }
        Ok(())
    }

    /// Sends an application message to one member or to all other members.
    pub async fn send<T: Transport>(
        &mut self,
        t: &mut T,
        to: Option<&DeviceId>,
        kind: &str,
        body: &[u8],
    ) -> Result<SendReport> {
        let plan = self.send_plan(to, kind, body)?;
        let sealed = self.seal_app(&plan, kind, body)?;
        self.deliver_sealed(t, sealed).await
    }

    /// `sync`, then `send` (what the `send` command does), with the message
    /// sealed before the sync and handed to the transport to stage
    /// ([`Transport::stage_append`]: a JMAP session uploads it while the
    /// sync runs). The sync decides: the staged message is sent only if the
    /// sync left what it was sealed for as it was (the recipients, each
    /// with the same certificate); otherwise the message is sealed again
    /// from the state after the sync, as `send` alone would.
    pub async fn sync_and_send<T: Transport>(
        &mut self,
        t: &mut T,
        to: Option<&DeviceId>,
        kind: &str,
        body: &[u8],
    ) -> Result<SendReport> {
        // Before the sync, a failure only means nothing is staged: the
        // checks after it decide (a recipient may become known in it).
        let early = self.send_plan(to, kind, body).ok().and_then(|plan| {
            let basis = self.seal_basis(&plan.0);
            let sealed = self.seal_app(&plan, kind, body).ok()?;
            Some((basis, sealed))
        });
        if let Some((_, sealed)) = &early {
            t.stage_append(&sealed.bytes);
        }
        self.sync(t).await?;
        let plan = self.send_plan(to, kind, body)?;
        let sealed = match early {
            Some((basis, sealed)) if basis == self.seal_basis(&plan.0) => sealed,
            _ => self.seal_app(&plan, kind, body)?,
        };
        self.deliver_sealed(t, sealed).await
    }

    /// Checks a send request and picks its recipients and route.
    fn send_plan(
        &self,
        to: Option<&DeviceId>,
        kind: &str,
        body: &[u8],
    ) -> Result<(Vec<DeviceId>, Recipient)> {
        self.require_member()?;
        if kind.is_empty() || kind.len() > 64 || !kind.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Usage(format!(
                "invalid message kind {kind:?}: use 1 to 64 printable ASCII characters, e.g. `text`"
            )));
        }
        if body.len() > 512 * 1024 {
            return Err(Error::Usage(format!(
                "message body is {} bytes; the limit is 512 KiB",
                body.len()
            )));
        }
        let peers = self.engine.peers();
        let recipients: Vec<DeviceId> = match to {
            Some(id) if peers.contains(id) => vec![id.clone()],
            Some(id) if id == self.id() => {
                return Err(Error::Usage(
                    "cannot send a message to this device itself".into(),
                ))
            }
            Some(id) => return Err(Error::UnknownDevice(id.to_string())),
            None => peers.into_iter().collect(),
        };
        if recipients.is_empty() {
            return Err(Error::Usage(
                "there is no other member to send to — pair a device first (`sma pair`)".into(),
            ));
        }
        let route = match to {
            Some(id) => Recipient::Device(id.clone()),
            None => Recipient::All,
        };
        Ok((recipients, route))
    }

    /// What a message sealed to `recipients` depends on: each recipient
    /// and its certificate's fingerprint.
    fn seal_basis(&self, recipients: &[DeviceId]) -> Vec<(DeviceId, Option<String>)> {
        let group = self.engine.group();
        recipients
            .iter()
            .map(|r| (r.clone(), group.member(r).map(|m| m.fingerprint.clone())))
            .collect()
    }

    fn seal_app(
        &mut self,
        (recipients, route): &(Vec<DeviceId>, Recipient),
        kind: &str,
        body: &[u8],
    ) -> Result<Sealed> {
        let now = self.timestamp();
        Ok(self.engine.seal(
            &mut self.rng,
            now,
            (Kind::App, route.clone()),
            recipients,
            SealedContent::App(AppBody {
                app_kind: kind.to_owned(),
                body: body.to_vec(),
            }),
        )?)
    }

    async fn deliver_sealed<T: Transport>(
        &mut self,
        t: &mut T,
        sealed: Sealed,
    ) -> Result<SendReport> {
        self.deliver_checked(t, &sealed.recipients, &sealed.id, &sealed.bytes)
            .await?;
        Ok(SendReport {
            message_id: sealed.id.to_string(),
            to: sealed.recipients,
        })
    }

    /// Appends `bytes` to each recipient's inbox, asking each inbox's
    /// `STATUS` in the same flight (one round trip for all). An inbox that
    /// already held [`APP_INBOX_CAP`] messages makes the send fail with
    /// [`Error::InboxFull`]; the copies appended are then deleted again,
    /// so a send lands everywhere or nowhere, and a full inbox grows by
    /// at most one message for as long as a failed undo lasts.
    async fn deliver_checked<T: Transport>(
        &mut self,
        t: &mut T,
        recipients: &[DeviceId],
        id: &MessageId,
        bytes: &[u8],
    ) -> Result<()> {
        let folders: Vec<String> = recipients
            .iter()
            .map(|r| self.info.folders.inbox(r))
            .collect();
        let items: Vec<(&str, &[u8])> = folders.iter().map(|f| (f.as_str(), bytes)).collect();
        let results = t.status_and_append(&items).await?;
        let mut full = None;
        let mut landed = Vec::new();
        let mut failed = None;
        for ((r, folder), checked) in recipients.iter().zip(&folders).zip(results) {
            match checked.status {
                Ok(s) if s.messages >= APP_INBOX_CAP => {
                    full.get_or_insert((r.to_string(), s.messages as usize));
                }
                Ok(_) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
            match checked.appended {
                Ok(uid) => landed.push((folder.clone(), uid)),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some((device, held)) = full {
            let deletion = self.deletion(t.capabilities());
            undo_appends(t, deletion, &landed, id).await;
            return Err(Error::InboxFull(device, held));
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// Deletes the copies of message `id` just appended (folder, UID if
/// the server said). Failures are logged: the send reports the full
/// inbox either way.
async fn undo_appends<T: Transport>(
    t: &mut T,
    deletion: Deletion,
    landed: &[(String, Option<Uid>)],
    id: &MessageId,
) {
    for (folder, uid) in landed {
        let undone = async {
            t.select(folder).await?;
            let uids = match uid {
                Some(u) => vec![*u],
                None => t.search_header("Message-ID", &message_id_for(id)).await?,
            };
            deletion.remove(t, folder, &uids).await
        }
        .await;
        if let Err(e) = undone {
            warn!(folder = %folder, error = %e, "could not delete a message appended to a full inbox");
        }
    }
}
