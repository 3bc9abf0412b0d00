//! Smoke test of `sma-bench --only growth` at tiny sizes: every figure is
//! there and sane, counts grow with the group where they must, and the
//! charts are written as SVG. Never fails on a timing.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// A number at `field` of `v` (a dotted path), asserted finite and above 0.
fn positive(v: &Value, field: &str) -> f64 {
    let x = field
        .split('.')
        .fold(v, |v, k| &v[k])
        .as_f64()
        .unwrap_or_else(|| panic!("no number at {field} in {v}"));
    assert!(x.is_finite() && x > 0.0, "{field} = {x} in {v}");
    x
}

/// The group points' figures that are costs.
const COSTS: [&str; 7] = [
    "send_one",
    "broadcast",
    "idle_round",
    "change_round",
    "change_apply",
    "join",
    "join_settle",
];

fn check_groups(groups: &[Value]) {
    assert_eq!(groups.len(), 2, "{groups:?}");
    for (g, n) in groups.iter().zip([2, 3]) {
        assert_eq!(g["devices"].as_u64(), Some(n), "{g}");
        for cost in COSTS {
            positive(g, &format!("{cost}.wall_ms"));
            positive(g, &format!("{cost}.commands"));
        }
        // One message per recipient; one sync message to each other device.
        assert_eq!(g["send_one"]["messages"].as_u64(), Some(1), "{g}");
        assert_eq!(g["broadcast"]["messages"].as_u64(), Some(n - 1), "{g}");
        assert_eq!(g["change_round"]["messages"].as_u64(), Some(n - 1), "{g}");
        assert!(positive(g, "join.bytes") > positive(g, "send_one.bytes"));
        for fp in ["footprint_settled", "footprint_after_change"] {
            // At least every device's announcement.
            assert!(positive(g, &format!("{fp}.messages")) >= n as f64, "{g}");
            positive(g, &format!("{fp}.bytes"));
        }
    }
    let (small, large) = (&groups[0], &groups[1]);
    for cost in ["broadcast", "change_round", "change_apply"] {
        let field = format!("{cost}.commands");
        assert!(
            positive(large, &field) > positive(small, &field),
            "{field} does not grow with the group"
        );
    }
    assert!(
        positive(large, "footprint_settled.messages")
            > positive(small, "footprint_settled.messages")
    );
}

fn check_keyrings(keyrings: &[Value]) {
    assert_eq!(keyrings.len(), 2, "{keyrings:?}");
    for (k, n) in keyrings.iter().zip([100, 300]) {
        assert_eq!(k["entries"].as_u64(), Some(n), "{k}");
        assert_eq!(k["bootstrap"]["joiner_peers"].as_u64(), Some(n), "{k}");
        for f in ["total_secs", "bytes", "messages", "floor_secs"] {
            positive(k, &format!("bootstrap.{f}"));
        }
        for cost in ["idle_round", "change_round", "change_apply"] {
            positive(k, &format!("{cost}.wall_ms"));
            positive(k, &format!("{cost}.commands"));
        }
    }
    // The welcome carries the keyring: more entries, more bytes.
    assert!(positive(&keyrings[1], "bootstrap.bytes") > positive(&keyrings[0], "bootstrap.bytes"));
}

#[test]
fn growth_mode_reports_every_figure_and_draws_the_charts() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_sma-bench"));
    let charts = tempfile::tempdir().expect("a scratch directory");
    let out = Command::new(&bench)
        .args([
            "--json",
            "--only",
            "growth",
            "--growth-devices",
            "2,3",
            "--growth-keyring",
            "100,300",
            "--charts-dir",
        ])
        .arg(charts.path())
        .output()
        .expect("sma-bench runs");
    assert!(
        out.status.success(),
        "sma-bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let growth = &report["growth"];
    positive(growth, "key_bytes");
    check_groups(growth["groups"].as_array().expect("groups"));
    check_keyrings(growth["keyrings"].as_array().expect("keyrings"));
    for file in [
        "growth-devices-wall.svg",
        "growth-devices-commands.svg",
        "growth-devices-join.svg",
        "growth-devices-footprint.svg",
        "growth-keyring.svg",
    ] {
        let path = charts.path().join(file);
        let svg = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} not written: {e}", path.display()));
        assert!(svg.contains("<svg"), "{file} is not SVG");
        assert!(svg.contains("</svg>"), "{file} is cut short");
        assert!(svg.contains("<polyline"), "{file} has no curve");
        assert!(
            svg.contains("devices") || svg.contains("entries"),
            "{file}: no axis label"
        );
    }
}
