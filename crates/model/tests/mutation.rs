//! The checker catches a broken rule: with relaying turned off (PROTOCOL
//! 11.3; sma-proto's `model-mutations` feature), the provider can keep a
//! removal from a member for good by deleting everything the remover sends
//! it. That member still lists the removed device as active and holds the
//! old account key: for it, the removal never happened. The same bound with
//! the real rules finds nothing. The group starts as A, B, C and J, so that
//! a member outside the cut link can relay (delivery is fair).

use sma_model::membership::{describe, Action, Config, Membership, CONVERGED};
use sma_model::node::Rules;
use sma_model::report::{check, threads, trace};

/// The provider cuts a link, C is removed, fair delivery: three steps.
const STEPS: usize = 3;

fn config(rules: Rules) -> Config {
    Config {
        rules,
        budget: 1,
        max_ticks: 0,
        remove: true,
        leave: false,
        join: false,
        joined: true,
        guess: false,
    }
}

#[test]
fn without_relay_the_checker_finds_the_undo_removal_attack() {
    let out = check(Membership::new(config(Rules::NoRelay)), STEPS, threads());
    println!("{}", out.summary("membership, relay turned off"));
    let path = out
        .discoveries
        .get(CONVERGED)
        .expect("the checker finds a member that never learns of the removal");
    println!(
        "counterexample to \"{CONVERGED}\":\n{}",
        trace(path, describe)
    );
    assert!(out.violated().contains(&CONVERGED));
    let actions = path.clone().into_actions();
    assert!(
        actions.iter().any(|a| matches!(a, Action::Cut(..))),
        "the attack is the provider's: it deletes what the remover sends"
    );
}

#[test]
fn with_relay_the_same_bound_finds_nothing() {
    let out = check(Membership::new(config(Rules::Real)), STEPS, threads());
    println!("{}", out.summary("membership, real rules, mutation bound"));
    for (name, path) in &out.discoveries {
        println!("{name}:\n{}", trace(path, describe));
    }
    assert!(out.violated().is_empty(), "{:?}", out.violated());
}
