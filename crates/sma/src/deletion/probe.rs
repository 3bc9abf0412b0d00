//! Finding out at `init` whether the server's expunge only archives
//! (PROTOCOL 3.5): the `X-GM-EXT-1` capability says Gmail; otherwise a probe
//! message is appended to the device's own inbox, expunged, and looked up
//! by its `Message-ID` in the `\All` special-use folder.

use sma_imap::{ImapError, Transport};
use tracing::{info, warn};

use super::{find_special, via_trash};
use crate::config::{DeleteBehaviour, Detection};
use crate::device::Device;
use crate::error::Result;

/// Finds out what deleting does on the server. `inbox` is this device's
/// own inbox (it exists); the probe is appended there and removed again,
/// from All Mail too when the server archived it. `token` makes the probe
/// unique (random hex).
pub(crate) async fn detect<T: Transport>(
    t: &mut T,
    inbox: &str,
    account: &str,
    token: &str,
) -> std::result::Result<DeleteBehaviour, ImapError> {
    let special = t.special_use_folders().await?;
    let trash = find_special(&special, "\\Trash");
    let all_mail = find_special(&special, "\\All");
    if t.capabilities().has("X-GM-EXT-1") {
        return Ok(DeleteBehaviour {
            archives: true,
            detected_by: Detection::Capability,
            trash,
            all_mail,
        });
    }
    let Some(all) = all_mail else {
        // Nowhere to archive to.
        return Ok(DeleteBehaviour {
            archives: false,
            detected_by: Detection::Probe,
            trash,
            all_mail: None,
        });
    };
    let archives = probe(t, inbox, &all, trash.as_deref(), account, token).await?;
    Ok(DeleteBehaviour {
        archives,
        detected_by: Detection::Probe,
        trash,
        all_mail: Some(all),
    })
}

/// Appends the probe to `inbox`, expunges it, and looks for it in `all`;
/// a probe found there is deleted through `trash` (or expunged there).
async fn probe<T: Transport>(
    t: &mut T,
    inbox: &str,
    all: &str,
    trash: Option<&str>,
    account: &str,
    token: &str,
) -> std::result::Result<bool, ImapError> {
    let message_id = format!("<{token}.delete-probe@sma.invalid>");
    t.select(inbox).await?;
    let uid = t
        .append(
            inbox,
            &["\\Seen"],
            &probe_message(account, token, &message_id),
        )
        .await?;
    let uids = match uid {
        Some(uid) => vec![uid],
        None => t.search_header("Message-ID", &message_id).await?,
    };
    t.delete_messages(&uids).await?;
    t.select(all).await?;
    let archived = t.search_header("Message-ID", &message_id).await?;
    if archived.is_empty() {
        return Ok(false);
    }
    match trash {
        Some(trash) if trash != all => {
            via_trash(t, trash, all, &archived, Some(vec![message_id])).await?
        }
        _ => t.delete_messages(&archived).await?,
    }
    Ok(true)
}

/// The probe: not an SMA message (no `Autocrypt-SMA`), so a round that
/// finds a leftover deletes it (PROTOCOL 13.2 row 4).
fn probe_message(account: &str, token: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: <{account}>\r\nTo: <{account}>\r\nSubject: sma delete probe (safe to delete)\r\nX-SMA-Delete-Probe: {token}\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nA probe of `sma init`: does deleting archive on this server? It removes it again.\r\n"
    )
    .into_bytes()
}

impl Device {
    /// Finds out again what deleting does on the server (see
    /// [`DeleteBehaviour`]) and records it in the home. Uses this device's
    /// inbox for the probe.
    pub async fn check_delete_behaviour<T: Transport>(
        &mut self,
        t: &mut T,
    ) -> Result<DeleteBehaviour> {
        let token = format!("{:016x}", rand_core::RngCore::next_u64(&mut self.rng));
        let found = detect(t, &self.inbox(), &self.info.account, &token).await?;
        info!(
            archives = found.archives,
            by = found.detected_by.as_str(),
            "checked what deleting does on the server"
        );
        self.info.delete = found.clone();
        self.save()?;
        Ok(found)
    }
}

/// [`detect`] for `init`: a failure is logged and leaves the behaviour not
/// checked (the capability still counts at run time), except a lost
/// connection.
pub(crate) async fn detect_at_init<T: Transport>(
    t: &mut T,
    inbox: &str,
    account: &str,
    token: &str,
) -> std::result::Result<DeleteBehaviour, ImapError> {
    match detect(t, inbox, account, token).await {
        Ok(found) => Ok(found),
        Err(e) if e.is_connection_lost() => Err(e),
        Err(e) => {
            warn!(error = %e, "could not find out whether deleting archives on this server; `sma doctor --fix` tries again");
            Ok(DeleteBehaviour::default())
        }
    }
}
