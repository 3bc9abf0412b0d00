//! Mailboxes ↔ IMAP folder names: the full name of a mailbox is built from
//! its `parentId` chain, in the IMAP personal namespace of the same
//! account (see the crate documentation).

use std::collections::HashMap;

use serde_json::Value;
use sma_imap::{FolderInfo, ImapError, Namespace};

/// The most mailboxes accepted from the server (more is hostile).
pub const MAX_MAILBOXES: usize = 100_000;
/// The deepest parent chain followed.
const MAX_DEPTH: usize = 64;
/// What Cyrus shows over IMAP for the hierarchy delimiter `.` inside a
/// mailbox name (with `unixhierarchysep: no`).
const CYRUS_DOT: char = '^';

/// One mailbox from `Mailbox/get`.
#[derive(Clone, Debug)]
pub(crate) struct Mailbox {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub role: Option<String>,
    pub is_subscribed: bool,
}

/// The account's mailboxes with their IMAP names.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tree {
    pub mailboxes: Vec<Mailbox>,
    /// Mailbox id → full IMAP name.
    pub full: HashMap<String, String>,
    /// Mailbox ids that are some mailbox's parent.
    pub parents: std::collections::HashSet<String>,
}

impl Tree {
    /// Builds the tree from a `Mailbox/get` response.
    pub fn from_get(v: &Value, ns: &Namespace) -> Result<Tree, ImapError> {
        let list = v
            .get("list")
            .and_then(Value::as_array)
            .ok_or_else(|| ImapError::Protocol("Mailbox/get answered without a list".into()))?;
        if list.len() > MAX_MAILBOXES {
            return Err(ImapError::Oversized {
                command: "Mailbox/get".into(),
                what: format!("{} mailboxes", list.len()),
                limit: format!("{MAX_MAILBOXES} mailboxes"),
            });
        }
        let mut mailboxes = Vec::with_capacity(list.len());
        for m in list {
            let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
            let (Some(id), Some(name)) = (s("id"), s("name")) else {
                return Err(ImapError::Protocol(
                    "Mailbox/get returned a mailbox without id or name".into(),
                ));
            };
            mailboxes.push(Mailbox {
                id,
                name,
                parent_id: s("parentId"),
                role: s("role"),
                is_subscribed: m
                    .get("isSubscribed")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            });
        }
        let by_id: HashMap<&str, &Mailbox> = mailboxes.iter().map(|m| (m.id.as_str(), m)).collect();
        let mut full = HashMap::with_capacity(mailboxes.len());
        for m in &mailboxes {
            if let Some(name) = full_name(m, &by_id, ns) {
                full.insert(m.id.clone(), name);
            }
        }
        let parents = mailboxes
            .iter()
            .filter_map(|m| m.parent_id.clone())
            .collect();
        Ok(Tree {
            mailboxes,
            full,
            parents,
        })
    }

    /// The id of the mailbox with this IMAP name (`INBOX` case-insensitive).
    pub fn id_of(&self, name: &str) -> Option<&str> {
        let want_inbox = name.eq_ignore_ascii_case("INBOX");
        self.full
            .iter()
            .find(|(_, n)| {
                if want_inbox {
                    n.eq_ignore_ascii_case("INBOX")
                } else {
                    n.as_str() == name
                }
            })
            .map(|(id, _)| id.as_str())
    }

    /// The mailbox with this id.
    pub fn get(&self, id: &str) -> Option<&Mailbox> {
        self.mailboxes.iter().find(|m| m.id == id)
    }

