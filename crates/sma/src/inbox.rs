//! Processing this device's inbox: the engine judges, the driver fetches,
//! records (one transaction) and then deletes.

use base64::Engine as _;
use sma_imap::{FetchedHeader, ImapError, MailboxState, Transport, UidRange};
use sma_proto::engine::inbox::{
    Deferral, MessageMemory, PassOutcome, Triage, PROCESSED_HORIZON_SECS, UNKNOWN_SENDER_GRACE_SECS,
};
use sma_proto::envelope::MESSAGE_SIZE_CAP;
use sma_proto::{MessageId, Timestamp};
use sma_store::{Db, Durability, StoreError, StoredApp};
use tracing::{info, warn};

use crate::announce;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::events::{AppMessage, Event};

/// What one pass over the inbox did.
#[derive(Debug, Default)]
pub struct InboxPass {
    /// New ops applied.
    pub applied: usize,
    /// Of those, ops another member relayed.
    pub relayed: usize,
    /// Events to report.
    pub events: Vec<Event>,
    /// UIDNEXT of the inbox when the pass selected it: a higher UIDNEXT
    /// later means messages arrived after the pass read the inbox.
    pub uid_next: Option<u32>,
}

/// An inbox pass whose decisions are committed to the store and whose
/// server-side work (deleting what it processed, acting on a removal) is
/// still to be done by [`Device::carry_out_pass`].
pub(crate) struct CommittedPass {
    /// What the pass found, as [`Device::process_inbox`] reports it.
    pub(crate) pass: InboxPass,
    /// The engine's decisions; `None` when the inbox was empty.
    outcome: Option<PassOutcome>,
}

impl CommittedPass {
    /// Whether the pass proved that this device was removed.
    pub(crate) fn proves_removal(&self) -> bool {
        self.outcome
            .as_ref()
            .is_some_and(|o| o.removed_by.is_some())
    }
}

/// The store answering the engine's questions about message ids.
struct StoreMemory<'a>(Db<'a>);

impl MessageMemory for StoreMemory<'_> {
    type Error = StoreError;

    fn was_processed(&self, id: &MessageId) -> Result<bool, StoreError> {
        self.0.is_processed(id.as_str())
    }

    fn deferred(&self, id: &MessageId) -> Result<Option<Deferral>, StoreError> {
        Ok(self
            .0
            .deferral(id.as_str())?
            .map(|(first_seen, tried_at_members)| Deferral {
                first_seen,
                tried_at_members,
            }))
    }
}

/// Bytes of message bodies fetched at once.
const FETCH_BATCH_BYTES: u64 = 32 << 20;

/// Splits `(uid, size)` into runs of at most [`FETCH_BATCH_BYTES`] (sizes
/// as the server stated them; a run always has at least one message).
fn batches(wanted: &[(u32, u32)]) -> Vec<Vec<u32>> {
    let mut out: Vec<Vec<u32>> = Vec::new();
    let mut used = 0u64;
    for &(uid, size) in wanted {
        let size = u64::from(size).min(MESSAGE_SIZE_CAP as u64);
        match out.last_mut() {
            Some(batch) if used + size <= FETCH_BATCH_BYTES => batch.push(uid),
            _ => {
                out.push(vec![uid]);
                used = 0;
            }
        }
        used += size;
    }
    out
}

impl Device {
    /// Fetches, verifies and applies everything addressed to us in our inbox.
    pub(crate) async fn process_inbox<T: Transport>(&mut self, t: &mut T) -> Result<InboxPass> {
        let committed = self.read_and_commit_inbox(t).await?;
        self.carry_out_pass(t, committed).await
    }

