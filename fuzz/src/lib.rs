//! Fuzz target bodies: every parser of sma that sees bytes from the IMAP
//! server (or from a file a user was handed), fed hostile input.
//!
//! Each function must return normally for every input: a panic, an abort, a
//! hang or unbounded memory is a bug. Where a parser accepts an input, the
//! target also checks that sma's own output for the parsed value parses
//! again (the writer and the reader agree).
//!
//! The same functions are used by the libFuzzer binaries in `fuzz_targets/`
//! and by `crates/sim/tests/fuzz_corpus.rs`, which replays the seed corpora
//! in `corpus/` on every `cargo test` (this file is included there with
//! `#[path]`, so it only uses `sma-proto`, `sma-crypto` and `rand_chacha`).

#![forbid(unsafe_code)]

use std::sync::OnceLock;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sma_crypto::setup_message;
use sma_crypto::{AccountKey, DeviceKey, PairingCode, SetupCode};
use sma_proto::autocrypt::{message::read_message, AutocryptHeader};
use sma_proto::core::CoreState;
use sma_proto::device::{build_announcement, verify_announcement, Identity};
use sma_proto::engine::inbox::{Deferral, MessageMemory, Triage};
use sma_proto::envelope::{peek_date, peek_marker, Body, Envelope, Kind, Marker, Recipient};
use sma_proto::folders::Layout;
use sma_proto::hlc::Hlc;
use sma_proto::ids::MessageId;
use sma_proto::payload::{
    self, AnnouncedState, Announcement, AppBody, OpsBody, PairAbort, PairConfirm, PairHello,
    PairReply, PairWelcome, SealedContent, SealedPayload, Welcome,
};
use sma_proto::state::{Change, GroupState, MemberRecord, MemberStatus, PeerState};
use sma_proto::{DeviceId, Engine, Timestamp};

/// The account of the fixture devices.
pub const ACCOUNT: &str = "fuzz@sma.test";
/// Creation time of the fixture keys.
const CREATED: u64 = 1_767_225_600;

/// Deterministic keys and state the targets decrypt and verify with.
pub struct Fixture {
    /// The receiving member's identity (its key as stored).
    pub receiver_id: DeviceId,
    receiver_key: Vec<u8>,
    /// The receiving member's state: it lists both devices as active.
    pub receiver_core: CoreState,
    /// The sending member.
    pub sender: Identity,
    /// An account key exported as a Setup Message.
    pub setup_message: String,
    /// That message's setup code.
    pub setup_code: SetupCode,
}

fn identity(seed: u64, id: &str) -> Identity {
    let id = DeviceId::parse(id).expect("fixture id");
    let key = DeviceKey::generate(&mut ChaCha20Rng::seed_from_u64(seed), id.as_str(), CREATED)
        .expect("fixture key");
    Identity {
        id,
        account: ACCOUNT.into(),
        key,
    }
}

fn record(who: &Identity) -> MemberRecord {
    MemberRecord {
        id: who.id.clone(),
        fingerprint: who.fingerprint(),
        cert: who.cert().to_armored(),
        name: who.id.to_string(),
        name_stamp: Hlc {
            ms: CREATED * 1000,
            counter: 0,
            device: who.id.clone(),
        },
        status: MemberStatus::Active,
        heartbeat: CREATED,
        final_seq: None,
        left_seq: 0,
    }
}

/// The fixture (generated once per process; key generation is
/// deterministic, so the seed corpus stays decryptable).
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let receiver = identity(1, "00000000000000a1");
        let sender = identity(2, "00000000000000b2");
        let receiver_id = receiver.id.clone();
        let receiver_key = receiver.key.to_bytes();
        let (r, s) = (record(&receiver), record(&sender));
        let mut engine = Engine::new(receiver, CoreState::default()).expect("engine");
        let at = Timestamp::from_secs(CREATED);
        engine.commit(Change::Member(r), at).expect("record");
        engine.commit(Change::Member(s), at).expect("record");
        let core = engine.core().clone();
        let account = AccountKey::generate(&mut ChaCha20Rng::seed_from_u64(3), ACCOUNT, CREATED)
            .expect("fixture account key");
        let (setup_message, setup_code) = setup_message::export(
            &mut ChaCha20Rng::seed_from_u64(4),
            &account,
            ACCOUNT,
            "Thu, 1 Jan 2026 00:00:00 +0000",
        )
        .expect("fixture setup message");
        Fixture {
            receiver_id,
            receiver_key: receiver_key.to_vec(),
            receiver_core: core,
            sender,
            setup_message,
            setup_code,
        }
    })
}