    /// Every mailbox as `LIST` would show it, sorted by name.
    pub fn folders(&self, ns: &Namespace) -> Vec<FolderInfo> {
        let mut out: Vec<FolderInfo> = self
            .mailboxes
            .iter()
            .filter_map(|m| {
                let name = self.full.get(&m.id)?.clone();
                let mut attributes = vec![if self.parents.contains(&m.id) {
                    "\\HasChildren".to_owned()
                } else {
                    "\\HasNoChildren".to_owned()
                }];
                if let Some(a) = m.role.as_deref().and_then(special_use) {
                    attributes.push(a.to_owned());
                }
                Some(FolderInfo {
                    name,
                    delimiter: ns.delimiter,
                    attributes,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// How to create `name`: the id of its deepest existing ancestor (or
    /// `None` for top level) and the names of the mailboxes to create
    /// below it, outermost first. `None` when the name lies outside the
    /// namespace.
    pub fn plan_create(&self, name: &str, ns: &Namespace) -> Option<(Option<String>, Vec<String>)> {
        let rest = name.strip_prefix(ns.prefix.as_str())?;
        if rest.is_empty() {
            return None;
        }
        let parts: Vec<&str> = match ns.delimiter {
            Some(d) => rest.split(d).collect(),
            None => vec![rest],
        };
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        let d = ns.delimiter.map(String::from).unwrap_or_default();
        // The longest existing ancestor.
        for keep in (1..parts.len()).rev() {
            let ancestor = format!("{}{}", ns.prefix, parts[..keep].join(&d));
            if let Some(id) = self.id_of(&ancestor) {
                let create = parts[keep..].iter().map(|p| jmap_name(p, ns)).collect();
                return Some((Some(id.to_owned()), create));
            }
        }
        Some((None, parts.iter().map(|p| jmap_name(p, ns)).collect()))
    }
}

/// The IMAP name of `m`, following its parents; `None` for a broken
/// (cyclic, too deep, dangling) chain.
fn full_name(m: &Mailbox, by_id: &HashMap<&str, &Mailbox>, ns: &Namespace) -> Option<String> {
    let mut parts = vec![];
    let mut cur = m;
    for _ in 0..MAX_DEPTH {
        let is_inbox = cur.role.as_deref() == Some("inbox");
        match &cur.parent_id {
            None if is_inbox => {
                // The inbox is INBOX; its children (in Cyrus with a prefix)
                // live under the prefix's own INBOX.
                if parts.is_empty() {
                    return Some("INBOX".to_owned());
                }
                parts.push("INBOX".to_owned());
                return Some(join(ns, parts));
            }
            None => {
                parts.push(imap_part(&cur.name, ns));
                return Some(join(ns, parts));
            }
            Some(p) => {
                parts.push(imap_part(&cur.name, ns));
                cur = by_id.get(p.as_str())?;
            }
        }
    }
    None
}

fn join(ns: &Namespace, mut parts: Vec<String>) -> String {
    parts.reverse();
    let d = ns.delimiter.map(String::from).unwrap_or_default();
    if parts.len() > 1 && parts[0] == "INBOX" && ns.prefix.is_empty() {
        // Without a prefix, the inbox's children are INBOX<d>name.
        return parts.join(&d);
    }
    format!("{}{}", ns.prefix, parts.join(&d))
}

/// A mailbox name as one IMAP name component: the delimiter inside it
/// becomes `^` (what Cyrus shows).
fn imap_part(name: &str, ns: &Namespace) -> String {
    match ns.delimiter {
        Some(d) => name.replace(d, &CYRUS_DOT.to_string()),
        None => name.to_owned(),
    }
}

/// One IMAP name component as a mailbox name (the reverse of [`imap_part`]).
fn jmap_name(part: &str, ns: &Namespace) -> String {
    match ns.delimiter {
        Some('.') => part.replace(CYRUS_DOT, "."),
        _ => part.to_owned(),
    }
}

/// The RFC 6154 attribute of an RFC 8621 role.
fn special_use(role: &str) -> Option<&'static str> {
    Some(match role {
        "all" => "\\All",
        "archive" => "\\Archive",
        "drafts" => "\\Drafts",
        "flagged" => "\\Flagged",
        "junk" => "\\Junk",
        "sent" => "\\Sent",
        "trash" => "\\Trash",
        _ => return None,
    })
}

/// Whether `name` matches the IMAP `LIST` pattern (`*` anything, `%`
/// anything but the delimiter).
pub(crate) fn list_match(pattern: &str, name: &str, delimiter: Option<char>) -> bool {
    // `INBOX` is case-insensitive at the start of a name.
    let fold = |s: &str| -> Vec<char> {
        match s.get(..5) {
            Some(h) if h.eq_ignore_ascii_case("INBOX") => {
                "INBOX".chars().chain(s[5..].chars()).collect()
            }
            _ => s.chars().collect(),
        }
    };
    let p = fold(pattern);
    let n = fold(name);
    // Iterative matcher with memo: positions (pi, ni).
    let mut memo = vec![vec![None::<bool>; n.len() + 1]; p.len() + 1];
    fn go(
        p: &[char],
        n: &[char],
        pi: usize,
        ni: usize,
        d: Option<char>,
        memo: &mut Vec<Vec<Option<bool>>>,
    ) -> bool {
        if let Some(r) = memo[pi][ni] {
            return r;
        }
        let r = if pi == p.len() {
            ni == n.len()
        } else {
            match p[pi] {
                '*' => (ni..=n.len()).any(|k| go(p, n, pi + 1, k, d, memo)),
                '%' => {
                    let mut k = ni;
                    let mut ok = go(p, n, pi + 1, k, d, memo);
                    while !ok && k < n.len() && Some(n[k]) != d {
                        k += 1;
                        ok = go(p, n, pi + 1, k, d, memo);
                    }
                    ok
                }
                c => ni < n.len() && n[ni] == c && go(p, n, pi + 1, ni + 1, d, memo),
            }
        };
        memo[pi][ni] = Some(r);
        r
    }
    go(&p, &n, 0, 0, delimiter, &mut memo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cyrus() -> Namespace {
        Namespace {
            prefix: "INBOX.".into(),
            delimiter: Some('.'),
        }
    }

    fn tree(ns: &Namespace) -> Tree {
        Tree::from_get(
            &json!({"state": "1", "list": [
                {"id": "i", "name": "Inbox", "parentId": null, "role": "inbox"},
                {"id": "a", "name": "_Autocrypt_SMA", "parentId": null},
                {"id": "b", "name": "child", "parentId": "a"},
                {"id": "c", "name": "UnderInbox", "parentId": "i"},
                {"id": "d", "name": "dot.name", "parentId": null, "role": "trash"},
                {"id": "x", "name": "loop", "parentId": "y"},
                {"id": "y", "name": "loop2", "parentId": "x"},
            ]}),
            ns,
        )
        .unwrap()
    }

    #[test]
    fn names_as_cyrus_shows_them() {
        let ns = cyrus();
        let t = tree(&ns);
        assert_eq!(t.full["i"], "INBOX");
        assert_eq!(t.full["a"], "INBOX._Autocrypt_SMA");
        assert_eq!(t.full["b"], "INBOX._Autocrypt_SMA.child");
        assert_eq!(t.full["c"], "INBOX.INBOX.UnderInbox");
        assert_eq!(t.full["d"], "INBOX.dot^name");
        assert!(!t.full.contains_key("x"), "a cycle has no name");
        assert_eq!(t.id_of("inbox"), Some("i"));
        let f = t.folders(&ns);
        let a = f.iter().find(|f| f.name == "INBOX._Autocrypt_SMA").unwrap();
        assert!(a.has_attribute("\\HasChildren"));
        let d = f.iter().find(|f| f.name == "INBOX.dot^name").unwrap();
        assert_eq!(d.special_use(), Some("\\Trash"));
    }

    #[test]
    fn names_without_prefix() {
        let ns = Namespace {
            prefix: String::new(),
            delimiter: Some('/'),
        };
        let t = tree(&ns);
        assert_eq!(t.full["a"], "_Autocrypt_SMA");
        assert_eq!(t.full["b"], "_Autocrypt_SMA/child");
        assert_eq!(t.full["c"], "INBOX/UnderInbox");
    }

    #[test]
    fn create_plans() {
        let ns = cyrus();
        let t = tree(&ns);
        assert_eq!(
            t.plan_create("INBOX._Autocrypt_SMA_1", &ns),
            Some((None, vec!["_Autocrypt_SMA_1".into()]))
        );
        assert_eq!(
            t.plan_create("INBOX._Autocrypt_SMA.x.y", &ns),
            Some((Some("a".into()), vec!["x".into(), "y".into()]))
        );
        assert_eq!(
            t.plan_create("INBOX.a^b", &ns),
            Some((None, vec!["a.b".into()]))
        );
        assert_eq!(t.plan_create("Elsewhere", &ns), None);
        assert_eq!(t.plan_create("INBOX.", &ns), None);
        assert_eq!(t.plan_create("INBOX.a..b", &ns), None);
    }

    #[test]
    fn list_patterns() {
        let d = Some('.');
        assert!(list_match("*", "INBOX.a.b", d));
        assert!(list_match("INBOX.%", "INBOX.a", d));
        assert!(!list_match("INBOX.%", "INBOX.a.b", d));
        assert!(list_match(
            "INBOX._Autocrypt_SMA*",
            "INBOX._Autocrypt_SMA_12",
            d
        ));
        assert!(!list_match("INBOX._Autocrypt_SMA*", "INBOX.Other", d));
        assert!(list_match("inbox", "INBOX", d));
        assert!(list_match("", "", d));
        assert!(!list_match("", "INBOX", d));
    }
}
