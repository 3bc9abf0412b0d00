//! The one place that decides how to delete on this device's server
//! (PROTOCOL 3.5).
//!
//! On most servers `UID STORE \Deleted` + `UID EXPUNGE` deletes. On a
//! server whose expunge only archives (Gmail's default: the message stays
//! in `[Gmail]/All Mail`), every deletion of an SMA message moves it to the
//! `\Trash` special-use folder and expunges it there, and deleting a folder
//! empties it that way first. Every deletion in this crate goes through
//! [`Deletion`]; `init` finds out which kind of server it is
//! ([`probe::detect`]).

pub(crate) mod probe;

use sma_imap::{Capabilities, FolderInfo, ImapError, Transport, Uid, UidRange};
use tracing::{debug, warn};

use crate::config::{DeleteBehaviour, Detection};
use crate::device::Device;

/// At most this many `Message-ID` searches find the copies in the Trash
/// when the server reports no `COPYUID` (without UIDPLUS); more messages
/// are looked up by the `Autocrypt-SMA` field instead.
const MAX_ID_SEARCHES: usize = 64;

/// How messages and folders are deleted on one server: built from the
/// stored [`DeleteBehaviour`] and the session's capabilities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    mode: Mode,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    /// `\Deleted` + expunge deletes.
    Expunge,
    /// Expunging archives: move to this Trash folder, expunge there.
    ViaTrash(String),
    /// Expunging archives, the Trash is not known yet: look it up.
    FindTrash,
}

impl Deletion {
    /// The deletion for a server with `behaviour` and `caps`: a home that
    /// was never checked counts as archiving when the server advertises
    /// `X-GM-EXT-1`.
    pub fn new(behaviour: &DeleteBehaviour, caps: &Capabilities) -> Deletion {
        let archives = behaviour.archives
            || (behaviour.detected_by == Detection::NotChecked && caps.has("X-GM-EXT-1"));
        let mode = match (&behaviour.trash, archives) {
            (_, false) => Mode::Expunge,
            (Some(trash), true) => Mode::ViaTrash(trash.clone()),
            (None, true) => Mode::FindTrash,
        };
        Deletion { mode }
    }

    /// Plain expunging, whatever the server does.
    pub fn expunge() -> Deletion {
        Deletion {
            mode: Mode::Expunge,
        }
    }

    /// `trash` when deletions go through a Trash folder known already,
    /// `"expunge"` otherwise (for logs and reports).
    pub fn describe(&self) -> &str {
        match &self.mode {
            Mode::Expunge => "expunge",
            Mode::ViaTrash(_) | Mode::FindTrash => "trash",
        }
    }

    /// Removes exactly `uids` from `folder`, which must be selected
    /// read-write; afterwards it is selected again.
    pub async fn remove<T: Transport>(
        &self,
        t: &mut T,
        folder: &str,
        uids: &[Uid],
    ) -> Result<(), ImapError> {
        if uids.is_empty() {
            return Ok(());
        }
        match self.trash(t).await? {
            Some(trash) if trash != folder => {
                via_trash(t, &trash, folder, uids, None).await?;
                t.select(folder).await?;
                Ok(())
            }
            _ => t.delete_messages(uids).await,
        }
    }

    /// Deletes `folder`, after emptying it through the Trash when the
    /// server archives. `park` is selected before the `DELETE` (a folder is
    /// never deleted while selected). A missing folder gives
    /// [`ImapError::NoSuchFolder`].
    pub async fn remove_folder<T: Transport>(
        &self,
        t: &mut T,
        folder: &str,
        park: &str,
    ) -> Result<(), ImapError> {
        if let Some(trash) = self.trash(t).await? {
            let state = t.select(folder).await?;
            if state.exists > 0 {
                let uids: Vec<Uid> = t
                    .fetch_headers(UidRange::all())
                    .await?
                    .iter()
                    .map(|h| h.uid)
                    .collect();
                via_trash(t, &trash, folder, &uids, None).await?;
            }
        }
        t.examine(park).await.ok();
        t.delete(folder).await
    }

    /// The Trash folder to go through, or `None` to expunge in place.
    async fn trash<T: Transport>(&self, t: &mut T) -> Result<Option<String>, ImapError> {
        match &self.mode {
            Mode::Expunge => Ok(None),
            Mode::ViaTrash(trash) => Ok(Some(trash.clone())),
            Mode::FindTrash => {
                let found = find_special(&t.special_use_folders().await?, "\\Trash");
                if found.is_none() {
                    warn!("the server archives expunged messages but has no \\Trash folder; sma's deleted messages stay in All Mail");
                }
                Ok(found)
            }
        }
    }
}