/// `Envelope::parse`, `peek_marker` and `peek_date` on arbitrary bytes; what
/// parses must survive a write and a second parse unchanged in its routing.
pub fn envelope(data: &[u8]) {
    let _ = peek_marker(data);
    let _ = peek_date(data);
    if let Ok(env) = Envelope::parse(data) {
        let again = Envelope::parse(&env.to_bytes())
            .unwrap_or_else(|e| panic!("sma's own envelope does not parse: {e}"));
        assert_eq!(
            again.marker, env.marker,
            "the marker changed in a round trip"
        );
    }
}

/// Round trip of a JSON payload type: what parses, written again, parses.
fn json<T: serde::Serialize + for<'de> serde::Deserialize<'de>>(data: &[u8]) -> Option<T> {
    let value: T = payload::from_json(data).ok()?;
    let again: Result<T, _> = payload::from_json(&payload::to_json(&value));
    assert!(again.is_ok(), "sma's own payload JSON does not parse");
    Some(value)
}

/// Every JSON payload kind; the first byte chooses the kind, the rest is
/// the JSON. Parsed group data is also merged (merges must not panic).
pub fn payloads(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 12 {
        0 => {
            if let Some(a) = json::<Announcement>(rest) {
                let _ = a.validate();
            }
        }
        1 => drop(json::<PairHello>(rest)),
        2 => drop(json::<PairReply>(rest)),
        3 => drop(json::<PairConfirm>(rest)),
        4 => drop(json::<PairWelcome>(rest)),
        5 => drop(json::<PairAbort>(rest)),
        6 => {
            if let Some(w) = json::<Welcome>(rest) {
                let mut g = GroupState::default();
                g.merge(&w.state);
                g.merge(&w.state);
            }
        }
        7 => {
            if let Some(p) = json::<SealedPayload>(rest) {
                if let SealedContent::Ops(body) = p.content {
                    apply_ops(&body);
                }
            }
        }
        8 => {
            if let Some(body) = json::<OpsBody>(rest) {
                apply_ops(&body);
            }
        }
        9 => {
            if let Some(g) = json::<GroupState>(rest) {
                let _ = g.check();
                let mut mine = fixture().receiver_core.group().clone();
                mine.merge(&g);
                let _ = mine.current_account_key();
            }
        }
        10 => drop(json::<AppBody>(rest)),
        _ => {
            if let Some(p) = json::<PeerState>(rest) {
                let mut g = GroupState::default();
                g.apply(&Change::Peer(p.clone()));
                g.apply(&Change::Peer(p));
            }
        }
    }
}

/// The fixture receiver as a fresh engine.
pub fn receiver() -> Engine {
    let f = fixture();
    let me = Identity {
        id: f.receiver_id.clone(),
        account: ACCOUNT.into(),
        key: DeviceKey::from_bytes(&f.receiver_key).expect("fixture key"),
    };
    Engine::new(me, f.receiver_core.clone()).expect("fixture engine")
}

/// The fixture sender as an engine that knows both devices.
fn sender() -> Engine {
    let f = fixture();
    let mut e = Engine::new(identity(2, "00000000000000b2"), CoreState::default()).expect("engine");
    for rec in f.receiver_core.group().members().values() {
        e.commit(Change::Member(rec.clone()), Timestamp::from_secs(CREATED))
            .expect("record");
    }
    e
}

/// A store that remembers nothing.
struct Forgetful;

impl MessageMemory for Forgetful {
    type Error = std::convert::Infallible;
    fn was_processed(&self, _: &MessageId) -> Result<bool, Self::Error> {
        Ok(false)
    }
    fn deferred(&self, _: &MessageId) -> Result<Option<Deferral>, Self::Error> {
        Ok(None)
    }
}

/// One message through the receiver's inbox pass, as a member's round
/// handles it: header triage, then the whole message.
pub fn inbox_message(raw: &[u8]) {
    let mut engine = receiver();
    let mut pass = engine.inbox_pass(Timestamp::from_secs(CREATED + 60));
    let header_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 4);
    let size = u32::try_from(raw.len()).unwrap_or(u32::MAX);
    if let Ok(Triage::Fetch) = pass.triage(1, size, &raw[..header_end], &Forgetful) {
        pass.accept(1, Some(raw));
    }
    let _ = pass.finish();
}

