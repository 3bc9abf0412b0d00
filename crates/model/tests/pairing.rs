//! The pairing model, checked exhaustively up to its bound.

use sma_model::pairing::{describe, Pairing};
use sma_model::report::{check, env_usize, threads, trace};

#[test]
fn pairing_properties_hold_up_to_the_bound() {
    let budget = env_usize("MODEL_PAIRING_BUDGET").unwrap_or(3) as u8;
    let steps = env_usize("MODEL_PAIRING_STEPS").unwrap_or(10);
    let out = check(Pairing::new(budget), steps, threads());
    println!("{}", out.summary("pairing"));
    for (name, path) in &out.discoveries {
        println!("{name}:\n{}", trace(path, describe));
    }
    assert!(out.violated().is_empty(), "{:?}", out.violated());
    assert!(out.never_seen().is_empty(), "{:?}", out.never_seen());
}
