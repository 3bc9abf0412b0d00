//! Smoke test of `sma-bench --only wan` with a tiny delay: every figure is
//! there. Never fails on a timing.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn wan_mode_reports_every_command() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_sma-bench"));
    let sma = bench.with_file_name("sma");
    // `cargo test --workspace` (scripts/test) builds it; alone, build it
    // first: a missing binary fails the test rather than skipping it.
    assert!(
        sma.is_file(),
        "no sma binary at {}: run `cargo build -p sma-cli` first (or `cargo test --workspace`)",
        sma.display()
    );
    let out = Command::new(&bench)
        .args([
            "--json",
            "--only",
            "wan",
            "--wan-rtt-ms",
            "2",
            "--wan-runs",
            "1",
        ])
        .output()
        .expect("sma-bench runs");
    assert!(
        out.status.success(),
        "sma-bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let rows = report["wan"]["rows"].as_array().expect("wan rows");
    assert_eq!(rows.len(), 10, "{rows:?}");
    for r in rows {
        for field in [
            "wall_ms",
            "round_trips",
            "loopback_ms",
            "floor_ms",
            "floor_round_trips",
        ] {
            let v = r[field].as_f64();
            assert!(
                v.is_some_and(|v| v.is_finite() && v > 0.0),
                "{field} in {r}"
            );
        }
        assert!(r["command"].as_str().is_some(), "{r}");
    }
}
