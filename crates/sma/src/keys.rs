//! The replicated Autocrypt keyring on a device: observing received mail,
//! importing keys, listing, recommending, and our own Autocrypt header.
//!
//! Every change is a local op (`Member::change`) saved at once; it reaches
//! the other members with the next sync round (`sma sync`, `sma watch`).

use base64::Engine as _;
use serde::Serialize;
use sma_crypto::{AccountKey, Certificate};
use sma_proto::autocrypt::header::{
    canonical_addr, plausible_addr, select_autocrypt, select_gossip,
};
use sma_proto::autocrypt::message::read_message;
use sma_proto::autocrypt::{
    self, effective_date, AutocryptHeader, KeySource, Observation, Recommendation,
};
use sma_proto::state::{Change, Lww, PeerState, PreferEncrypt};
use sma_proto::timefmt;

use crate::device::Device;
use crate::error::{Error, Result};

/// Whether `keydata` is a parseable OpenPGP certificate (header validity).
pub fn key_parses(keydata: &[u8]) -> bool {
    Certificate::from_bytes(keydata).is_ok()
}

fn certificate_b64(b64: &str) -> Option<Certificate> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .ok()?;
    Certificate::from_bytes(&bytes).ok()
}

/// Whether a stored base64 key can be encrypted to.
fn usable_b64(b64: &str) -> bool {
    certificate_b64(b64).is_some_and(|c| c.can_encrypt())
}

fn fingerprint_b64(b64: Option<&str>) -> Option<String> {
    b64.and_then(certificate_b64)
        .map(|c| c.fingerprint().to_string())
}

fn time(t: u64) -> Option<String> {
    (t > 0).then(|| timefmt::rfc3339(t))
}

/// One keyring entry as `keys list` / `keys show` print it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// The address.
    pub addr: String,
    /// Newest effective date of any message (RFC 3339), if any.
    pub last_seen: Option<String>,
    /// Effective date of the newest valid Autocrypt header (RFC 3339), if any.
    pub autocrypt_timestamp: Option<String>,
    /// `mutual` or `nopreference`.
    pub prefer_encrypt: &'static str,
    /// Fingerprint of the Autocrypt key (upper-case hex), if any.
    pub fingerprint: Option<String>,
    /// Effective date of the newest gossip (RFC 3339), if any.
    pub gossip_timestamp: Option<String>,
    /// Fingerprint of the gossiped key, if any.
    pub gossip_fingerprint: Option<String>,
}

impl PeerView {
    fn of(p: &PeerState) -> Self {
        PeerView {
            addr: p.addr.clone(),
            last_seen: time(p.last_seen),
            autocrypt_timestamp: time(p.autocrypt_timestamp),
            prefer_encrypt: p.prefer_encrypt.as_str(),
            fingerprint: fingerprint_b64(p.public_key.as_deref()),
            gossip_timestamp: time(p.gossip_timestamp),
            gossip_fingerprint: fingerprint_b64(p.gossip_key.as_deref()),
        }
    }
}

/// `keys show`: the entry plus its public key.
#[derive(Clone, Debug, Serialize)]
pub struct PeerDetail {
    /// The list fields.
    #[serde(flatten)]
    pub view: PeerView,
    /// The Autocrypt key, ASCII-armored, if any.
    pub public_key: Option<String>,
    /// The gossiped key, ASCII-armored, if any.
    pub gossip_key: Option<String>,
}

/// What an observation or import did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ObserveReport {
    /// Addresses whose state changed (replicated with the next sync).
    pub updated: Vec<String>,
    /// `valid`, `invalid` or `none`: the message's Autocrypt header.
    pub autocrypt: &'static str,
    /// How many gossip headers were valid and applied or already known.
    pub gossip: usize,
    /// Set when Level 1 says the message is ignored (e.g. `auto-replied`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<&'static str>,
}

/// One recipient of `keys recommend`.
#[derive(Clone, Debug, Serialize)]
pub struct RecipientRecommendation {
    /// The address.
    pub addr: String,
    /// Its recommendation.
    pub recommendation: Recommendation,
    /// Fingerprint of the key to encrypt to, if any.
    pub fingerprint: Option<String>,
    /// `autocrypt` or `gossip`: where that key came from.
    pub source: Option<KeySource>,
}

/// `keys recommend`: the message's recommendation and each recipient's.
#[derive(Clone, Debug, Serialize)]
pub struct RecommendReport {
    /// The aggregate recommendation.
    pub recommendation: Recommendation,
    /// Per recipient.
    pub recipients: Vec<RecipientRecommendation>,
}

/// Our outgoing `Autocrypt` header.
#[derive(Clone, Debug, Serialize)]
pub struct OwnHeader {
    /// The header value (unfolded).
    pub autocrypt: String,
    /// The account address.
    pub addr: String,
    /// Our prefer-encrypt setting.
    pub prefer_encrypt: &'static str,
    /// The account key fingerprint.
    pub fingerprint: String,
    #[serde(skip)]
    /// The parsed header (for folding).
    pub header: AutocryptHeader,
}

