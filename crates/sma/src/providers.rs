//! Built-in IMAP settings of well-known mail providers, keyed by the
//! domain of the account address, so that `sma init` needs no `--server`
//! for them.
//!
//! Only the connection settings are built in (host, port, security). How
//! each provider logs in, names folders, idles and deletes, and what sma
//! does about it, is in docs/COMPATIBILITY.md ("Providers"), taken from the
//! providers' public documentation. A provider whose users mostly have
//! their own domains (Microsoft 365, Zoho, Fastmail, mailbox.org with a
//! custom domain) is found only by its own domains; pass `--server` for the
//! others.

use serde::Serialize;
use sma_imap::Security;

/// How a provider's IMAP server is reached and logged in to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Provider {
    /// The provider's name, e.g. `Gmail`.
    pub name: &'static str,
    /// Address domains it serves (lower case).
    #[serde(skip)]
    pub domains: &'static [&'static str],
    /// IMAP host.
    pub host: &'static str,
    /// IMAP port.
    pub port: u16,
    /// `tls` (implicit TLS) or `starttls`.
    pub security: Security,
    /// What to log in with, for the user (one sentence).
    pub login: &'static str,
}

/// The built-in table (see docs/COMPATIBILITY.md for the sources).
pub const PROVIDERS: &[Provider] = &[
    Provider {
        name: "Gmail",
        domains: &["gmail.com", "googlemail.com"],
        host: "imap.gmail.com",
        port: 993,
        security: Security::Tls,
        login: "an app password (needs 2-step verification) or OAuth 2.0",
    },
    Provider {
        name: "Outlook.com",
        domains: &[
            "outlook.com",
            "hotmail.com",
            "live.com",
            "msn.com",
            "outlook.de",
            "hotmail.de",
            "hotmail.co.uk",
            "hotmail.fr",
            "live.de",
            "live.co.uk",
            "live.fr",
        ],
        host: "outlook.office365.com",
        port: 993,
        security: Security::Tls,
        login: "OAuth 2.0 only (Microsoft has switched off password login over IMAP)",
    },
    Provider {
        name: "Yahoo",
        domains: &[
            "yahoo.com",
            "ymail.com",
            "rocketmail.com",
            "yahoo.de",
            "yahoo.co.uk",
            "yahoo.fr",
        ],
        host: "imap.mail.yahoo.com",
        port: 993,
        security: Security::Tls,
        login: "an app password from Yahoo's account security page",
    },
    Provider {
        name: "AOL",
        domains: &["aol.com", "aim.com"],
        host: "imap.aol.com",
        port: 993,
        security: Security::Tls,
        login: "an app password from AOL's account security page",
    },
    Provider {
        name: "iCloud",
        domains: &["icloud.com", "me.com", "mac.com"],
        host: "imap.mail.me.com",
        port: 993,
        security: Security::Tls,
        login: "an app-specific password (needs two-factor authentication)",
    },
    Provider {
        name: "GMX",
        domains: &["gmx.net", "gmx.de", "gmx.at", "gmx.ch"],
        host: "imap.gmx.net",
        port: 993,
        security: Security::Tls,
        login: "the account password (or an app password with two-factor authentication); enable IMAP in GMX's settings first",
    },
    Provider {
        name: "GMX (international)",
        domains: &["gmx.com"],
        host: "imap.gmx.com",
        port: 993,
        security: Security::Tls,
        login: "the account password (or an app password with two-factor authentication); enable IMAP in GMX's settings first",
    },
    Provider {
        name: "WEB.DE",
        domains: &["web.de"],
        host: "imap.web.de",
        port: 993,
        security: Security::Tls,
        login: "the account password (or an app password with two-factor authentication); enable IMAP in WEB.DE's settings first",
    },
    Provider {
        name: "Fastmail",
        domains: &["fastmail.com", "fastmail.fm"],
        host: "imap.fastmail.com",
        port: 993,
        security: Security::Tls,
        login: "an app password (Fastmail refuses the account password over IMAP)",
    },
    Provider {
        name: "mailbox.org",
        domains: &["mailbox.org"],
        host: "imap.mailbox.org",
        port: 993,
        security: Security::Tls,
        login: "the account password",
    },
    Provider {
        name: "Posteo",
        domains: &[
            "posteo.de",
            "posteo.net",
            "posteo.at",
            "posteo.ch",
            "posteo.eu",
        ],
        host: "posteo.de",
        port: 993,
        security: Security::Tls,
        login: "the account password",
    },
    Provider {
        name: "Proton Mail Bridge",
        domains: &["proton.me", "protonmail.com", "protonmail.ch", "pm.me"],
        host: "127.0.0.1",
        port: 1143,
        security: Security::StartTls,
        login: "the password Proton Mail Bridge shows (Bridge must run on this machine; pass its exported certificate with --ca-file)",
    },
    Provider {
        name: "Zoho Mail",
        domains: &["zoho.com", "zohomail.com"],
        host: "imap.zoho.com",
        port: 993,
        security: Security::Tls,
        login: "the account password or an app-specific password (with two-factor authentication); enable IMAP access in Zoho's settings first",
    },
    Provider {
        name: "Zoho Mail (EU)",
        domains: &["zoho.eu", "zohomail.eu"],
        host: "imap.zoho.eu",
        port: 993,
        security: Security::Tls,
        login: "the account password or an app-specific password (with two-factor authentication); enable IMAP access in Zoho's settings first",
    },
    Provider {
        name: "Yandex Mail",
        domains: &["yandex.com", "yandex.ru", "ya.ru"],
        host: "imap.yandex.com",
        port: 993,
        security: Security::Tls,
        login: "an app password; allow IMAP in Yandex Mail's settings first",
    },
];

