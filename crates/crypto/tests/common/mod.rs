//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::io::Read;

use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use sma_crypto::DeviceKey;

/// A deterministic RNG for tests.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A device key with a deterministic id derived from `n`.
pub fn device(n: u64) -> DeviceKey {
    DeviceKey::generate(&mut rng(1000 + n), &format!("{n:016x}"), 1_700_000_000 + n).unwrap()
}

/// Decodes an armored block to its binary content.
pub fn dearmor(armored: &str) -> Vec<u8> {
    let mut d = pgp::armor::Dearmor::new(armored.as_bytes());
    let mut out = Vec::new();
    d.read_to_end(&mut out).unwrap();
    out
}

/// Path of a file in tests/data.
pub fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}
