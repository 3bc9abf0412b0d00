//! Fetching headers and messages. Only data for the UIDs asked for is
//! copied out of a response; everything else is dropped where it lies. The
//! limits of each FETCH follow from the request (see [`Limits`]).

use std::collections::{BTreeMap, BTreeSet};

use async_imap::imap_proto::{AttributeValue, MessageSection, Response, SectionPath};

use crate::error::ImapError;
use crate::limits::Limits;
use crate::session::ImapSession;
use crate::types::{FetchedHeader, FetchedMessage, Uid, UidRange};
use crate::wire::{uid_sets, Command, MAX_UID_SET_LEN};

/// Message data gathered from FETCH responses, by UID.
#[derive(Default)]
pub(crate) struct Partial {
    size: Option<u32>,
    header: Option<Vec<u8>>,
    body: Option<Vec<u8>>,
}

impl Partial {
    /// The body gathered, if any.
    pub(crate) fn into_body(self) -> Option<Vec<u8>> {
        self.body
    }
}

/// Collects the FETCH attributes of the UIDs `wanted` accepts into `out`.
/// Data for other UIDs is not copied; responses without UID are unsolicited
/// flag updates and are ignored. Returns whether `r` carried a header
/// section (for any UID).
pub(crate) fn collect_fetch(
    r: &Response<'_>,
    wanted: &dyn Fn(Uid) -> bool,
    out: &mut BTreeMap<Uid, Partial>,
) -> bool {
    let Response::Fetch(_, attrs) = r else {
        return false;
    };
    let header_of = |a: &AttributeValue<'_>| {
        matches!(
            a,
            AttributeValue::BodySection {
                section: Some(SectionPath::Full(MessageSection::Header)),
                data: Some(_),
                ..
            } | AttributeValue::Rfc822Header(Some(_))
        )
    };
    let has_header = attrs.iter().any(header_of);
    let Some(uid) = attrs.iter().find_map(|a| match a {
        AttributeValue::Uid(u) => Some(*u),
        _ => None,
    }) else {
        return has_header;
    };
    if !wanted(uid) {
        return has_header;
    }
    let entry = out.entry(uid).or_default();
    for a in attrs {
        match a {
            AttributeValue::Rfc822Size(s) => entry.size = Some(*s),
            AttributeValue::BodySection {
                section: Some(SectionPath::Full(MessageSection::Header)),
                data: Some(d),
                ..
            }
            | AttributeValue::Rfc822Header(Some(d)) => entry.header = Some(d.to_vec()),
            AttributeValue::BodySection {
                section: None,
                data: Some(d),
                ..
            }
            | AttributeValue::Rfc822(Some(d)) => entry.body = Some(d.to_vec()),
            _ => {}
        }
    }
    has_header
}

/// The headers collected, sorted by UID (a UID without a header, e.g. a
/// flag update, is left out).
pub(crate) fn headers_of(got: BTreeMap<Uid, Partial>) -> Result<Vec<FetchedHeader>, ImapError> {
    let mut out = Vec::with_capacity(got.len());
    for (uid, p) in got {
        let Some(header) = p.header else { continue };
        let size = p
            .size
            .ok_or_else(|| ImapError::Protocol(format!("FETCH of UID {uid} lacks RFC822.SIZE")))?;
        out.push(FetchedHeader { uid, size, header });
    }
    Ok(out)
}

impl ImapSession {
    /// [`crate::Transport::fetch_headers`].
    ///
    /// `n:*` always covers the last message, so a folder that holds
    /// messages (as the server itself said: SELECT's EXISTS, adjusted by
    /// every EXISTS and EXPUNGE since, both before and after the FETCH)
    /// must give at least one header. When
    /// none comes, another client may have expunged them without the
    /// server telling us yet: a NOOP lets it, and the FETCH is asked once
    /// more. Still nothing while the count stays above zero is a server
    /// fault ([`ImapError::ServerFailure`]), not an empty folder.
    pub(crate) async fn fetch_headers_impl(
        &mut self,
        uids: UidRange,
    ) -> Result<Vec<FetchedHeader>, ImapError> {
        self.require_selected("fetch_headers")?;
        let mut rechecked = false;
        loop {
            // Messages announced during the FETCH may not be in it (the
            // server resolves `*` first), and expunged ones are gone: only
            // a count that held before and after counts.
            let before = self.conn.mailbox.exists.unwrap_or(0);
            let (got, answered, label) = self.fetch_header_data(uids).await?;
            let exists = before.min(self.conn.mailbox.exists.unwrap_or(0));
            if uids.end.is_some() || exists == 0 || answered > 0 {
                let headers = headers_of(got)?;
                if let Some(sel) = self.selected.as_mut() {
                    sel.sizes.extend(headers.iter().map(|h| (h.uid, h.size)));
                }
                return Ok(headers);
            }
            if rechecked {
                return Err(ImapError::ServerFailure {
                    command: label,
                    text: format!(
                        "the server said the folder holds {exists} message(s) but returned none of them"
                    ),
                });
            }
            let done = self.conn.run_simple(&Command::new("NOOP")).await?;
            if !done.is_ok() {
                return Err(done.into_error("NOOP".into()));
            }
            if self.conn.mailbox.exists == Some(0) {
                return Ok(Vec::new());
            }
            rechecked = true;
        }
    }

