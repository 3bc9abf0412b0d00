//! [`Transport`] for [`ImapSession`]: the folder and message operations.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response};

use crate::error::ImapError;
use crate::limits::Limits;
use crate::mutf7;
use crate::response::{Code, Done, Outcome, Watch};
use crate::session::ImapSession;
use crate::transport::Transport;
use crate::types::{
    Capabilities, CheckedAppend, CreateOutcome, FetchedHeader, FetchedMessage, FolderInfo,
    FolderStatuses, IdleOutcome, MailboxState, MailboxStatus, Namespace, Uid, UidRange,
};
use crate::wire::{self, check_folder, flag_list, uid_sets, Command, MAX_UID_SET_LEN};

impl ImapSession {
    /// What an `APPEND` to `folder` answered with `done` means: the new
    /// message's UID (with UIDPLUS), none, or the error.
    pub(crate) fn append_outcome(
        &self,
        folder: &str,
        done: Done,
        label: String,
    ) -> Result<Option<Uid>, ImapError> {
        match done.outcome {
            // An APPENDUID the server sends without advertising UIDPLUS
            // is not relied on (RFC 4315 makes it part of UIDPLUS): the
            // driver then finds its message by Message-ID, as on servers
            // that really lack it.
            Outcome::Ok => Ok(match done.code {
                Some(Code::AppendUid { uid }) if self.caps.uidplus => uid,
                _ => None,
            }),
            Outcome::No if done.code == Some(Code::TryCreate) => Err(ImapError::NoSuchFolder {
                folder: folder.to_owned(),
            }),
            _ => Err(done.into_error(label)),
        }
    }

    /// What a `CREATE` of `folder` answered with `done` means: a `NO`
    /// counts as "already existed" if and only if `LIST` shows the folder.
    async fn create_outcome(
        &mut self,
        folder: &str,
        done: Done,
        label: String,
    ) -> Result<CreateOutcome, ImapError> {
        match done.outcome {
            Outcome::Ok => Ok(CreateOutcome::Created),
            Outcome::No if self.folder_exists(folder).await? => {
                tracing::debug!(folder, text = %done.text, "IMAP CREATE: folder already exists");
                Ok(CreateOutcome::AlreadyExisted)
            }
            _ => Err(done.into_error(label)),
        }
    }

    /// Whether `folder` is the folder selected, read-only.
    pub(crate) fn is_examined(&self, folder: &str) -> bool {
        self.selected
            .as_ref()
            .is_some_and(|s| s.read_only && s.name == folder)
    }

    pub(crate) fn require_selected(&self, what: &str) -> Result<(), ImapError> {
        if self.selected.is_none() {
            return Err(ImapError::InvalidArgument(format!(
                "{what} needs a selected folder: call select first"
            )));
        }
        Ok(())
    }

    /// Runs a command that returns nothing but OK.
    async fn simple(&mut self, cmd: Command<'_>) -> Result<Done, ImapError> {
        let done = self.conn.run_simple(&cmd).await?;
        if done.is_ok() {
            Ok(done)
        } else {
            Err(done.into_error(cmd.label()))
        }
    }

    /// Whether `LIST "" folder` shows exactly this folder.
    async fn folder_exists(&mut self, folder: &str) -> Result<bool, ImapError> {
        let found = self.list("", folder).await?;
        Ok(crate::listing::shows(&found, folder))
    }

    /// Turns a failed command on `folder` into the right error. Only an
    /// unambiguous answer means "missing" ([`ImapError::NoSuchFolder`]):
    /// `[NONEXISTENT]` or `[TRYCREATE]`, or a `NO` without a server-trouble
    /// code while `LIST` succeeds and does not show the folder. A server in
    /// trouble (`[SERVERBUG]`, `[UNAVAILABLE]`, `[INUSE]`, ...), a failing
    /// `LIST`, or a `NO` for a folder `LIST` still shows is a
    /// [`ImapError::ServerFailure`]; `BAD` stays [`ImapError::Bad`].
    pub(crate) async fn folder_error(
        &mut self,
        folder: &str,
        done: Done,
        label: String,
    ) -> Result<ImapError, ImapError> {
        self.folder_error_listed(folder, done, label, None).await
    }

