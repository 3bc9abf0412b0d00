//! Folder naming: where announcements and device inboxes live on the server.

use serde::{Deserialize, Serialize};

use crate::ids::DeviceId;

/// The base name of the announcements folder (before the namespace prefix).
pub const ANNOUNCE_BASE: &str = "_Autocrypt_SMA";

/// How device inbox folders are placed relative to the announcements folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `_Autocrypt_SMA_<id>` next to the announcements folder (default; works everywhere).
    #[default]
    Flat,
    /// `_Autocrypt_SMA<delimiter><id>` below it (needs a hierarchy delimiter).
    Nested,
}

impl Layout {
    /// The layout's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Flat => "flat",
            Layout::Nested => "nested",
        }
    }

    /// Parses `flat` or `nested`.
    pub fn parse(s: &str) -> Option<Layout> {
        match s {
            "flat" => Some(Layout::Flat),
            "nested" => Some(Layout::Nested),
            _ => None,
        }
    }
}

/// Folder names for one account, derived from the personal namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderNames {
    /// Personal namespace prefix, e.g. `""` (Dovecot) or `"INBOX."` (Courier, Cyrus).
    pub prefix: String,
    /// Hierarchy delimiter, if the server has one.
    pub delimiter: Option<char>,
    /// The inbox layout of this group.
    pub layout: Layout,
}

impl FolderNames {
    /// Folder names under `prefix`. A nested layout without a delimiter falls back to flat.
    pub fn new(prefix: &str, delimiter: Option<char>, layout: Layout) -> Self {
        let layout = if delimiter.is_none() {
            Layout::Flat
        } else {
            layout
        };
        FolderNames {
            prefix: prefix.to_owned(),
            delimiter,
            layout,
        }
    }

    /// The announcements folder.
    pub fn announce(&self) -> String {
        format!("{}{}", self.prefix, ANNOUNCE_BASE)
    }

    /// The inbox folder of device `id`.
    pub fn inbox(&self, id: &DeviceId) -> String {
        match (self.layout, self.delimiter) {
            (Layout::Nested, Some(d)) => format!("{}{}{}{}", self.prefix, ANNOUNCE_BASE, d, id),
            _ => format!("{}{}_{}", self.prefix, ANNOUNCE_BASE, id),
        }
    }

    /// If `folder` is some device's inbox under this naming, that device's id.
    pub fn inbox_owner(&self, folder: &str) -> Option<DeviceId> {
        let rest = folder
            .strip_prefix(&self.prefix)?
            .strip_prefix(ANNOUNCE_BASE)?;
        let id = match (self.layout, self.delimiter) {
            (Layout::Nested, Some(d)) => rest.strip_prefix(d)?,
            _ => rest.strip_prefix('_')?,
        };
        DeviceId::parse(id).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> DeviceId {
        DeviceId::parse("00112233aabbccdd").unwrap()
    }

    #[test]
    fn flat_names() {
        let f = FolderNames::new("", Some('.'), Layout::Flat);
        assert_eq!(f.announce(), "_Autocrypt_SMA");
        assert_eq!(f.inbox(&id()), "_Autocrypt_SMA_00112233aabbccdd");
        assert_eq!(f.inbox_owner("_Autocrypt_SMA_00112233aabbccdd"), Some(id()));
        assert_eq!(f.inbox_owner("_AUTOCRYPT_SMA_00112233aabbccdd"), None);
    }

    #[test]
    fn prefixed_and_nested_names() {
        let f = FolderNames::new("INBOX.", Some('.'), Layout::Nested);
        assert_eq!(f.announce(), "INBOX._Autocrypt_SMA");
        assert_eq!(f.inbox(&id()), "INBOX._Autocrypt_SMA.00112233aabbccdd");
        assert_eq!(
            f.inbox_owner("INBOX._Autocrypt_SMA.00112233aabbccdd"),
            Some(id())
        );
        assert_eq!(f.inbox_owner("_Autocrypt_SMA.00112233aabbccdd"), None);
    }

    #[test]
    fn nested_without_delimiter_is_flat() {
        let f = FolderNames::new("", None, Layout::Nested);
        assert_eq!(f.layout, Layout::Flat);
        assert_eq!(f.inbox(&id()), "_Autocrypt_SMA_00112233aabbccdd");
    }
}
