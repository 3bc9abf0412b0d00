//! The membership model, checked exhaustively up to its bound.

use sma_model::membership::{describe, Config, Membership};
use sma_model::report::{check, env_usize, threads, trace};

#[test]
fn membership_properties_hold_up_to_the_bound() {
    let steps = env_usize("MODEL_STEPS").unwrap_or(4);
    let started = std::time::Instant::now();
    let model = Membership::new(Config::default());
    println!("setup: {:.1} s", started.elapsed().as_secs_f64());
    let out = check(model, steps, threads());
    println!("{}", out.summary("membership"));
    for (name, path) in &out.discoveries {
        println!("{name}:\n{}", trace(path, describe));
    }
    assert!(out.violated().is_empty(), "{:?}", out.violated());
    assert!(out.never_seen().is_empty(), "{:?}", out.never_seen());
}