    /// [`Self::folder_error`], taking whether the folder exists from
    /// `listed` (every folder, listed in the same flight) when there is one.
    pub(crate) async fn folder_error_listed(
        &mut self,
        folder: &str,
        done: Done,
        label: String,
        listed: Option<&[FolderInfo]>,
    ) -> Result<ImapError, ImapError> {
        if done.outcome != Outcome::No || done.is_server_trouble() {
            return Ok(done.into_error(label));
        }
        if done.code == Some(Code::TryCreate) || done.text_code().as_deref() == Some("NONEXISTENT")
        {
            return Ok(ImapError::NoSuchFolder {
                folder: folder.to_owned(),
            });
        }
        let exists = match listed {
            Some(listed) => Ok(crate::listing::shows(listed, folder)),
            None => self.folder_exists(folder).await,
        };
        let text = match exists {
            Ok(false) => {
                return Ok(ImapError::NoSuchFolder {
                    folder: folder.to_owned(),
                })
            }
            Ok(true) => format!("{}{LIST_SHOWS_IT}", done.text),
            Err(e) if e.is_connection_lost() => return Err(e),
            Err(e) => format!("{} (and LIST failed: {e})", done.text),
        };
        Ok(ImapError::ServerFailure {
            command: label,
            text,
        })
    }

    /// `UID STORE +FLAGS (\Deleted)` and `UID EXPUNGE` of one UID set in
    /// one flight. `UID EXPUNGE` removes only messages of the set that
    /// carry `\Deleted`, so sending it before the STORE's answer is
    /// harmless if the STORE fails (whose error is reported). A server
    /// that runs the two side by side may expunge fewer messages than the
    /// STORE flagged (Dovecot under load): then `UID EXPUNGE` runs again,
    /// on its own.
    async fn delete_in_one_flight(&mut self, set: &str) -> Result<(), ImapError> {
        let store = Command::new("UID STORE")
            .raw(set.to_owned())
            .raw("+FLAGS (\\Deleted)");
        let expunge = Command::new("UID EXPUNGE").raw(set.to_owned());
        let (mut flagged, mut expunged) = (BTreeSet::new(), 0usize);
        let (stored, done) = self
            .conn
            .run_pair(&store, &expunge, Watch::OwnExpunge, &mut |r| match r {
                Response::Fetch(_, attrs) => {
                    flagged.extend(attrs.iter().filter_map(|a| match a {
                        AttributeValue::Uid(uid) => Some(*uid),
                        _ => None,
                    }));
                }
                Response::Expunge(_) => expunged += 1,
                Response::Vanished {
                    earlier: false,
                    uids,
                } => {
                    expunged += uids.iter().map(|r| r.clone().count()).sum::<usize>();
                }
                _ => {}
            })
            .await?;
        if !stored.is_ok() {
            return Err(stored.into_error(store.label()));
        }
        if !done.is_ok() {
            return Err(done.into_error(expunge.label()));
        }
        if expunged < flagged.len() {
            tracing::debug!(
                flagged = flagged.len(),
                expunged,
                "UID EXPUNGE missed messages its UID STORE flagged; expunging again"
            );
            self.conn.set_watch(Watch::OwnExpunge);
            let again = self.simple(expunge).await;
            self.conn.set_watch(Watch::Normal);
            again?;
        }
        Ok(())
    }
}

/// Appended to a server's `NO` text when `LIST` shows the folder it refused.
pub(crate) const LIST_SHOWS_IT: &str = " (yet LIST shows the folder)";

impl Transport for ImapSession {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn early_login_fell_back(&self) -> Option<&[String]> {
        (self.early_login() == crate::EarlyLogin::FellBack).then_some(self.pre_login_capabilities())
    }

    fn commands_behind_login_lost(&self) -> bool {
        self.early_login() == crate::EarlyLogin::FlightLost
    }

    fn list_with_next_open(&mut self) {
        self.listing = crate::listing::FolderListing::Wanted;
    }

    fn create_with_next_open(&mut self, folder: &str) {
        if check_folder(folder).is_ok() {
            self.create_rider.create = Some(folder.to_owned());
        }
    }