/// A new account key generation made from an imported key.
#[derive(Clone, Debug, Serialize)]
pub struct AccountKeyReport {
    /// The new generation.
    pub generation: u32,
    /// Its fingerprint.
    pub fingerprint: String,
    /// The prefer-encrypt setting now in force.
    pub prefer_encrypt: &'static str,
}

/// Parses an address argument (canonicalised), or a usage error.
pub fn parse_addr(addr: &str) -> Result<String> {
    let a = canonical_addr(addr);
    if plausible_addr(&a) {
        Ok(a)
    } else {
        Err(Error::Usage(format!(
            "{addr:?} is not an e-mail address: expected local@domain, e.g. bob@example.org"
        )))
    }
}

/// Parses an RFC 2822/5322 date argument, or a usage error.
pub fn parse_date(date: &str) -> Result<u64> {
    timefmt::parse_rfc5322(date).ok_or_else(|| {
        Error::Usage(format!(
            "{date:?} is not an RFC 2822 date: use e.g. \"Thu, 26 Nov 2026 14:11:58 +0000\""
        ))
    })
}

impl Device {
    /// Runs the Level 1 update for observations, as local ops; saves once.
    /// Returns the changed addresses.
    pub fn observe_all(
        &mut self,
        obs: impl IntoIterator<Item = Observation>,
    ) -> Result<Vec<String>> {
        self.require_member()?;
        let mut updated = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for o in obs {
            let now = self.timestamp();
            let stamp = self.engine.stamp(now);
            for delta in autocrypt::observe(self.engine.group().keyring(), &o, &stamp) {
                if seen.insert(delta.addr.clone()) {
                    updated.push(delta.addr.clone());
                }
                self.engine.commit(Change::Peer(delta), now)?;
            }
        }
        if !updated.is_empty() {
            self.save()?;
        }
        Ok(updated)
    }

    /// `keys observe --from --date [--autocrypt] [--gossip]...`: one received
    /// message given by its headers. Gossip is taken as vouched for by the
    /// caller (there are no recipient headers to check it against).
    pub fn observe_headers(
        &mut self,
        from: &str,
        date: &str,
        autocrypt: Option<&str>,
        gossip: &[String],
    ) -> Result<ObserveReport> {
        self.require_member()?;
        let from = parse_addr(from)?;
        let date = parse_date(date)?;
        let header = autocrypt.and_then(|v| select_autocrypt([v], &from, key_parses));
        let gossip = select_gossip(gossip.iter().map(String::as_str), None, key_parses);
        let report_header = match (autocrypt, &header) {
            (None, _) => "none",
            (Some(_), Some(_)) => "valid",
            (Some(_), None) => "invalid",
        };
        let n = gossip.len();
        let obs = Observation {
            from,
            effective_date: effective_date(Some(date), self.now()),
            autocrypt: header,
            gossip,
        };
        Ok(ObserveReport {
            updated: self.observe_all([obs])?,
            autocrypt: report_header,
            gossip: n,
            ignored: None,
        })
    }

    /// `keys observe --message`: a whole received RFC 5322 message.
    pub fn observe_message(&mut self, raw: &[u8]) -> Result<ObserveReport> {
        self.require_member()?;
        let msg = read_message(raw).map_err(|_| {
            Error::Usage("the input is not an RFC 5322 message; pass the whole received message (headers and body)".into())
        })?;
        if let Some(why) = msg.ignored {
            return Ok(ObserveReport {
                autocrypt: "none",
                ignored: Some(why.as_str()),
                ..ObserveReport::default()
            });
        }
        let Some(obs) = msg.observation(self.now(), key_parses) else {
            return Ok(ObserveReport::default());
        };
        let report_header = match (&obs.autocrypt, msg.autocrypt.is_empty()) {
            (Some(_), _) => "valid",
            (None, true) => "none",
            (None, false) => "invalid",
        };
        let n = obs.gossip.len();
        Ok(ObserveReport {
            updated: self.observe_all([obs])?,
            autocrypt: report_header,
            gossip: n,
            ignored: None,
        })
    }

    /// `keys import ADDR FILE`: a correspondent's key (armored, binary or
    /// base64 keydata), applied like an Autocrypt header dated `date`
    /// (default: now).
    pub fn import_peer_key(
        &mut self,
        addr: &str,
        key: &[u8],
        date: Option<&str>,
        prefer: PreferEncrypt,
    ) -> Result<ObserveReport> {
        self.require_member()?;
        let addr = parse_addr(addr)?;
        let date = date.map(parse_date).transpose()?;
        let cert = parse_key_file(key)?;
        if !cert.can_encrypt() {
            return Err(Error::Usage(format!(
                "key {} has no usable encryption subkey; import a key that can encrypt",
                cert.fingerprint()
            )));
        }
        let obs = Observation {
            from: addr.clone(),
            effective_date: effective_date(date, self.now()),
            autocrypt: Some(AutocryptHeader {
                addr,
                prefer_encrypt: prefer,
                keydata: cert.to_bytes(),
            }),
            gossip: vec![],
        };
        Ok(ObserveReport {
            updated: self.observe_all([obs])?,
            autocrypt: "valid",
            gossip: 0,
            ignored: None,
        })
    }

