//! Autocrypt's `prefer-encrypt` setting: one type for the whole workspace
//! (the keyring, the account's own setting, Setup Messages, the CLI and the
//! JSON-RPC server).

use serde::{Deserialize, Serialize};

/// An Autocrypt `prefer-encrypt` value. Ordered `NoPreference < Mutual`
/// (the keyring's merge uses the order to break exact ties).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PreferEncrypt {
    /// `nopreference`: no preference stated (the default).
    #[default]
    #[serde(rename = "nopreference")]
    NoPreference,
    /// `mutual`: encrypt by default when the peer also says mutual.
    Mutual,
}

impl PreferEncrypt {
    /// The attribute, header and CLI value: `mutual` or `nopreference`.
    pub fn as_str(self) -> &'static str {
        match self {
            PreferEncrypt::Mutual => "mutual",
            PreferEncrypt::NoPreference => "nopreference",
        }
    }

    /// Parses `mutual` / `nopreference` (case-insensitive); anything else
    /// is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("mutual") {
            Some(PreferEncrypt::Mutual)
        } else if s.eq_ignore_ascii_case("nopreference") {
            Some(PreferEncrypt::NoPreference)
        } else {
            None
        }
    }
}

impl std::fmt::Display for PreferEncrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PreferEncrypt {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        PreferEncrypt::parse(s).ok_or_else(|| format!("{s:?} is not `mutual` or `nopreference`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_order_and_json() {
        assert_eq!(PreferEncrypt::parse("MUTUAL"), Some(PreferEncrypt::Mutual));
        assert_eq!(
            PreferEncrypt::parse("nopreference"),
            Some(PreferEncrypt::NoPreference)
        );
        assert_eq!(PreferEncrypt::parse("yes"), None);
        assert!(PreferEncrypt::NoPreference < PreferEncrypt::Mutual);
        assert_eq!(PreferEncrypt::default(), PreferEncrypt::NoPreference);
        assert_eq!(
            serde_json::to_string(&PreferEncrypt::NoPreference).unwrap(),
            "\"nopreference\""
        );
        assert_eq!(
            serde_json::from_str::<PreferEncrypt>("\"mutual\"").unwrap(),
            PreferEncrypt::Mutual
        );
    }
}
