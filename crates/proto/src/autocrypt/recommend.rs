//! The Autocrypt Level 1 encryption recommendation (§"Provide a
//! recommendation for message encryption").

use serde::Serialize;

use crate::state::{PeerState, PreferEncrypt};

/// A peer's Autocrypt key counts as stale (discourage) when its
/// `autocrypt_timestamp` is more than this older than `last_seen`: 35 days.
pub const STALE_AFTER_SECS: u64 = 35 * 86_400;

/// The `ui-recommendation`, ordered from least to most encouraging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Recommendation {
    /// Encryption is not possible.
    Disable,
    /// Possible, but the recipient may not be able to read it.
    Discourage,
    /// Possible; off by default.
    Available,
    /// Possible; on by default.
    Encrypt,
}

impl Recommendation {
    /// The wire/CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Recommendation::Disable => "disable",
            Recommendation::Discourage => "discourage",
            Recommendation::Available => "available",
            Recommendation::Encrypt => "encrypt",
        }
    }
}

/// Which stored key the recommendation would encrypt to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// The key from the peer's own Autocrypt header.
    Autocrypt,
    /// A gossiped key.
    Gossip,
}

/// The recommendation for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRecommendation {
    /// The `ui-recommendation`.
    pub recommendation: Recommendation,
    /// The target key (base64 keydata) and where it came from, unless disabled.
    pub target: Option<(String, KeySource)>,
}

/// The recommendation for one recipient whose state is `peer` (`None`: no
/// state at all). `own` is the account's `prefer_encrypt`; `reply_to_encrypted`
/// says whether the draft replies to an encrypted message; `usable` says
/// whether a base64 key can be encrypted to (not revoked, expired or broken).
pub fn recommend(
    peer: Option<&PeerState>,
    own: PreferEncrypt,
    reply_to_encrypted: bool,
    usable: impl Fn(&str) -> bool,
) -> PeerRecommendation {
    let disabled = PeerRecommendation {
        recommendation: Recommendation::Disable,
        target: None,
    };
    let Some(peer) = peer else {
        return disabled;
    };
    let public = peer.public_key.as_deref().filter(|k| usable(k));
    let gossip = peer.gossip_key.as_deref().filter(|k| usable(k));
    let (preliminary, target) = match (public, gossip) {
        (None, None) => return disabled,
        (None, Some(g)) => (Recommendation::Discourage, (g, KeySource::Gossip)),
        (Some(k), _) => {
            let stale = peer.last_seen.saturating_sub(peer.autocrypt_timestamp) > STALE_AFTER_SECS;
            let pre = if stale {
                Recommendation::Discourage
            } else {
                Recommendation::Available
            };
            (pre, (k, KeySource::Autocrypt))
        }
    };
    let encrypt = reply_to_encrypted
        || (preliminary == Recommendation::Available
            && peer.prefer_encrypt == PreferEncrypt::Mutual
            && own == PreferEncrypt::Mutual);
    PeerRecommendation {
        recommendation: if encrypt {
            Recommendation::Encrypt
        } else {
            preliminary
        },
        target: Some((target.0.to_owned(), target.1)),
    }
}

/// The message's recommendation from its recipients' ones: any `disable`
/// → disable; all `encrypt` → encrypt; any `discourage` → discourage;
/// otherwise available. No recipients at all gives `disable`.
pub fn aggregate(recs: impl IntoIterator<Item = Recommendation>) -> Recommendation {
    let recs: Vec<Recommendation> = recs.into_iter().collect();
    if recs.is_empty() || recs.contains(&Recommendation::Disable) {
        Recommendation::Disable
    } else if recs.iter().all(|r| *r == Recommendation::Encrypt) {
        Recommendation::Encrypt
    } else if recs.contains(&Recommendation::Discourage) {
        Recommendation::Discourage
    } else {
        Recommendation::Available
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Recommendation::*;

    fn peer(last_seen: u64, ts: u64, key: bool, gossip: bool, mutual: bool) -> PeerState {
        let mut p = PeerState::new("bob@example.org");
        p.last_seen = last_seen;
        p.autocrypt_timestamp = ts;
        p.public_key = key.then(|| "K".to_owned());
        p.gossip_key = gossip.then(|| "G".to_owned());
        p.prefer_encrypt = if mutual {
            PreferEncrypt::Mutual
        } else {
            PreferEncrypt::NoPreference
        };
        p
    }

    fn rec(p: Option<&PeerState>, own: PreferEncrypt, reply: bool) -> Recommendation {
        recommend(p, own, reply, |_| true).recommendation
    }

    #[test]
    fn single_recipient() {
        use PreferEncrypt::*;
        let day = 86_400;
        assert_eq!(rec(None, Mutual, true), Disable);
        assert_eq!(
            rec(Some(&peer(10, 0, false, false, true)), Mutual, true),
            Disable
        );
        // Gossip only: discourage, or encrypt when replying to encrypted mail.
        let g = peer(10, 0, false, true, true);
        assert_eq!(rec(Some(&g), Mutual, false), Discourage);
        assert_eq!(rec(Some(&g), Mutual, true), Encrypt);
        assert_eq!(
            recommend(Some(&g), Mutual, false, |_| true).target,
            Some(("G".into(), KeySource::Gossip))
        );
        // Fresh key: available, encrypt when both sides say mutual.
        let fresh = peer(100 * day, 100 * day - 35 * day, true, false, true);
        assert_eq!(rec(Some(&fresh), Mutual, false), Encrypt);
        assert_eq!(rec(Some(&fresh), NoPreference, false), Available);
        let theirs_no = peer(100 * day, 100 * day, true, false, false);
        assert_eq!(rec(Some(&theirs_no), Mutual, false), Available);
        // Stale key (more than 35 days older than last_seen): discourage.
        let stale = peer(100 * day, 100 * day - 35 * day - 1, true, false, true);
        assert_eq!(rec(Some(&stale), Mutual, false), Discourage);
        assert_eq!(rec(Some(&stale), Mutual, true), Encrypt);
        // Unusable keys count as absent.
        assert_eq!(
            recommend(Some(&fresh), Mutual, false, |_| false).recommendation,
            Disable
        );
        assert_eq!(
            recommend(Some(&peer(1, 1, true, true, true)), Mutual, false, |k| k
                == "G")
            .recommendation,
            Discourage
        );
    }

    #[test]
    fn aggregation() {
        assert_eq!(aggregate([Encrypt, Encrypt]), Encrypt);
        assert_eq!(aggregate([Encrypt, Disable, Discourage]), Disable);
        assert_eq!(aggregate([Encrypt, Available]), Available);
        assert_eq!(aggregate([Encrypt, Discourage, Available]), Discourage);
        assert_eq!(aggregate([]), Disable);
    }
}