/// The domain of an address: after the last `@`, lower case, without a
/// trailing dot. `None` without an `@` or with nothing after it.
pub fn domain_of(address: &str) -> Option<String> {
    let (_, domain) = address.trim().rsplit_once('@')?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// The built-in settings for the provider of `address`, if any.
pub fn for_address(address: &str) -> Option<&'static Provider> {
    let domain = domain_of(address)?;
    PROVIDERS
        .iter()
        .find(|p| p.domains.contains(&domain.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_domains_give_their_provider() {
        for (addr, name, host, port, security) in [
            ("alice@gmail.com", "Gmail", "imap.gmail.com", 993, "tls"),
            (
                "Alice@GoogleMail.COM",
                "Gmail",
                "imap.gmail.com",
                993,
                "tls",
            ),
            (
                "bob@hotmail.com",
                "Outlook.com",
                "outlook.office365.com",
                993,
                "tls",
            ),
            ("c@icloud.com", "iCloud", "imap.mail.me.com", 993, "tls"),
            ("d@web.de", "WEB.DE", "imap.web.de", 993, "tls"),
            ("e@gmx.de", "GMX", "imap.gmx.net", 993, "tls"),
            (
                "f@pm.me",
                "Proton Mail Bridge",
                "127.0.0.1",
                1143,
                "starttls",
            ),
            ("g@ya.ru", "Yandex Mail", "imap.yandex.com", 993, "tls"),
            ("h@aol.com.", "AOL", "imap.aol.com", 993, "tls"),
            (
                "\"a@b\"@fastmail.com",
                "Fastmail",
                "imap.fastmail.com",
                993,
                "tls",
            ),
        ] {
            let p = for_address(addr).unwrap_or_else(|| panic!("{addr} not found"));
            assert_eq!(
                (p.name, p.host, p.port, p.security.as_str()),
                (name, host, port, security),
                "{addr}"
            );
        }
    }

    #[test]
    fn unknown_or_malformed_addresses_give_none() {
        for addr in [
            "alice@example.org",
            "alice",
            "alice@",
            "@",
            "",
            "alice@gmail.com.evil.example",
            "alice@notgmail.com",
            "alice@mail.gmail.com",
        ] {
            assert_eq!(for_address(addr), None, "{addr:?}");
        }
    }

    #[test]
    fn the_table_is_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for p in PROVIDERS {
            assert!(p.security != Security::Plain, "{}", p.name);
            assert!(p.port > 0 && !p.host.is_empty() && !p.login.is_empty());
            assert!(!p.domains.is_empty(), "{}", p.name);
            for d in p.domains {
                assert_eq!(*d, d.to_ascii_lowercase(), "{d}");
                assert!(seen.insert(*d), "{d} is listed twice");
            }
        }
    }
}
