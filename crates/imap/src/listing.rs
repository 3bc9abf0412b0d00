//! The account's folder list taken in the flight that opens a folder
//! ([`crate::Transport::list_with_next_open`]): it tells whether a folder
//! that could not be opened exists, and which folders are special-use,
//! without a round trip of their own.

use async_imap::imap_proto::{MailboxDatum, Response};

use crate::types::{Capabilities, FolderInfo};
use crate::wire::Command;

/// Where the listing of [`crate::Transport::list_with_next_open`] stands.
#[derive(Debug, Default)]
pub(crate) enum FolderListing {
    /// Not asked for.
    #[default]
    NotWanted,
    /// To be sent with the next open.
    Wanted,
    /// Taken with an open; kept for the next special-use query.
    Got(Vec<FolderInfo>),
}

/// The folder [`crate::Transport::create_with_next_open`] asked to create
/// with the next open, and the one whose `CREATE` succeeded there.
#[derive(Debug, Default)]
pub(crate) struct CreateRider {
    /// To be sent with the next open.
    pub(crate) create: Option<String>,
    /// Created by an open's flight, not yet reported to a create call.
    pub(crate) created: Option<String>,
}

/// The command that lists every folder with its special-use attributes:
/// `LIST "" "*" RETURN (SPECIAL-USE)` where the server knows the return
/// option (RFC 6154 with RFC 5258), else `LIST "" "*"`, which shows them
/// on servers that have them at all.
pub(crate) fn command(caps: &Capabilities) -> Command<'static> {
    let cmd = Command::new("LIST").mailbox("").mailbox("*");
    if caps.has("SPECIAL-USE") && caps.has("LIST-EXTENDED") {
        cmd.raw("RETURN (SPECIAL-USE)")
    } else {
        cmd
    }
}

/// The folder `r` lists, if it is `LIST` data.
pub(crate) fn folder_of(r: &Response<'_>) -> Option<FolderInfo> {
    let Response::MailboxData(MailboxDatum::List {
        name_attributes,
        delimiter,
        name,
    }) = r
    else {
        return None;
    };
    Some(FolderInfo {
        name: crate::mutf7::decode_lenient(name),
        delimiter: delimiter.as_deref().and_then(|d| d.chars().next()),
        attributes: name_attributes.iter().map(attribute_name).collect(),
    })
}

/// Whether `listed` shows exactly `folder` (`INBOX` in any case), as a
/// folder that exists.
pub(crate) fn shows(listed: &[FolderInfo], folder: &str) -> bool {
    let inbox = folder.eq_ignore_ascii_case("INBOX");
    listed.iter().any(|f| {
        let same = if inbox {
            f.name.eq_ignore_ascii_case(folder)
        } else {
            f.name == folder
        };
        same && !f.has_attribute("\\NonExistent")
    })
}

/// A `LIST` name attribute as sma shows it (`\\Noselect`, `\\All`, ...).
pub(crate) fn attribute_name(a: &async_imap::imap_proto::NameAttribute<'_>) -> String {
    use async_imap::imap_proto::NameAttribute as A;
    match a {
        A::NoInferiors => "\\Noinferiors".into(),
        A::NoSelect => "\\Noselect".into(),
        A::Marked => "\\Marked".into(),
        A::Unmarked => "\\Unmarked".into(),
        A::All => "\\All".into(),
        A::Archive => "\\Archive".into(),
        A::Drafts => "\\Drafts".into(),
        A::Flagged => "\\Flagged".into(),
        A::Junk => "\\Junk".into(),
        A::Sent => "\\Sent".into(),
        A::Trash => "\\Trash".into(),
        A::Extension(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str, attributes: &[&str]) -> FolderInfo {
        FolderInfo {
            name: name.into(),
            delimiter: Some('.'),
            attributes: attributes.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn a_listing_shows_folders_that_exist_by_exact_name() {
        let listed = [
            folder("INBOX", &[]),
            folder("_Autocrypt_SMA", &[]),
            folder("Gone", &["\\NonExistent"]),
        ];
        assert!(shows(&listed, "_Autocrypt_SMA"));
        assert!(shows(&listed, "inbox"));
        assert!(!shows(&listed, "_autocrypt_sma"));
        assert!(!shows(&listed, "Gone"));
        assert!(!shows(&listed, "_Autocrypt_SMA_1"));
    }

    #[test]
    fn the_return_option_only_where_the_server_has_it() {
        let full = Capabilities::from_raw(vec!["SPECIAL-USE".into(), "LIST-EXTENDED".into()]);
        let bare = Capabilities::from_raw(vec!["SPECIAL-USE".into()]);
        assert_eq!(
            command(&full).label(),
            "LIST \"\" \"*\" RETURN (SPECIAL-USE)"
        );
        assert_eq!(command(&bare).label(), "LIST \"\" \"*\"");
        assert_eq!(command(&Capabilities::default()).label(), "LIST \"\" \"*\"");
    }
}