    async fn namespace(&mut self) -> Result<Namespace, ImapError> {
        self.settle().await?;
        if self.caps.namespace {
            let done = self.conn.run_simple(&Command::new("NAMESPACE")).await?;
            let line = self.conn.take_captured(b"* NAMESPACE ");
            if done.is_ok() {
                match line.as_deref().map(wire::parse_namespace) {
                    Some(Some(Some(ns))) => {
                        return Ok(Namespace {
                            prefix: mutf7::decode_lenient(&ns.prefix),
                            ..ns
                        })
                    }
                    Some(Some(None)) => {}
                    Some(None) => tracing::warn!(
                        line = %String::from_utf8_lossy(line.as_deref().unwrap_or_default()).trim_end(),
                        "IMAP NAMESPACE response not understood; using LIST"
                    ),
                    None => tracing::warn!("IMAP NAMESPACE gave no data; using LIST"),
                }
            }
        }
        let root = self.list("", "").await?;
        Ok(Namespace {
            prefix: String::new(),
            delimiter: root.first().and_then(|f| f.delimiter),
        })
    }

    async fn list(&mut self, reference: &str, pattern: &str) -> Result<Vec<FolderInfo>, ImapError> {
        self.settle().await?;
        check_folder(reference)?;
        check_folder(pattern)?;
        self.list_with(&Command::new("LIST").mailbox(reference).mailbox(pattern))
            .await
    }

    async fn list_subscribed(&mut self, pattern: &str) -> Result<Vec<String>, ImapError> {
        self.settle().await?;
        check_folder(pattern)?;
        let cmd = Command::new("LSUB").mailbox("").mailbox(pattern);
        let mut out = Vec::new();
        let done = self
            .conn
            .run(&cmd, &mut |r| {
                if let Response::MailboxData(MailboxDatum::List {
                    name,
                    name_attributes,
                    ..
                }) = r
                {
                    // A \Noselect LSUB entry is only a parent of subscribed
                    // folders, not subscribed itself.
                    let noselect = name_attributes
                        .iter()
                        .any(|a| matches!(a, async_imap::imap_proto::NameAttribute::NoSelect));
                    if !noselect {
                        out.push(mutf7::decode_lenient(name));
                    }
                }
            })
            .await?;
        if !done.is_ok() {
            return Err(done.into_error(cmd.label()));
        }
        Ok(out)
    }

    async fn create(&mut self, folder: &str) -> Result<CreateOutcome, ImapError> {
        self.settle().await?;
        check_folder(folder)?;
        let cmd = Command::new("CREATE").mailbox(folder);
        let done = self.conn.run_simple(&cmd).await?;
        self.create_outcome(folder, done, cmd.label()).await
    }

    async fn create_unsubscribed(&mut self, folder: &str) -> Result<CreateOutcome, ImapError> {
        let mut created = self.create_unsubscribed_all(&[folder]).await?;
        created
            .pop()
            .ok_or_else(|| ImapError::Protocol("a pipelined pair lost an answer".into()))
    }

    async fn create_unsubscribed_all(
        &mut self,
        folders: &[&str],
    ) -> Result<Vec<CreateOutcome>, ImapError> {
        self.settle().await?;
        for folder in folders {
            check_folder(folder)?;
        }
        // Taken only by a call that reports it: another create leaves it.
        let done_already = match &self.create_rider.created {
            Some(f) if folders.contains(&f.as_str()) => self.create_rider.created.take(),
            _ => None,
        };
        let is_done = |f: &&str| done_already.as_deref() == Some(*f);
        let mut cmds = Vec::with_capacity(2 * folders.len());
        for folder in folders.iter().filter(|f| !is_done(f)) {
            cmds.push(Command::new("CREATE").mailbox(folder));
            cmds.push(Command::new("UNSUBSCRIBE").mailbox(folder));
        }
        let refs: Vec<&Command<'_>> = cmds.iter().collect();
        let dones = match refs.is_empty() {
            true => Vec::new(),
            false => {
                self.conn
                    .run_many(&refs, Watch::Normal, Limits::default(), &mut |_, _| {})
                    .await?
            }
        };
        if dones.len() != cmds.len() {
            return Err(ImapError::Protocol(
                "a pipelined flight lost an answer".into(),
            ));
        }
        let mut sent = cmds.chunks(2).zip(dones.chunks(2));
        let mut out = Vec::with_capacity(folders.len());
        for folder in folders {
            if is_done(folder) {
                // Its CREATE went with an open (`create_with_next_open`).
                out.push(CreateOutcome::Created);
                continue;
            }
            let Some((pair, done)) = sent.next() else {
                return Err(ImapError::Protocol(
                    "a pipelined flight lost an answer".into(),
                ));
            };
            if !done[1].is_ok() {
                tracing::debug!(folder, text = %done[1].text, "UNSUBSCRIBE refused; ignored");
            }
            let outcome = self.create_outcome(folder, done[0].clone(), pair[0].label());
            out.push(outcome.await?);
        }
        Ok(out)
    }