/// Receiving ops from the fixture sender the way a member does: the body
/// is sealed by the sender and goes through the receiver's inbox pass.
fn apply_ops(body: &OpsBody) {
    let mut sender = sender();
    let to = fixture().receiver_id.clone();
    let Ok(sealed) = sender.seal(
        &mut ChaCha20Rng::seed_from_u64(5),
        Timestamp::from_secs(CREATED),
        (Kind::Sync, Recipient::Device(to.clone())),
        &[to],
        SealedContent::Ops(body.clone()),
    ) else {
        return;
    };
    inbox_message(&sealed.bytes);
}

/// Announcement verification. First byte 0: the rest is a whole message
/// (parse, then verify). Otherwise the rest is the announcement JSON,
/// validly signed by the fixture sender, so the fuzzer reaches the checks
/// behind the signature.
pub fn announcement(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(env) = Envelope::parse(rest) {
            let _ = verify_announcement(&env);
        }
        return;
    }
    let f = fixture();
    let Ok(signature) =
        sma_crypto::sign_detached(&f.sender.key, rest, sma_crypto::SigContext::Announcement)
    else {
        return;
    };
    let env = Envelope {
        account: ACCOUNT.into(),
        date: CREATED,
        marker: Marker {
            kind: Kind::Announce,
            from: f.sender.id.clone(),
            to: Recipient::All,
            id: MessageId::parse(&"ab".repeat(16)).expect("fixture id"),
        },
        body: Body::Signed {
            payload: rest.to_vec(),
            signature,
        },
    };
    let _ = verify_announcement(&env);
    if let Ok(reparsed) = Envelope::parse(&env.to_bytes()) {
        let _ = verify_announcement(&reparsed);
    }
}

/// Autocrypt Setup Message import with the fixture's code, and the code
/// parsers.
pub fn setup_message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let f = fixture();
    let _ = setup_message::import(&text, &f.setup_code);
    let _ = setup_message::import_with_details(&text, &f.setup_code);
    let _ = SetupCode::parse(&text);
    let _ = PairingCode::parse(&text);
}

/// Decryption and verification of sealed messages with the fixture keys.
/// First byte 0: armored text for `sma_crypto::open`; 1: binary for
/// `open_bytes`; otherwise a whole message for the receiver's inbox pass
/// (opened, and its ops or application content processed).
pub fn sealed(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let from = f.sender.cert();
    let ctx = sma_crypto::SigContext::Sealed;
    match mode % 3 {
        0 => {
            let key = DeviceKey::from_bytes(&f.receiver_key).expect("fixture key");
            drop(sma_crypto::open(
                &key,
                &from,
                &String::from_utf8_lossy(rest),
                1 << 20,
                ctx,
            ))
        }
        1 => {
            let key = DeviceKey::from_bytes(&f.receiver_key).expect("fixture key");
            drop(sma_crypto::open_bytes(&key, &from, rest, 1 << 20, ctx))
        }
        _ => inbox_message(rest),
    }
}

/// The Autocrypt header parser (as `Autocrypt` and `Autocrypt-Gossip`) and
/// the reader of received mail; parsed headers must survive a round trip.
pub fn autocrypt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for name in ["Autocrypt", "Autocrypt-Gossip"] {
        if let Ok(h) = AutocryptHeader::parse(name, &text) {
            let again = AutocryptHeader::parse(name, &h.to_value());
            assert!(again.is_ok(), "sma's own Autocrypt header does not parse");
        }
    }
    if let Ok(msg) = read_message(data) {
        let _ = msg.observation(CREATED, |_| true);
        let _ = msg.observation(CREATED, |_| false);
    }
}

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every target by name.
pub const TARGETS: [(&str, Target); 6] = [
    ("envelope", envelope),
    ("payloads", payloads),
    ("announcement", announcement),
    ("setup_message", setup_message),
    ("sealed", sealed),
    ("autocrypt", autocrypt),
];