impl Device {
    /// How to delete on this device's server, over a session with `caps`.
    pub fn deletion(&self, caps: &Capabilities) -> Deletion {
        Deletion::new(&self.info.delete, caps)
    }
}

/// The name of the folder with special-use `attribute` (the first one).
pub(crate) fn find_special(folders: &[FolderInfo], attribute: &str) -> Option<String> {
    folders
        .iter()
        .find(|f| f.is_selectable() && f.has_attribute(attribute))
        .map(|f| f.name.clone())
}

/// Moves `uids` of the selected `folder` to `trash` and expunges the copies
/// there; `trash` stays selected. `ids` are the messages' `Message-ID`s
/// when the caller knows them; without `COPYUID` the copies are found by
/// them, else by the ids read before the move (without UIDPLUS), else by
/// the `Autocrypt-SMA` field (every SMA message in the Trash is one sma
/// deleted).
async fn via_trash<T: Transport>(
    t: &mut T,
    trash: &str,
    folder: &str,
    uids: &[Uid],
    ids: Option<Vec<String>>,
) -> Result<(), ImapError> {
    let ids = match ids {
        Some(ids) => ids,
        None if !t.capabilities().uidplus && uids.len() <= MAX_ID_SEARCHES => {
            message_ids(t, uids).await?
        }
        None => Vec::new(),
    };
    let copies = match t.move_messages(uids, trash).await {
        Ok(copies) => copies,
        Err(ImapError::NoSuchFolder { .. }) => {
            warn!(%trash, "the Trash folder is missing; expunging in place (the server may keep the messages in All Mail)");
            return t.delete_messages(uids).await;
        }
        Err(e) => return Err(e),
    };
    t.select(trash).await?;
    let copies = match copies {
        Some(copies) => copies,
        None => find_copies(t, &ids).await?,
    };
    debug!(%folder, %trash, moved = uids.len(), expunged = copies.len(), "deleted through the Trash");
    t.delete_messages(&copies).await
}

/// The copies in the selected Trash, without `COPYUID`.
async fn find_copies<T: Transport>(t: &mut T, ids: &[String]) -> Result<Vec<Uid>, ImapError> {
    if ids.is_empty() {
        return t.search_header("Autocrypt-SMA", "").await;
    }
    let mut out = Vec::new();
    for id in ids {
        out.extend(t.search_header("Message-ID", id).await?);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The `Message-ID`s of `uids` in the selected folder (one FETCH per run
/// of consecutive UIDs).
async fn message_ids<T: Transport>(t: &mut T, uids: &[Uid]) -> Result<Vec<String>, ImapError> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(Uid, Uid)> = Vec::new();
    for u in sorted {
        match runs.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(u) => *end = u,
            _ => runs.push((u, u)),
        }
    }
    let mut ids = Vec::new();
    for (a, b) in runs {
        for h in t.fetch_headers(UidRange::new(a, b)).await? {
            ids.extend(header_field(&h.header, "Message-ID"));
        }
    }
    Ok(ids)
}

/// The value of the first `name` field of a header section (unfolded,
/// trimmed), if it is non-empty and ASCII.
pub(crate) fn header_field(header: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(header).ok()?;
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    while let Some(line) = lines.next() {
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        if !n.eq_ignore_ascii_case(name) {
            continue;
        }
        let mut value = v.trim().to_owned();
        for more in lines.by_ref() {
            if !more.starts_with([' ', '\t']) {
                break;
            }
            value.push(' ');
            value.push_str(more.trim());
        }
        let value = value.trim();
        return (!value.is_empty() && value.is_ascii()).then(|| value.to_owned());
    }
    None
}

/// Deletes a folder created with an open ([`Transport::create_with_next_open`]:
/// `init`'s inbox) that turned out not to be needed (another layout, a
/// device id in use, an error), only if that `CREATE` made it: another
/// device's folder of the same name stays. It is new and empty, so there
/// is nothing to archive. Best effort: an empty unannounced folder is
/// harmless.
pub(crate) async fn drop_unused_new_folder<T: Transport>(t: &mut T, folder: &str) {
    if let Ok(sma_imap::CreateOutcome::Created) = t.create_unsubscribed(folder).await {
        if let Err(e) = t.delete(folder).await {
            tracing::info!(folder, error = %e, "could not delete an unused new folder");
        }
    }
}

#[cfg(test)]
mod tests;