    async fn delete(&mut self, folder: &str) -> Result<(), ImapError> {
        self.settle().await?;
        check_folder(folder)?;
        let cmd = Command::new("DELETE").mailbox(folder);
        let done = self.conn.run_simple(&cmd).await?;
        if !done.is_ok() {
            return Err(self.folder_error(folder, done, cmd.label()).await?);
        }
        if self.selected.as_ref().is_some_and(|s| s.name == folder) {
            self.selected = None;
        }
        Ok(())
    }

    async fn subscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        self.settle().await?;
        check_folder(folder)?;
        self.simple(Command::new("SUBSCRIBE").mailbox(folder))
            .await?;
        Ok(())
    }

    async fn unsubscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        self.settle().await?;
        check_folder(folder)?;
        self.simple(Command::new("UNSUBSCRIBE").mailbox(folder))
            .await?;
        Ok(())
    }

    async fn append(
        &mut self,
        folder: &str,
        flags: &[&str],
        message: &[u8],
    ) -> Result<Option<Uid>, ImapError> {
        self.settle().await?;
        let cmd = append_command(folder, flags, message)?;
        let mut done = self.conn.run_simple(&cmd).await?;
        if done.outcome == Outcome::No
            && done.code != Some(Code::TryCreate)
            && self.is_examined(folder)
        {
            // Courier refuses APPEND to the folder selected read-only
            // ("Current box is selected READ-ONLY"): close it (CLOSE never
            // expunges a read-only folder), append, and examine it again.
            tracing::debug!(folder, text = %done.text, "IMAP APPEND refused on the examined folder; retrying after CLOSE");
            self.simple(Command::new("CLOSE")).await?;
            self.selected = None;
            done = self.conn.run_simple(&cmd).await?;
            self.open(folder, true).await?;
        }
        self.append_outcome(folder, done, cmd.label())
    }

    async fn select(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        self.settle().await?;
        self.open(folder, false).await
    }

    async fn examine(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        self.settle().await?;
        self.open(folder, true).await
    }

    async fn status(&mut self, folder: &str) -> Result<MailboxStatus, ImapError> {
        self.settle().await?;
        self.status_impl(folder).await
    }

    async fn open_and_fetch_headers(
        &mut self,
        folder: &str,
        read_only: bool,
        uids: UidRange,
        prefetch_from: Option<Uid>,
    ) -> Result<(MailboxState, Vec<FetchedHeader>), ImapError> {
        self.open_and_fetch_headers_impl(folder, read_only, uids, prefetch_from)
            .await
    }

    async fn status_and_append(
        &mut self,
        items: &[(&str, &[u8])],
    ) -> Result<Vec<CheckedAppend>, ImapError> {
        self.settle().await?;
        self.status_and_append_impl(items).await
    }

    async fn append_all(
        &mut self,
        folder: &str,
        messages: &[&[u8]],
    ) -> Result<Vec<Option<Uid>>, ImapError> {
        self.settle().await?;
        self.append_all_impl(folder, messages).await
    }

    async fn list_status(&mut self, pattern: &str) -> Result<FolderStatuses, ImapError> {
        if self.caps.has("LIST-STATUS") {
            // One command: it goes behind the login, if that is outstanding.
            return self.list_status_impl(pattern).await;
        }
        self.settle().await?;
        crate::transport::list_then_status(self, pattern).await
    }

    async fn status_many(
        &mut self,
        folders: &[&str],
    ) -> Result<Vec<Result<MailboxStatus, ImapError>>, ImapError> {
        self.settle().await?;
        self.status_many_impl(folders).await
    }

    async fn fetch_headers(&mut self, uids: UidRange) -> Result<Vec<FetchedHeader>, ImapError> {
        self.settle().await?;
        self.fetch_headers_impl(uids).await
    }

    async fn fetch_messages(
        &mut self,
        uids: &[Uid],
        max_size: u32,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        self.settle().await?;
        self.fetch_messages_impl(uids, max_size).await
    }

    async fn search_header(&mut self, name: &str, value: &str) -> Result<Vec<Uid>, ImapError> {
        self.settle().await?;
        self.require_selected("search_header")?;
        let mut cmd = Command::new("UID SEARCH");
        if !name.is_ascii() || !value.is_ascii() {
            cmd = cmd.raw("CHARSET UTF-8");
        }
        let cmd = cmd.raw("HEADER").string(name).string(value);
        let mut out = Vec::new();
        let done = self
            .conn
            .run(&cmd, &mut |r| {
                if let Response::MailboxData(MailboxDatum::Search(ids)) = r {
                    out.extend_from_slice(ids);
                }
            })
            .await?;
        if !done.is_ok() {
            return Err(done.into_error(cmd.label()));
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    async fn delete_messages(&mut self, uids: &[Uid]) -> Result<(), ImapError> {
        self.settle().await?;
        self.require_selected("delete_messages")?;
        let sets = uid_sets(uids, MAX_UID_SET_LEN);
        if sets.is_empty() {
            return Ok(());
        }
        if let ([set], true) = (sets.as_slice(), self.caps.uidplus) {
            return self.delete_in_one_flight(set).await;
        }
        for set in &sets {
            self.simple(
                Command::new("UID STORE")
                    .raw(set.clone())
                    .raw("+FLAGS.SILENT (\\Deleted)"),
            )
            .await?;
        }
        self.conn.set_watch(Watch::OwnExpunge);
        let mut result = Ok(());
        if self.caps.uidplus {
            for set in sets {
                if let Err(e) = self.simple(Command::new("UID EXPUNGE").raw(set)).await {
                    result = Err(e);
                    break;
                }
            }
        } else {
            result = self.simple(Command::new("EXPUNGE")).await.map(|_| ());
        }
        self.conn.set_watch(Watch::Normal);
        result
    }

    async fn move_messages(
        &mut self,
        uids: &[Uid],
        dest: &str,
    ) -> Result<Option<Vec<Uid>>, ImapError> {
        self.settle().await?;
        self.move_messages_impl(uids, dest).await
    }

    async fn special_use_folders(&mut self) -> Result<Vec<FolderInfo>, ImapError> {
        self.settle().await?;
        self.special_use_folders_impl().await
    }

    async fn idle(&mut self, timeout: Duration) -> Result<IdleOutcome, ImapError> {
        self.settle().await?;
        self.idle_impl(timeout).await
    }

    async fn idle_until<C>(
        &mut self,
        timeout: Duration,
        cancel: C,
    ) -> Result<IdleOutcome, ImapError>
    where
        C: Future<Output = ()> + Send,
        Self: Sized,
    {
        self.settle().await?;
        self.idle_until_impl(timeout, cancel).await
    }

    async fn noop(&mut self) -> Result<(), ImapError> {
        self.settle().await?;
        self.simple(Command::new("NOOP")).await?;
        Ok(())
    }

    async fn logout(self) -> Result<(), ImapError> {
        self.conn.logout().await;
        Ok(())
    }

    async fn reconnect(&mut self) -> Result<(), ImapError> {
        self.replace_with_new().await
    }
}

/// The `APPEND` of `message` (with `flags`) to `folder`.
pub(crate) fn append_command<'a>(
    folder: &'a str,
    flags: &[&str],
    message: &'a [u8],
) -> Result<Command<'a>, ImapError> {
    check_folder(folder)?;
    let mut cmd = Command::new("APPEND").mailbox(folder);
    if !flags.is_empty() {
        cmd = cmd.raw(flag_list(flags)?);
    }
    Ok(cmd.literal(message))
}