    /// The first half of [`Self::process_inbox`]: reads the inbox, lets
    /// the engine judge it and commits what it decided (one durable
    /// transaction). Nothing is deleted on the server yet: the application
    /// messages it queued may be handed out before
    /// [`Self::carry_out_pass`] does that.
    pub(crate) async fn read_and_commit_inbox<T: Transport>(
        &mut self,
        t: &mut T,
    ) -> Result<CommittedPass> {
        self.require_member()?;
        let (state, headers) = self.select_own_inbox(t).await?;
        let mut pass = InboxPass {
            uid_next: state.uid_next,
            ..InboxPass::default()
        };
        if state.exists == 0 {
            // Nothing to read, nothing to record: an idle round costs this
            // one flight (SELECT and an empty FETCH; no store transaction).
            return Ok(CommittedPass {
                pass,
                outcome: None,
            });
        }
        let now = self.timestamp();
        let max_uid = headers.iter().map(|h| h.uid).max().unwrap_or(0);
        let mut judge = self.engine.inbox_pass(now);
        let mut wanted = Vec::new();
        {
            let memory = StoreMemory(self.store.read());
            for h in &headers {
                if judge.triage(h.uid, h.size, &h.header, &memory)? == Triage::Fetch {
                    wanted.push((h.uid, h.size));
                }
            }
        }
        // Downloads in batches, so a full inbox never holds more than one
        // batch of bodies in memory.
        for batch in batches(&wanted) {
            for msg in t.fetch_messages(&batch, MESSAGE_SIZE_CAP as u32).await? {
                judge.accept(msg.uid, msg.body.as_deref());
            }
        }
        let mut outcome = judge.finish();
        self.commit_pass(&outcome, (state.uid_validity, max_uid), now)?;
        pass.applied = outcome.applied;
        pass.relayed = outcome.relayed;
        pass.events = std::mem::take(&mut outcome.events)
            .into_iter()
            .map(Event::from)
            .collect();
        Ok(CommittedPass {
            pass,
            outcome: Some(outcome),
        })
    }

    /// The second half of [`Self::process_inbox`]: deletes what the
    /// committed pass processed, and acts on a removal it proved (an
    /// error) or one it did not (announcing again if the announcement is
    /// gone).
    pub(crate) async fn carry_out_pass<T: Transport>(
        &mut self,
        t: &mut T,
        committed: CommittedPass,
    ) -> Result<InboxPass> {
        let CommittedPass { pass, outcome } = committed;
        let Some(outcome) = outcome else {
            return Ok(pass);
        };
        if !outcome.delete.is_empty() {
            let uids: Vec<u32> = outcome.delete.iter().copied().collect();
            self.deletion(t.capabilities())
                .remove(t, &self.inbox(), &uids)
                .await?;
        }
        if let Some(by) = outcome.removed_by {
            self.clean_up_after_removal(t).await;
            return Err(self.mark_removed(&format!(" by device {by}")));
        }
        if outcome.unproven_removal && !self.ensure_announced(t).await? {
            self.note_incident(
                "a removal notice that did not prove this device's removal came and its announcement was gone; it announced again",
            )?;
        }
        Ok(pass)
    }

    /// One durable transaction with everything the pass decided, before
    /// any server-side deletion.
    fn commit_pass(
        &mut self,
        outcome: &PassOutcome,
        (validity, max_uid): (u32, u32),
        now: Timestamp,
    ) -> Result<()> {
        let inbox = self.inbox();
        let info = self.info_json()?;
        let secs = now.as_secs();
        let members = self.engine.group().members().len() as u64;
        // An application message's id is remembered for the horizon past
        // the later of its receipt and its Date: the 30-day age check, by
        // the sender's Date, then refuses a replay before the id is
        // forgotten, even from a sender whose clock runs fast.
        let sent: std::collections::HashMap<&str, u64> = outcome
            .apps
            .iter()
            .map(|a| (a.message_id.as_str(), a.sent_at))
            .collect();
        self.store
            .save_core_with(self.engine.core_mut(), Durability::Flushed, |db| {
                for id in &outcome.processed {
                    let at = sent.get(id.as_str()).map_or(secs, |&s| s.max(secs));
                    db.mark_processed(id.as_str(), at)?;
                }
                for app in &outcome.apps {
                    let stored = StoredApp {
                        message_id: app.message_id.to_string(),
                        sender: app.sender.to_string(),
                        kind: app.kind.clone(),
                        body: app.body.clone(),
                        sent_at: app.sent_at,
                    };
                    db.push_app(&stored, secs)?;
                }
                for (id, d) in &outcome.deferred {
                    db.set_deferral(id.as_str(), d.first_seen, d.tried_at_members.min(members))?;
                }
                db.set_meta("device", &info)?;
                db.set_folder_sync(&inbox, validity, max_uid)?;
                db.forget_processed_before(secs.saturating_sub(PROCESSED_HORIZON_SECS))?;
                db.forget_deferred_before(secs.saturating_sub(2 * UNKNOWN_SENDER_GRACE_SECS))?;
                Ok::<_, Error>(())
            })
    }

