//! Smoke test of `sma-bench --only latency` with a few messages: every
//! delivery pattern (IDLE paced, IDLE back to back, immediate poll) is
//! measured for the product and the floor. Never fails on a timing.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn latency_part_reports_every_pattern() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_sma-bench"));
    let out = Command::new(&bench)
        .args(["--json", "--only", "latency", "--messages", "2"])
        .output()
        .expect("sma-bench runs");
    assert!(
        out.status.success(),
        "sma-bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert!(
        report["machine"]["server"]
            .as_str()
            .is_some_and(|s| s.starts_with("Dovecot")),
        "{}",
        report["machine"]
    );
    let latency = &report["latency"];
    for pattern in ["idle", "idle_back_to_back", "poll"] {
        for side in ["product", "floor"] {
            let p50 = latency[pattern][side]["p50_ms"].as_f64();
            assert!(
                p50.is_some_and(|v| v.is_finite() && v > 0.0),
                "{pattern}.{side}: {}",
                latency[pattern]
            );
        }
    }
}