    /// The header `FETCH` of `uids`.
    pub(crate) fn header_fetch_command(uids: UidRange) -> Command<'static> {
        Command::new("UID FETCH")
            .raw(uids.to_string())
            .raw("(UID RFC822.SIZE BODY.PEEK[HEADER])")
    }

    /// One header FETCH: the data of UIDs in `uids`, how many responses
    /// carried a header at all, and the command's label.
    async fn fetch_header_data(
        &mut self,
        uids: UidRange,
    ) -> Result<(BTreeMap<Uid, Partial>, usize, String), ImapError> {
        let cmd = Self::header_fetch_command(uids);
        let mut got = BTreeMap::new();
        let mut answered = 0usize;
        let done = self
            .conn
            .run_limited(&cmd, Limits::headers(), &mut |r| {
                if collect_fetch(r, &|u| uids.contains(u), &mut got) {
                    answered += 1;
                }
            })
            .await?;
        if !done.is_ok() {
            return Err(done.into_error(cmd.label()));
        }
        Ok((got, answered, cmd.label()))
    }

    /// [`crate::Transport::fetch_messages`].
    pub(crate) async fn fetch_messages_impl(
        &mut self,
        uids: &[Uid],
        max_size: u32,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        self.require_selected("fetch_messages")?;
        let (ready, uids) = self.take_prefetched(uids, max_size);
        let mut fetched = self.fetch_messages_from_server(&uids, max_size).await?;
        if ready.is_empty() {
            return Ok(fetched);
        }
        fetched.extend(ready);
        fetched.sort_by_key(|m| m.uid);
        Ok(fetched)
    }

    /// The messages of `uids` whose whole bodies came with the headers
    /// (taken out of the session: handed out once), and the UIDs left.
    fn take_prefetched(&mut self, uids: &[Uid], max_size: u32) -> (Vec<FetchedMessage>, Vec<Uid>) {
        let Some(sel) = self.selected.as_mut().filter(|s| !s.bodies.is_empty()) else {
            return (Vec::new(), uids.to_vec());
        };
        let mut ready = Vec::new();
        let mut rest = Vec::new();
        for &uid in uids {
            match sel.bodies.remove(&uid) {
                Some(body) if body.len() <= max_size as usize => ready.push(FetchedMessage {
                    uid,
                    size: body.len() as u32,
                    body: Some(body),
                }),
                _ => rest.push(uid),
            }
        }
        (ready, rest)
    }

    /// [`crate::Transport::fetch_messages`], asking the server.
    async fn fetch_messages_from_server(
        &mut self,
        uids: &[Uid],
        max_size: u32,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        // Sizes a header FETCH already gave need not be asked again. An
        // oversized one is asked anyway: only the server can tell whether
        // it is still there, and it is reported without its body.
        let known = self.selected.as_ref().map(|s| &s.sizes);
        let mut sizes: BTreeMap<Uid, u32> = BTreeMap::new();
        let mut unknown = Vec::new();
        for &uid in uids {
            match known
                .and_then(|k| k.get(&uid))
                .filter(|&&size| size <= max_size)
            {
                Some(&size) => {
                    sizes.insert(uid, size);
                }
                None => unknown.push(uid),
            }
        }
        let wanted: BTreeSet<Uid> = unknown.iter().copied().collect();
        let mut asked = BTreeMap::new();
        for set in uid_sets(&unknown, MAX_UID_SET_LEN) {
            let cmd = Command::new("UID FETCH").raw(set).raw("(UID RFC822.SIZE)");
            let done = self
                .conn
                .run(&cmd, &mut |r| {
                    collect_fetch(r, &|u| wanted.contains(&u), &mut asked);
                })
                .await?;
            if !done.is_ok() {
                return Err(done.into_error(cmd.label()));
            }
        }
        sizes.extend(
            asked
                .into_iter()
                .filter_map(|(uid, p)| Some((uid, p.size?))),
        );
        let small: BTreeMap<Uid, u32> = sizes
            .iter()
            .filter(|(_, &s)| s <= max_size)
            .map(|(&u, &s)| (u, s))
            .collect();
        let mut bodies = self.fetch_bodies(&small).await?;
        let mut out = Vec::with_capacity(sizes.len());
        for (uid, size) in sizes {
            if size > max_size {
                out.push(FetchedMessage {
                    uid,
                    size,
                    body: None,
                });
            } else if let Some(body) = bodies.get_mut(&uid).and_then(|p| p.body.take()) {
                out.push(FetchedMessage {
                    uid,
                    size,
                    body: Some(body),
                });
            }
            // else: expunged between the two fetches; left out.
        }
        Ok(out)
    }

    /// Downloads the bodies of `small` (UID → announced size). A literal
    /// larger than the largest announced size (plus slack) fails the
    /// command before anything is stored.
    async fn fetch_bodies(
        &mut self,
        small: &BTreeMap<Uid, u32>,
    ) -> Result<BTreeMap<Uid, Partial>, ImapError> {
        let largest = small.values().copied().max().unwrap_or(0);
        let sum = small.values().map(|&s| u64::from(s)).sum();
        let limits = Limits::bodies(u64::from(largest), sum);
        let list: Vec<Uid> = small.keys().copied().collect();
        let mut bodies = BTreeMap::new();
        for set in uid_sets(&list, MAX_UID_SET_LEN) {
            let cmd = Command::new("UID FETCH").raw(set).raw("(UID BODY.PEEK[])");
            let done = self
                .conn
                .run_limited(&cmd, limits, &mut |r| {
                    collect_fetch(r, &|u| small.contains_key(&u), &mut bodies);
                })
                .await?;
            if !done.is_ok() {
                return Err(done.into_error(cmd.label()));
            }
        }
        Ok(bodies)
    }
}
