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
use sma_proto::device::{build_announcement, verify_announcement, CoreState, Identity, Member};
use sma_proto::envelope::{peek_date, peek_marker, Body, Envelope, Kind, Marker, Recipient};
use sma_proto::folders::Layout;
use sma_proto::hlc::Hlc;
use sma_proto::ids::MessageId;
use sma_proto::payload::{
    self, AnnouncedState, Announcement, AppBody, OpsBody, PairAbort, PairConfirm, PairHello,
    PairReply, PairWelcome, SealedContent, SealedPayload, Welcome,
};
use sma_proto::state::{Change, GroupState, MemberRecord, MemberStatus, PeerState};
use sma_proto::sync::SyncBook;
use sma_proto::DeviceId;

/// The account of the fixture devices.
pub const ACCOUNT: &str = "fuzz@sma.test";
/// Creation time of the fixture keys.
const CREATED: u64 = 1_767_225_600;

/// Deterministic keys and state the targets decrypt and verify with.
pub struct Fixture {
    /// The receiving member (its state lists both devices as active).
    pub receiver: Member,
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
    }
}

/// The fixture (generated once per process; key generation is
/// deterministic, so the seed corpus stays decryptable).
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let receiver = identity(1, "00000000000000a1");
        let sender = identity(2, "00000000000000b2");
        let mut core = CoreState::default();
        core.group.apply(&Change::Member(record(&receiver)));
        core.group.apply(&Change::Member(record(&sender)));
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
            receiver: Member { me: receiver, core },
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
                    apply_ops(&p.from, &body);
                }
            }
        }
        8 => {
            if let Some(body) = json::<OpsBody>(rest) {
                let from = fixture().sender.id.clone();
                apply_ops(&from, &body);
            }
        }
        9 => {
            if let Some(g) = json::<GroupState>(rest) {
                let mut mine = fixture().receiver.core.group.clone();
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

/// Receiving ops from `from` the way a member does.
fn apply_ops(from: &DeviceId, body: &OpsBody) {
    let mut core = fixture().receiver.core.clone();
    let me = fixture().receiver.me.id.clone();
    let _ = core.book.receive(&me, from, body);
    for op in body.ops.iter().filter(|o| &o.origin == from) {
        core.clock.observe(&op.stamp);
        core.group.apply(&op.change);
    }
    let peers = core.group.active_members().map(|m| m.id.clone()).collect();
    core.book.prune(&peers, u64::MAX);
    let mut book = SyncBook::default();
    let _ = book.receive(&me, from, body);
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
    let Ok(signature) = sma_crypto::sign_detached(&f.sender.key, rest) else {
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
/// `open_bytes`; otherwise a whole message for `Member::open`, whose ops or
/// application content is then processed.
pub fn sealed(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let me = &f.receiver.me.key;
    let from = f.sender.cert();
    match mode % 3 {
        0 => drop(sma_crypto::open(
            me,
            &from,
            &String::from_utf8_lossy(rest),
            1 << 20,
        )),
        1 => drop(sma_crypto::open_bytes(me, &from, rest, 1 << 20)),
        _ => {
            let Ok(env) = Envelope::parse(rest) else {
                return;
            };
            let Ok(opened) = f.receiver.open(&env) else {
                return;
            };
            if let SealedContent::Ops(body) = &opened.payload.content {
                apply_ops(&opened.marker.from, body);
            }
        }
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
    let to_receiver = Recipient::Device(f.receiver.me.id.clone());
    let sender = Member {
        me: identity(2, "00000000000000b2"),
        core: f.receiver.core.clone(),
    };
    let receiver_id = [f.receiver.me.id.clone()];
    let mut book = SyncBook::default();
    let mut peer = PeerState::new("alice@example.org");
    peer.last_seen = CREATED;
    peer.autocrypt_timestamp = CREATED;
    peer.public_key = Some("bWFkZSB1cA==".into());
    let op = book.push(
        &f.sender.id,
        Hlc {
            ms: CREATED * 1000,
            counter: 1,
            device: f.sender.id.clone(),
        },
        Change::Peer(peer.clone()),
    );
    let ops = book.body_for(&f.receiver.me.id);
    let (_, sync) = sender
        .seal(
            &mut rng,
            CREATED,
            Kind::Sync,
            to_receiver.clone(),
            &receiver_id,
            SealedContent::Ops(ops.clone()),
        )
        .expect("seal sync");
    let (_, app) = sender
        .seal(
            &mut rng,
            CREATED,
            Kind::App,
            to_receiver,
            &receiver_id,
            SealedContent::App(AppBody {
                app_kind: "text".into(),
                body: b"hello".to_vec(),
            }),
        )
        .expect("seal app");
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
    let recv_cert = f.receiver.me.cert();
    let armored = sma_crypto::seal(&mut rng, &f.sender.key, &[&recv_cert], b"{}").expect("seal");
    let binary =
        sma_crypto::seal_bytes(&mut rng, &f.sender.key, &[&recv_cert], b"hi").expect("seal");
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
        tagged(9, &payload::to_json(&f.receiver.core.group)),
    ));
    out.push((
        "payloads",
        "peer".into(),
        tagged(11, &payload::to_json(&peer)),
    ));
    let _ = op;
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