    /// Selects our inbox and reads its headers (one flight); if it is
    /// gone, recreates it (and the
    /// announcements folder and our announcement, if they are gone too):
    /// a missing folder is never evidence of removal, which only an
    /// authenticated op proves (PROTOCOL 16.3).
    async fn select_own_inbox<T: Transport>(
        &mut self,
        t: &mut T,
    ) -> Result<(MailboxState, Vec<FetchedHeader>)> {
        let inbox = self.inbox();
        let seen = self.store.read().folder_sync(&inbox)?;
        // New messages usually follow the last UID seen: their bodies come
        // with the headers (one round trip less for a small message).
        let prefetch_from = Some(seen.map_or(1, |(_, last)| last.saturating_add(1)));
        match t
            .open_and_fetch_headers(&inbox, false, UidRange::all(), prefetch_from)
            .await
        {
            Ok((state, headers)) => {
                self.remember_fallback(t);
                if let Some((validity, _)) = seen {
                    if validity != state.uid_validity {
                        info!(folder = %inbox, "UIDVALIDITY changed; rescanning (message ids prevent double-apply)");
                    }
                }
                Ok((state, headers))
            }
            Err(ImapError::NoSuchFolder { .. }) => {
                self.recreate_own_folders(t).await?;
                Ok(
                    t.open_and_fetch_headers(&inbox, false, UidRange::all(), prefetch_from)
                        .await?,
                )
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Our inbox vanished: recreate it, and re-announce if our
    /// announcement vanished too. Noted for `status`.
    async fn recreate_own_folders<T: Transport>(&mut self, t: &mut T) -> Result<()> {
        let inbox = self.inbox();
        warn!(folder = %inbox, "our inbox folder vanished; recreating it (only a signed removal can remove this device)");
        crate::init::create_unsubscribed(t, &inbox).await?;
        let announced = self.ensure_announced(t).await?;
        self.note_incident(if announced {
            "the inbox folder of this device vanished and was recreated"
        } else {
            "the inbox folder and the announcement of this device vanished and were recreated"
        })
    }

    /// Reads the announcements and announces this device again if its own
    /// is missing (deleted by the provider, or by a device that removed us
    /// after it was removed itself). Returns whether it was still there.
    async fn ensure_announced<T: Transport>(&mut self, t: &mut T) -> Result<bool> {
        let anns = announce::read_all(t, &self.info.folders.announce()).await?;
        let me = self.engine.identity().fingerprint();
        let announced = anns
            .iter()
            .flatten()
            .any(|s| &s.ann.device_id == self.id() && s.fingerprint == me);
        if !announced {
            warn!("our announcement vanished; announcing this device again");
            let founder = self.info.role == crate::config::Role::Founder;
            self.announce(t, sma_proto::payload::AnnouncedState::Member, founder)
                .await?;
        }
        Ok(announced)
    }

    /// Application messages received and not yet handed out.
    pub fn pending_messages(&self) -> Result<Vec<AppMessage>> {
        Ok(self
            .store
            .read()
            .pending_apps()?
            .into_iter()
            .map(|a| AppMessage {
                from: a.sender,
                kind: a.kind,
                body_b64: base64::engine::general_purpose::STANDARD.encode(&a.body),
                sent_at: sma_proto::timefmt::rfc3339(a.sent_at),
                message_id: a.message_id,
            })
            .collect())
    }

    /// Marks application messages as handed out (they are forgotten).
    pub fn delivered(&mut self, messages: &[AppMessage]) -> Result<()> {
        self.store.write(|db| {
            for m in messages {
                db.remove_app(&m.message_id)?;
            }
            Ok::<_, Error>(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_fetched_in_batches_of_at_most_32_mib() {
        let mib = 1 << 20;
        let wanted: Vec<(u32, u32)> = (1..=100).map(|uid| (uid, mib)).collect();
        let b = batches(&wanted);
        assert_eq!(b.len(), 4, "100 MiB in 32 MiB batches");
        assert!(b.iter().all(|batch| batch.len() <= 32));
        assert_eq!(b.concat(), (1..=100).collect::<Vec<u32>>());
        assert!(batches(&[]).is_empty());
        // A message bigger than the cap counts at the cap (it is not
        // downloaded anyway).
        assert_eq!(batches(&[(1, u32::MAX), (2, 5)]).len(), 1);
    }
}
