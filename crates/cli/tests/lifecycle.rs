//! Acceptance: forced removal with account-key rotation, expiry by `gc` and
//! by `sync`, and `leave`, on a real Dovecot through the real `sma` binary.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{one, stderr_json, Account};
use serde_json::Value;

const ANNOUNCE: &str = "_Autocrypt_SMA";

/// Runs a command that must fail because the device was removed (exit 4).
fn assert_removed(acc: &Account, dev: &str, args: &[&str]) {
    let out = acc.run(dev, args);
    assert_eq!(
        out.status.code(),
        Some(4),
        "sma {args:?} on removed device {dev}: stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let err = stderr_json(&out);
    assert_eq!(err["kind"], "removed", "{err}");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("was removed from the group") && e.contains("sma init")),
        "unclear message: {err}"
    );
}

fn removed_ids(v: &[Value]) -> Vec<String> {
    assert_eq!(v.len(), 1, "one JSON line: {v:?}");
    let mut ids: Vec<String> = v[0]["removed"]
        .as_array()
        .unwrap_or_else(|| panic!("no removed array: {v:?}"))
        .iter()
        .map(|x| x.as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

fn fingerprint(acc: &Account, dev: &str) -> String {
    acc.ok(dev, &["account-key", "show"])[0]["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned()
}

fn state_of(acc: &Account, dev: &str, id: &str) -> String {
    acc.ok(dev, &["devices"])
        .iter()
        .find(|d| d["device_id"] == id)
        .unwrap_or_else(|| panic!("{dev} does not list {id}"))["state"]
        .as_str()
        .expect("state")
        .to_owned()
}

/// Whether any file of a device home contains `needle`.
fn home_contains(home: &Path, needle: &str) -> bool {
    std::fs::read_dir(home)
        .expect("home exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

#[test]
fn remove_with_rotation_expels_the_device_and_only_the_others_get_the_new_key() {
    let acc = Account::new();
    acc.init("a");
    acc.init("b");
    let c_init = acc.init("c");
    acc.pair("a", "b");
    acc.pair("a", "c");
    for d in ["a", "b", "c", "a"] {
        acc.ok(d, &["sync"]);
    }
    let c_id = c_init["device_id"].as_str().expect("id").to_owned();
    let c_inbox = c_init["folders"]["inbox"]
        .as_str()
        .expect("inbox")
        .to_owned();
    let old = fingerprint(&acc, "a");
    assert_eq!(fingerprint(&acc, "c"), old);
    assert!(acc.folders().iter().any(|(n, _)| n == &c_inbox));
    assert_eq!(acc.count(ANNOUNCE), 3);

    let out = acc.ok("a", &["remove", &c_id, "--rotate-account-key"]);
    assert_eq!(removed_ids(&out), vec![c_id.clone()]);
    let b_id = acc.device_id("b");
    assert_eq!(
        out[0]["pending_acks"],
        serde_json::json!([b_id]),
        "the removal is pending until b acknowledges it"
    );
    // Immediate: c's announcement is gone; its inbox holds only the signed
    // removal notice.
    assert_eq!(acc.count(ANNOUNCE), 2);
    assert_eq!(acc.count(&c_inbox), 1, "{:?}", acc.folders());
    let notice = common::messages_in(&acc, &c_inbox);
    assert!(String::from_utf8_lossy(&notice[0]).contains("kind=remove;"));
    let new = fingerprint(&acc, "a");
    assert_ne!(new, old, "the account key was rotated");
    assert_eq!(new.len(), 40);
    assert_eq!(state_of(&acc, "a", &c_id), "removed");

    let status = acc.ok("a", &["status"]);
    assert_eq!(
        status[0]["pending_removals"][0]["device_id"],
        c_id.as_str(),
        "{status:?}"
    );
    // b converges to the new key after a sync; it sees c removed.
    acc.ok("b", &["sync"]);
    assert_eq!(fingerprint(&acc, "b"), new);
    assert_eq!(state_of(&acc, "b", &c_id), "removed");
    // b's acknowledgement reaches a: the removal has landed.
    acc.ok("a", &["sync"]);
    let status = acc.ok("a", &["status"]);
    assert_eq!(
        status[0]["pending_removals"],
        serde_json::json!([]),
        "{status:?}"
    );
    // The Setup Message now carries the new key.
    let setup = acc.home("setup.eml");
    let code = acc.ok(
        "b",
        &[
            "setup-message",
            "export",
            "--out",
            setup.to_str().expect("path"),
        ],
    )[0]["setup_code"]
        .as_str()
        .expect("code")
        .to_owned();
    let text = std::fs::read_to_string(&setup).expect("setup message");
    let key = sma_crypto::setup_message::import(
        &text,
        &sma_crypto::SetupCode::parse(&code).expect("code"),
    )
    .expect("import setup message");
    assert_eq!(key.fingerprint().to_string(), new);

    // c finds out from the signed notice, says so, deletes its inbox,
    // exits 4 from then on, and never learns the key.
    assert_removed(&acc, "c", &["sync"]);
    assert_removed(&acc, "c", &["status"]);
    assert_removed(&acc, "c", &["recv"]);
    assert_removed(&acc, "c", &["account-key", "show"]);
    assert_removed(&acc, "c", &["sync"]);
    assert!(
        !acc.folders().iter().any(|(n, _)| n == &c_inbox),
        "the removed device recreated its inbox"
    );
    assert_eq!(acc.count(ANNOUNCE), 2);
    let c_home = acc.home("c");
    assert!(
        home_contains(&c_home, &old),
        "check works: c knows the old key"
    );
    assert!(!home_contains(&c_home, &new), "c learnt the new key");
    // Nor is it anywhere c could read it in clear on the server.
    let on_server = common::server().all_messages_on_disk(acc.index);
    assert!(on_server
        .iter()
        .all(|(_, b)| !b.windows(new.len()).any(|w| w == new.as_bytes())));

    // Removing oneself is a usage error.
    let a_id = acc.device_id("a");
    let out = acc.run("a", &["remove", &a_id]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn gc_and_sync_expire_silent_members_but_not_briefly_offline_ones() {
    let acc = Account::new();
    acc.init("a");
    let b_id = acc.init("b")["device_id"].as_str().expect("id").to_owned();
    let c_id = acc.init("c")["device_id"].as_str().expect("id").to_owned();
    acc.pair("a", "c");
    // c falls silent; b joins later and is only briefly offline.
    std::thread::sleep(Duration::from_secs(6));
    acc.pair("a", "b");
    let out = acc.ok("a", &["gc", "--expire-after", "5s"]);
    assert_eq!(
        removed_ids(&out),
        vec![c_id.clone()],
        "only c was silent past 5 s"
    );
    assert_eq!(state_of(&acc, "a", &c_id), "removed");
    assert_eq!(state_of(&acc, "a", &b_id), "active");
    assert_eq!(acc.count(ANNOUNCE), 2);

    // `gc --expire-after` applied 5 s once: the stored policy is still the
    // default, so b, silent past 5 s now too, survives a plain `sync`.
    std::thread::sleep(Duration::from_secs(6));
    let policy = one(acc.ok("a", &["config", "get", "expire-after"]));
    assert_eq!(policy["value"], "90d");
    assert_eq!(policy["default"], true);
    let out = acc.ok("a", &["sync"]);
    assert_eq!(out[0]["removed_devices"], serde_json::json!([]), "{out:?}");
    assert_eq!(state_of(&acc, "a", &b_id), "active");
    // Once the policy is set, a plain `sync` expires b automatically.
    let set = one(acc.ok("a", &["config", "set", "expire-after", "5s"]));
    assert_eq!(
        (set["value"].as_str(), set["default"].as_bool()),
        (Some("5s"), Some(false))
    );
    let out = acc.ok("a", &["sync"]);
    assert_eq!(out[0]["removed_devices"], serde_json::json!([b_id.clone()]));
    assert_eq!(state_of(&acc, "a", &b_id), "removed");
    assert_eq!(acc.count(ANNOUNCE), 1);
    // Nothing else to expire.
    assert!(removed_ids(&acc.ok("a", &["gc"])).is_empty());
    for dev in ["b", "c"] {
        assert_removed(&acc, dev, &["sync"]);
        assert_removed(&acc, dev, &["status"]);
    }
    let inboxes = acc
        .folders()
        .into_iter()
        .filter(|(n, _)| n.starts_with("_Autocrypt_SMA_"))
        .count();
    assert_eq!(inboxes, 1, "only a's inbox is left: {:?}", acc.folders());

    let out = acc.run("a", &["gc", "--expire-after", "soon"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn leave_tells_the_others_and_wipes_the_device() {
    let acc = Account::new();
    acc.init("a");
    let b_init = acc.init("b");
    acc.pair("a", "b");
    for d in ["a", "b", "a"] {
        acc.ok(d, &["sync"]);
    }
    let b_id = b_init["device_id"].as_str().expect("id").to_owned();
    let b_inbox = b_init["folders"]["inbox"]
        .as_str()
        .expect("inbox")
        .to_owned();
    let b_home = acc.home("b");
    let secret_marker = "PRIVATE KEY BLOCK";
    assert!(home_contains(&b_home, secret_marker), "check works");

    let out = acc.ok("b", &["leave"]);
    assert_eq!(removed_ids(&out), vec![b_id.clone()]);
    assert!(!acc.folders().iter().any(|(n, _)| n == &b_inbox));
    assert_eq!(acc.count(ANNOUNCE), 1);
    assert!(
        !home_contains(&b_home, secret_marker),
        "the account key was wiped"
    );
    for args in [
        &["sync"][..],
        &["status"],
        &["leave"],
        &["account-key", "show"],
    ] {
        assert_removed(&acc, "b", args);
    }

    let out = acc.ok("a", &["sync"]);
    assert_eq!(out[0]["applied"], 1, "{out:?}");
    assert_eq!(state_of(&acc, "a", &b_id), "removed");
    let out = acc
        .cmd("a")
        .args(["send", "--to", &b_id])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run send");
    assert_eq!(
        out.status.code(),
        Some(1),
        "sending to a departed device must fail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
