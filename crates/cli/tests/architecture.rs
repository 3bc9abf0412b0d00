//! The dependency rules of docs/ARCHITECTURE.md, checked against `cargo
//! metadata`: libraries depend downwards only, the protocol core on no I/O
//! crate, the binary never on the store.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Per workspace crate, the workspace crates and forbidden external crates.
fn rules() -> BTreeMap<&'static str, (Vec<&'static str>, Vec<&'static str>)> {
    let io = vec!["tokio", "rusqlite", "async-imap", "rustls", "tokio-rustls"];
    BTreeMap::from([
        ("sma-crypto", (vec![], io.clone())),
        ("sma-proto", (vec!["sma-crypto"], io.clone())),
        ("sma-imap", (vec![], vec!["rusqlite"])),
        (
            "sma-jmap",
            (vec!["sma-imap"], vec!["rusqlite", "async-imap"]),
        ),
        (
            "sma-store",
            (vec!["sma-proto"], vec!["tokio", "async-imap"]),
        ),
        (
            "sma",
            (
                // sma-jmap: a device made with `init --jmap` connects
                // through it (`sma::Session`, either transport).
                vec![
                    "sma-proto",
                    "sma-crypto",
                    "sma-imap",
                    "sma-jmap",
                    "sma-store",
                ],
                vec![],
            ),
        ),
        (
            "sma-cli",
            (vec!["sma", "sma-imap", "sma-proto", "sma-crypto"], vec![]),
        ),
        ("sma-testrig", (vec![], vec![])),
        ("sma-model", (vec!["sma-proto", "sma-crypto"], io)),
    ])
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata JSON")
}

#[test]
fn crates_depend_only_on_what_the_architecture_allows() {
    let meta = metadata();
    let rules = rules();
    let packages = meta["packages"].as_array().expect("packages");
    let ours: BTreeSet<&str> = packages
        .iter()
        .filter_map(|p| p["name"].as_str())
        .filter(|n| n.starts_with("sma"))
        .collect();
    let mut checked = 0;
    for p in packages {
        let name = p["name"].as_str().expect("name");
        let Some((allowed, forbidden)) = rules.get(name) else {
            continue;
        };
        checked += 1;
        for dep in p["dependencies"].as_array().expect("deps") {
            if dep["kind"].as_str().is_some_and(|k| k == "dev") {
                continue;
            }
            let d = dep["name"].as_str().expect("dep name");
            if ours.contains(d) {
                assert!(
                    allowed.contains(&d),
                    "{name} depends on {d}, which docs/ARCHITECTURE.md does not allow"
                );
            }
            assert!(
                !forbidden.contains(&d),
                "{name} depends on the I/O crate {d}"
            );
        }
    }
    assert_eq!(
        checked,
        rules.len(),
        "every ruled crate was found: {ours:?}"
    );
}

/// The deliberately broken rules of `sma-proto` (feature `model-mutations`)
/// are enabled by the model checker only.
#[test]
fn only_the_model_checker_enables_protocol_mutations() {
    let meta = metadata();
    for p in meta["packages"].as_array().expect("packages") {
        let name = p["name"].as_str().expect("name");
        for dep in p["dependencies"].as_array().expect("deps") {
            let mutates = dep["features"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == "model-mutations"));
            assert!(
                !mutates || name == "sma-model",
                "{name} enables sma-proto's model-mutations"
            );
        }
    }
}
