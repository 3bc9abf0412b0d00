//! Replays the fuzzing seed corpora (`fuzz/corpus/<target>/*`) and a few
//! mutations of each file through the fuzz target bodies, so every
//! `cargo test` exercises the parsers that see server bytes, without
//! cargo-fuzz. See docs/RELIABILITY.md for long fuzzing runs.
//!
//! `cargo test -p sma-sim --test fuzz_corpus -- --ignored write_seed_corpus`
//! regenerates the seed files from `sma_fuzz::seed_corpus`.

#[path = "../../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod targets;

use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

/// Cheap deterministic mutations: truncations, bit flips, byte insertions.
fn mutations(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let n = data.len();
    for cut in [0, 1, n / 3, n / 2, n.saturating_sub(1)] {
        out.push(data[..cut.min(n)].to_vec());
    }
    for (k, pos) in [n / 7, n / 5, n / 2, n * 2 / 3, n * 9 / 10]
        .into_iter()
        .enumerate()
    {
        if pos < n {
            let mut m = data.to_vec();
            m[pos] ^= 1 << (k % 8);
            out.push(m);
            let mut m = data.to_vec();
            m.insert(pos, b"\0\r\n;=\"<>\xff"[k % 9]);
            out.push(m);
        }
    }
    out.push(data.repeat(2));
    out
}

#[test]
fn seed_corpus_and_its_mutations_are_handled() {
    for (name, target) in targets::TARGETS {
        let dir = corpus_dir().join(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no seed corpus for {name} in {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "the seed corpus of {name} is empty");
        for f in files {
            let data = std::fs::read(&f).expect("corpus file");
            target(&data);
            for m in mutations(&data) {
                target(&m);
            }
        }
    }
}

#[test]
fn the_seed_corpus_in_the_repository_is_current() {
    // Seeds made with today's code must still reach deep: the sealed seeds
    // decrypt and the setup message opens with the fixture keys.
    let f = targets::fixture();
    let sm = std::fs::read_to_string(corpus_dir().join("setup_message/export")).expect("seed");
    assert!(sma_crypto::setup_message::import(&sm, &f.setup_code).is_ok());
    let armored = std::fs::read(corpus_dir().join("sealed/armored")).expect("seed");
    let text = String::from_utf8_lossy(&armored[1..]);
    let receiver = targets::receiver();
    let key = &receiver.identity().key;
    let ctx = sma_crypto::SigContext::Sealed;
    assert!(sma_crypto::open(key, &f.sender.cert(), &text, 1 << 20, ctx).is_ok());
    let sync = std::fs::read(corpus_dir().join("sealed/sync")).expect("seed");
    let env = sma_proto::envelope::Envelope::parse(&sync[1..]).expect("seed parses");
    assert!(
        targets::receiver().open(&env).is_ok(),
        "the sealed sync seed no longer opens"
    );
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand after changing the formats"]
fn write_seed_corpus() {
    for (target, name, bytes) in targets::seed_corpus() {
        let dir = corpus_dir().join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
}
