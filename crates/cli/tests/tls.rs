//! Acceptance: certificate verification and the insecure-connection warning,
//! through the real `sma` binary against a real Dovecot.

mod common;

use common::{json_lines, path_str, server, stderr_json, Account};

/// `sma init` over implicit TLS with extra arguments.
fn init_tls(acc: &Account, name: &str, extra: &[&str]) -> std::process::Output {
    let s = server();
    let target = format!("127.0.0.1:{}", s.tls_port());
    let mut args = vec![
        "init", "--server", &target, "--user", &acc.user, "--name", name,
    ];
    args.extend_from_slice(extra);
    acc.run(name, &args)
}

#[test]
fn untrusted_certificate_fails_clearly_and_ca_file_makes_it_work() {
    let acc = Account::new();
    // The web PKI does not know the test CA.
    let out = init_tls(&acc, "a", &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr_json(&out);
    let msg = err["error"].as_str().expect("error text");
    assert_eq!(err["kind"], "failed");
    assert!(
        msg.contains("not signed by a trusted certificate authority") && msg.contains("--ca-file"),
        "unclear message: {msg}"
    );
    assert!(
        !acc.home("a").join(sma::STORE_FILE).exists(),
        "a failed init must leave no device"
    );

    // A CA file that did not sign the server's certificate.
    let wrong = path_str(server().wrong_ca_file()).to_owned();
    let out = init_tls(&acc, "a", &["--ca-file", &wrong]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr_json(&out)["error"]
        .as_str()
        .expect("error")
        .to_owned();
    assert!(
        msg.contains("not signed by the CA in") && msg.contains(&wrong),
        "unclear message: {msg}"
    );

    // The right CA: works, and later commands keep verifying against it.
    let ca = path_str(server().ca_file()).to_owned();
    let out = init_tls(&acc, "a", &["--ca-file", &ca]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_lines(&out.stdout)[0]["role"], "founder");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("WARNING"),
        "no warning for a verified connection"
    );
    let status = acc.ok("a", &["status"]);
    assert_eq!(status[0]["role"], "founder");
}

#[test]
fn allow_insecure_to_a_remote_host_warns_loudly() {
    let acc = Account::new();
    // A name that never resolves (RFC 2606): the warning comes before any
    // connection attempt, which then fails.
    let init_plain_remote = |extra: &[&str]| {
        let mut args = vec![
            "init",
            "--server",
            "mail.sma-test.invalid:143",
            "--security",
            "plain",
            "--user",
            &acc.user,
        ];
        args.extend_from_slice(extra);
        acc.run("a", &args)
    };
    let out = init_plain_remote(&["--allow-insecure"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARNING")
            && stderr.contains("WITHOUT ENCRYPTION")
            && stderr.contains("mail.sma-test.invalid"),
        "no loud warning: {stderr}"
    );

    // Without --allow-insecure, plain to a remote host is refused (usage error).
    let out = init_plain_remote(&[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("WARNING"));

    // Plain to loopback with --allow-insecure is not "actually used": no warning.
    let target = format!("127.0.0.1:{}", server().plain_port());
    let out = acc.run(
        "b",
        &[
            "init",
            "--server",
            &target,
            "--security",
            "plain",
            "--allow-insecure",
            "--user",
            &acc.user,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("WARNING"));
}

/// `init` keeps the server's pre-login capabilities, and the next command
/// sends its login before the greeting; changing the server forgets them
/// (that command waits for the greeting and stores them again).
#[test]
fn later_commands_log_in_before_the_greeting_until_the_server_changes() {
    const EARLY: &str = "IMAP logged in before the greeting";
    let acc = Account::new();
    acc.init("a");
    let sync = |acc: &Account| {
        let out = acc
            .cmd("a")
            .env("SMA_LOG", "sma_imap=debug")
            .arg("sync")
            .output()
            .expect("run sma");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains(&acc.password), "password in the log");
        stderr.contains(EARLY)
    };
    assert!(sync(&acc), "the hint stored by init was used");
    let port = server().tls_port().to_string();
    acc.ok("a", &["config", "set", "server.port", "1"]);
    acc.ok("a", &["config", "set", "server.port", &port]);
    assert!(!sync(&acc), "a changed server drops the hint");
    assert!(sync(&acc), "and the next command has it again");
}
