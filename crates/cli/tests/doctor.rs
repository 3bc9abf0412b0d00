//! Acceptance: `sma doctor` against a real Dovecot, `sma completions` and
//! `sma man`.

mod common;

use std::process::Command;

use common::{json_lines, server, Account};
use serde_json::Value;
use sma_imap::{ImapConfig, ImapSession, Security, Transport};

/// Runs `f` on a raw IMAP session (plain, loopback) of the account.
fn raw_imap<F>(acc: &Account, f: F)
where
    F: for<'a> FnOnce(
        &'a mut ImapSession,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut config = ImapConfig::new(
            "127.0.0.1",
            Security::Plain,
            &acc.user,
            acc.password.as_str(),
        );
        config.port = server().plain_port();
        let mut t = ImapSession::connect(&config).await.expect("raw IMAP login");
        f(&mut t).await;
        t.logout().await.expect("logout");
    });
}

fn doctor(acc: &Account, dev: &str, extra: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let mut args = vec!["doctor"];
    args.extend_from_slice(extra);
    let out = acc.run(dev, &args);
    (
        out.status.code(),
        json_lines(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {lines:#?}"))
}

#[test]
fn healthy_device_then_a_subscribed_sma_folder_is_found_and_fixed() {
    let acc = Account::new();
    acc.init("a");
    let (code, lines, stderr) = doctor(&acc, "a", &[]);
    assert_eq!(code, Some(0), "{lines:#?}\n{stderr}");
    for l in &lines {
        for key in ["check", "status", "detail", "fix"] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
        assert!(
            ["ok", "warn", "fail"].contains(&l["status"].as_str().unwrap_or("")),
            "{l}"
        );
    }
    for name in [
        "device",
        "security",
        "login",
        "capabilities",
        "namespace",
        "folders",
        "subscriptions",
        "idle",
        "clock",
    ] {
        assert_eq!(check(&lines, name)["status"], "ok", "{name}: {lines:#?}");
    }
    // The probe left nothing behind.
    let id = acc.device_id("a");
    assert_eq!(acc.count(&format!("_Autocrypt_SMA_{id}")), 0);

    // A mail program subscribed the announcements folder.
    raw_imap(&acc, |t| {
        Box::pin(async move { t.subscribe("_Autocrypt_SMA").await.expect("subscribe") })
    });
    assert!(server()
        .subscriptions_on_disk(acc.index)
        .contains(&"_Autocrypt_SMA".to_owned()));
    let (code, lines, _) = doctor(&acc, "a", &[]);
    assert_eq!(code, Some(0), "a warning does not fail: {lines:#?}");
    let sub = check(&lines, "subscriptions");
    assert_eq!(sub["status"], "warn", "{sub}");
    assert!(
        sub["detail"]
            .as_str()
            .is_some_and(|d| d.contains("_Autocrypt_SMA")),
        "{sub}"
    );
    assert!(
        sub["fix"].as_str().is_some_and(|f| f.contains("--fix")),
        "{sub}"
    );

    // --fix unsubscribes it.
    let (code, lines, _) = doctor(&acc, "a", &["--fix"]);
    assert_eq!(code, Some(0));
    assert_eq!(check(&lines, "subscriptions")["status"], "ok");
    assert!(!server()
        .subscriptions_on_disk(acc.index)
        .contains(&"_Autocrypt_SMA".to_owned()));
}

#[test]
fn a_missing_inbox_is_a_failure_with_exit_1() {
    let acc = Account::new();
    acc.init("a");
    let inbox = format!("_Autocrypt_SMA_{}", acc.device_id("a"));
    let folder = inbox.clone();
    raw_imap(&acc, move |t| {
        Box::pin(async move { t.delete(&folder).await.expect("delete") })
    });
    let (code, lines, stderr) = doctor(&acc, "a", &[]);
    assert_eq!(code, Some(1), "{lines:#?}");
    let folders = check(&lines, "folders");
    assert_eq!(folders["status"], "fail");
    assert!(
        folders["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&inbox)),
        "{folders}"
    );
    assert!(stderr.contains("folders"), "{stderr}");
}

#[test]
fn no_device_is_a_failure_that_says_to_run_init() {
    let acc = Account::new();
    let (code, lines, _) = doctor(&acc, "nothing-here", &[]);
    assert_eq!(code, Some(1));
    let device = check(&lines, "device");
    assert_eq!(device["status"], "fail");
    assert!(
        device["fix"]
            .as_str()
            .is_some_and(|f| f.contains("sma init")),
        "{device}"
    );
}

#[test]
fn completions_and_man_page_are_generated() {
    let sma = env!("CARGO_BIN_EXE_sma");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(sma)
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("doctor") && text.contains("account-key"),
            "{shell}: {text}"
        );
    }
    let out = Command::new(sma).arg("man").output().expect("run");
    assert!(out.status.success());
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(man.starts_with(".ie") || man.contains(".TH"), "{man}");
    assert!(man.contains("sma") && man.contains("doctor"), "{man}");
    let bad = Command::new(sma)
        .args(["completions", "cmd.exe"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}