    /// Every keyring entry, by address.
    pub fn peers(&self) -> Result<Vec<PeerView>> {
        self.require_member()?;
        Ok(self
            .engine
            .group()
            .keyring()
            .values()
            .map(PeerView::of)
            .collect())
    }

    /// One keyring entry with its keys armored (`None` if unknown).
    pub fn peer(&self, addr: &str) -> Result<Option<PeerDetail>> {
        self.require_member()?;
        let addr = parse_addr(addr)?;
        Ok(self.engine.group().keyring().get(&addr).map(|p| {
            let armored = |k: Option<&str>| k.and_then(certificate_b64).map(|c| c.to_armored());
            PeerDetail {
                view: PeerView::of(p),
                public_key: armored(p.public_key.as_deref()),
                gossip_key: armored(p.gossip_key.as_deref()),
            }
        }))
    }

    /// The Level 1 recommendation for a message to `addrs`.
    pub fn recommend(&self, addrs: &[String], reply_to_encrypted: bool) -> Result<RecommendReport> {
        self.require_member()?;
        let own = self.engine.group().prefer_encrypt().value;
        let mut recipients = Vec::new();
        for a in addrs {
            let addr = parse_addr(a)?;
            let r = autocrypt::recommend(
                self.engine.group().keyring().get(&addr),
                own,
                reply_to_encrypted,
                usable_b64,
            );
            recipients.push(RecipientRecommendation {
                addr,
                recommendation: r.recommendation,
                fingerprint: r
                    .target
                    .as_ref()
                    .and_then(|(k, _)| fingerprint_b64(Some(k))),
                source: r.target.map(|(_, s)| s),
            });
        }
        Ok(RecommendReport {
            recommendation: autocrypt::aggregate(recipients.iter().map(|r| r.recommendation)),
            recipients,
        })
    }

    /// Our own prefer-encrypt setting.
    pub fn prefer_encrypt(&self) -> PreferEncrypt {
        self.engine.group().prefer_encrypt().value
    }

    /// Sets our prefer-encrypt setting (replicated, last writer wins).
    pub fn set_prefer_encrypt(&mut self, value: PreferEncrypt) -> Result<()> {
        self.require_member()?;
        let now = self.timestamp();
        let stamp = self.engine.stamp(now);
        self.engine.commit(
            Change::PreferEncrypt(Lww {
                value,
                stamp: Some(stamp),
            }),
            now,
        )?;
        self.save()
    }

    /// The `Autocrypt` header for outgoing mail from the account.
    pub fn own_autocrypt_header(&self) -> Result<OwnHeader> {
        let key = self
            .account_key()?
            .ok_or_else(|| Error::Local("this group has no account key".into()))?;
        let prefer = self.prefer_encrypt();
        let header = AutocryptHeader {
            addr: canonical_addr(&self.info.account),
            prefer_encrypt: prefer,
            keydata: key.public_bytes(),
        };
        Ok(OwnHeader {
            autocrypt: header.to_value(),
            addr: header.addr.clone(),
            prefer_encrypt: prefer.as_str(),
            fingerprint: key.fingerprint().to_string(),
            header,
        })
    }

    /// Makes `key` the next account key generation (replicated), and
    /// optionally sets our prefer-encrypt (from a Setup Message).
    pub fn install_account_key(
        &mut self,
        key: &AccountKey,
        prefer: Option<PreferEncrypt>,
    ) -> Result<AccountKeyReport> {
        self.require_member()?;
        let now = self.timestamp();
        let generation = self.engine.rotate_account_key(key, now)?;
        if let Some(value) = prefer {
            let stamp = self.engine.stamp(now);
            self.engine.commit(
                Change::PreferEncrypt(Lww {
                    value,
                    stamp: Some(stamp),
                }),
                now,
            )?;
        }
        self.save()?;
        Ok(AccountKeyReport {
            generation,
            fingerprint: key.fingerprint().to_string(),
            prefer_encrypt: self.prefer_encrypt().as_str(),
        })
    }
}

/// Parses a key file: ASCII-armored, binary, or base64 keydata.
fn parse_key_file(bytes: &[u8]) -> Result<Certificate> {
    let bad = |what: &str| {
        Error::Usage(format!(
            "the key file is not {what}; give an OpenPGP public key (ASCII-armored, binary, or base64 Autocrypt keydata)"
        ))
    };
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    if let Some(t) = text.filter(|t| t.starts_with("-----BEGIN PGP")) {
        return Certificate::from_armored(t).map_err(|_| bad("a readable armored public key"));
    }
    if let Ok(c) = Certificate::from_bytes(bytes) {
        return Ok(c);
    }
    let b64: String = text
        .ok_or_else(|| bad("a readable OpenPGP key"))?
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| bad("a readable OpenPGP key"))?;
    Certificate::from_bytes(&raw).map_err(|_| bad("a readable OpenPGP key"))
}