/// The seed corpus: valid inputs for every target, made with the fixture
/// keys, as `(target, file name, bytes)`. Written to `corpus/` by
/// `crates/sim/tests/fuzz_corpus.rs` (`write_seed_corpus`, ignored).
pub fn seed_corpus() -> Vec<(&'static str, String, Vec<u8>)> {
    let f = fixture();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let to_receiver = Recipient::Device(f.receiver_id.clone());
    let mut sender = sender();
    let receiver_id = [f.receiver_id.clone()];
    let mut peer = PeerState::new("alice@example.org");
    peer.last_seen = CREATED;
    peer.autocrypt_timestamp = CREATED;
    peer.public_key = Some("bWFkZSB1cA==".into());
    let at = Timestamp::from_secs(CREATED);
    sender
        .commit(Change::Peer(peer.clone()), at)
        .expect("commit");
    let outgoing = sender
        .outgoing_syncs(&mut rng, at, 86_400)
        .expect("seal sync");
    let sync = outgoing
        .into_iter()
        .find(|o| o.peer == f.receiver_id)
        .expect("a sync to the receiver")
        .bytes;
    let ops = OpsBody {
        ops: sender
            .core()
            .book()
            .log()
            .values()
            .map(|e| e.op.clone())
            .collect(),
        acks: Default::default(),
        alive: Default::default(),
    };
    let app = sender
        .seal(
            &mut rng,
            at,
            (Kind::App, to_receiver),
            &receiver_id,
            SealedContent::App(AppBody {
                app_kind: "text".into(),
                body: b"hello".to_vec(),
            }),
        )
        .expect("seal app")
        .bytes;
    let ann = build_announcement(
        &mut rng,
        &f.sender,
        "fuzz",
        CREATED,
        CREATED,
        AnnouncedState::Member,
        Layout::Flat,
        true,
    )
    .expect("announcement");
    let recv_cert = DeviceKey::from_bytes(&f.receiver_key)
        .expect("fixture key")
        .certificate();
    let ctx = sma_crypto::SigContext::Sealed;
    let armored =
        sma_crypto::seal(&mut rng, &f.sender.key, &[&recv_cert], b"{}", ctx).expect("seal");
    let binary =
        sma_crypto::seal_bytes(&mut rng, &f.sender.key, &[&recv_cert], b"hi", ctx).expect("seal");
    let tagged = |t: u8, b: &[u8]| [&[t][..], b].concat();
    for (name, bytes) in [("sync", &sync), ("app", &app), ("announce", &ann)] {
        out.push(("envelope", name.into(), bytes.clone()));
    }
    out.push(("sealed", "armored".into(), tagged(0, armored.as_bytes())));
    out.push(("sealed", "binary".into(), tagged(1, &binary)));
    out.push(("sealed", "sync".into(), tagged(2, &sync)));
    out.push(("sealed", "app".into(), tagged(2, &app)));
    out.push(("announcement", "message".into(), tagged(0, &ann)));
    if let Ok(env) = Envelope::parse(&ann) {
        if let Body::Signed { payload, .. } = env.body {
            out.push(("announcement", "signed-json".into(), tagged(1, &payload)));
            out.push(("payloads", "announcement".into(), tagged(0, &payload)));
        }
    }
    out.push(("payloads", "ops".into(), tagged(8, &payload::to_json(&ops))));
    out.push((
        "payloads",
        "group".into(),
        tagged(9, &payload::to_json(f.receiver_core.group())),
    ));
    out.push((
        "payloads",
        "peer".into(),
        tagged(11, &payload::to_json(&peer)),
    ));
    out.push((
        "payloads",
        "abort".into(),
        tagged(
            5,
            br#"{"attempt":"00112233445566778899aabbccddeeff","reason":"code-rejected"}"#,
        ),
    ));
    out.push((
        "setup_message",
        "export".into(),
        f.setup_message.clone().into_bytes(),
    ));
    out.push((
        "autocrypt",
        "header".into(),
        format!(
            "addr=alice@example.org; prefer-encrypt=mutual; keydata={}",
            "bWFkZSB1cCBrZXlkYXRh"
        )
        .into_bytes(),
    ));
    out.push((
        "autocrypt",
        "message".into(),
        format!(
            "From: <alice@example.org>\r\nTo: <{ACCOUNT}>\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\nAutocrypt: addr=alice@example.org; keydata=bWFkZSB1cA==\r\nSubject: hi\r\n\r\nhello\r\n"
        )
        .into_bytes(),
    ));
    out
}
