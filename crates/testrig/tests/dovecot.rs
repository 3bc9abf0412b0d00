//! Integration tests of the test rig against the real Dovecot it starts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sma_testrig::Dovecot;

/// A tiny raw IMAP client: enough for LOGIN, CREATE, APPEND, SUBSCRIBE.
struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl Imap {
    fn connect(server: &Dovecot) -> Imap {
        let stream = TcpStream::connect((server.host(), server.plain_port())).unwrap_or_else(|e| {
            panic!("connect to {}:{}: {e}", server.host(), server.plain_port())
        });
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let writer = stream.try_clone().unwrap();
        let mut imap = Imap {
            reader: BufReader::new(stream),
            writer,
            tag: 0,
        };
        let greeting = imap.line();
        assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
        imap
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("read from the server");
        assert!(!line.is_empty(), "server closed the connection");
        line
    }

    /// Sends a command, returns (untagged lines, tagged status line).
    fn command(&mut self, command: &str) -> (Vec<String>, String) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        write!(self.writer, "{tag} {command}\r\n").unwrap();
        self.finish(&tag)
    }

    fn finish(&mut self, tag: &str) -> (Vec<String>, String) {
        let mut untagged = Vec::new();
        loop {
            let line = self.line();
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                return (untagged, rest.trim_end().to_owned());
            }
            untagged.push(line.trim_end().to_owned());
        }
    }

    fn ok(&mut self, command: &str) -> Vec<String> {
        let (untagged, status) = self.command(command);
        assert!(status.starts_with("OK"), "{command}: {status} {untagged:?}");
        untagged
    }

    /// APPEND with a synchronising literal.
    fn append(&mut self, folder: &str, message: &[u8]) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        write!(
            self.writer,
            "{tag} APPEND {folder} {{{}}}\r\n",
            message.len()
        )
        .unwrap();
        let cont = self.line();
        assert!(cont.starts_with('+'), "APPEND continuation: {cont}");
        self.writer.write_all(message).unwrap();
        self.writer.write_all(b"\r\n").unwrap();
        let (_, status) = self.finish(&tag);
        assert!(status.starts_with("OK"), "APPEND: {status}");
    }

    fn login(server: &Dovecot, account: usize) -> Imap {
        let mut imap = Imap::connect(server);
        let a = server.account(account);
        imap.ok(&format!("LOGIN {} {}", a.user, a.password));
        imap
    }
}

fn can_connect(host: &str, port: u16) -> bool {
    TcpStream::connect((host, port)).is_ok()
}

#[test]
fn accounts_ports_and_files() {
    let server = Dovecot::start(3);
    assert_eq!(server.host(), "127.0.0.1");
    assert_ne!(server.plain_port(), server.tls_port());
    assert_eq!(server.accounts().len(), 3);
    assert_eq!(server.account(0).user, "user1@sma.test");
    assert_eq!(server.account(0).password, "pass1");
    assert_eq!(server.account(2).user, "user3@sma.test");
    assert_eq!(server.account(2).password, "pass3");
    assert!(server.ca_file().is_file());
    assert!(server.wrong_ca_file().is_file());
    assert_ne!(
        std::fs::read(server.ca_file()).unwrap(),
        std::fs::read(server.wrong_ca_file()).unwrap()
    );
    assert!(server.dir().join("dovecot.conf").is_file());
    assert!(server.is_running());
    let envs = server.envs();
    assert!(envs.contains(&("SMA_IMAP_PORT".to_owned(), server.plain_port().to_string())));
    assert!(envs.contains(&("SMA_IMAPS_PORT".to_owned(), server.tls_port().to_string())));
    // A user who never logged in has no maildir yet.
    assert!(server.folders_on_disk(1).is_empty());
    assert!(server.subscriptions_on_disk(1).is_empty());
    assert!(server.all_messages_on_disk(1).is_empty());
}

#[test]
fn login_create_append_subscribe_and_disk_views() {
    let server = Dovecot::start(2);
    let mut imap = Imap::login(&server, 0);

    let namespace = imap.ok("NAMESPACE");
    assert!(
        namespace
            .iter()
            .any(|l| l.starts_with(r#"* NAMESPACE (("" "."))"#)),
        "{namespace:?}"
    );
    imap.ok("CREATE _Autocrypt_SMA");
    let (_, status) = imap.command("CREATE _Autocrypt_SMA");
    assert!(status.starts_with("NO [ALREADYEXISTS]"), "{status}");
    imap.ok("CREATE Parent.Child");
    imap.ok("SUBSCRIBE _Autocrypt_SMA");
    imap.ok("SUBSCRIBE Parent.Child");
    let secret = b"Subject: setup\r\n\r\nthe-secret-in-clear\r\n";
    imap.append("_Autocrypt_SMA", secret);
    imap.append("_Autocrypt_SMA", b"Subject: two\r\n\r\nsecond\r\n");
    imap.append("INBOX", b"Subject: inbox\r\n\r\nhello\r\n");
    let (_, status) = imap.command("APPEND Missing {3+}\r\nabc");
    assert!(status.starts_with("NO [TRYCREATE]"), "{status}");
    imap.ok("LOGOUT");

    assert_eq!(
        server.folders_on_disk(0),
        vec![
            ("INBOX".to_owned(), 1),
            ("Parent.Child".to_owned(), 0),
            ("_Autocrypt_SMA".to_owned(), 2),
        ]
    );
    assert_eq!(
        server.subscriptions_on_disk(0),
        vec!["_Autocrypt_SMA".to_owned(), "Parent.Child".to_owned()]
    );
    let messages = server.all_messages_on_disk(0);
    assert_eq!(
        messages.len(),
        3,
        "{:?}",
        messages.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    // Dovecot stores maildir messages with LF line endings.
    let needle = b"the-secret-in-clear";
    assert!(messages
        .iter()
        .any(|(path, bytes)| path.starts_with("._Autocrypt_SMA/")
            && bytes.windows(needle.len()).any(|w| w == needle)));
    assert!(server
        .all_files_on_disk(0)
        .iter()
        .any(|(path, _)| path.ends_with("dovecot-uidlist")));
    // The other account is untouched.
    assert!(server.folders_on_disk(1).is_empty());
}

#[test]
fn wrong_password_is_rejected_and_other_accounts_work() {
    let server = Dovecot::start(2);
    let mut imap = Imap::connect(&server);
    let (_, status) = imap.command("LOGIN user1@sma.test wrong");
    assert!(status.starts_with("NO"), "{status}");
    let (_, status) = imap.command("LOGIN user2@sma.test pass1");
    assert!(status.starts_with("NO"), "{status}");
    imap.ok("LOGIN user2@sma.test pass2");
    // user3 does not exist with 2 accounts.
    let mut imap = Imap::connect(&server);
    let (_, status) = imap.command("LOGIN user3@sma.test pass3");
    assert!(status.starts_with("NO"), "{status}");
}

#[test]
fn stop_start_again_and_restart_keep_ports_and_data() {
    let mut server = Dovecot::start(1);
    let (host, plain, tls) = (
        server.host().to_owned(),
        server.plain_port(),
        server.tls_port(),
    );
    let mut imap = Imap::login(&server, 0);
    imap.ok("CREATE Kept");
    imap.append("Kept", b"Subject: kept\r\n\r\nkept\r\n");

    server.stop();
    assert!(!server.is_running());
    assert!(
        !can_connect(&host, plain),
        "plain port still open after stop()"
    );
    assert!(!can_connect(&host, tls), "TLS port still open after stop()");
    // The session was cut.
    let mut rest = Vec::new();
    let _ = imap.reader.read_to_end(&mut rest);
    server.stop(); // no-op

    server.start_again();
    assert!(server.is_running());
    assert_eq!((server.plain_port(), server.tls_port()), (plain, tls));
    let mut imap = Imap::login(&server, 0);
    let untagged = imap.ok("STATUS Kept (MESSAGES)");
    assert!(
        untagged.iter().any(|l| l.contains("MESSAGES 1")),
        "{untagged:?}"
    );
    drop(imap);

    let pid = server.pid();
    server.restart();
    assert_ne!(server.pid(), pid);
    assert_eq!((server.plain_port(), server.tls_port()), (plain, tls));
    let mut imap = Imap::login(&server, 0);
    imap.ok("SELECT Kept");
    assert_eq!(
        server.folders_on_disk(0),
        vec![("INBOX".to_owned(), 0), ("Kept".to_owned(), 1)]
    );
}

#[test]
fn drop_stops_the_server_and_removes_its_directory() {
    let server = Dovecot::start(1);
    let (host, port) = (server.host().to_owned(), server.plain_port());
    let dir = server.dir().to_owned();
    assert!(can_connect(&host, port));
    drop(server);
    assert!(!can_connect(&host, port), "still listening after drop");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn parallel_instances_get_distinct_ports() {
    let servers: Vec<Dovecot> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| Dovecot::start(1))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ports: Vec<u16> = servers
        .iter()
        .flat_map(|d| [d.plain_port(), d.tls_port()])
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 8, "ports shared between instances: {ports:?}");
    for server in &servers {
        Imap::login(server, 0).ok("NOOP");
    }
}

/// Runs `openssl s_client` (installed by `imap-server install`) against the
/// server; returns whether the handshake and certificate verification passed.
fn openssl_verifies(server: &Dovecot, port: u16, starttls: bool, ca: &Path) -> bool {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("{}:{port}", server.host())])
        .args([
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
            "-brief",
            "-CAfile",
        ])
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if starttls {
        cmd.args(["-starttls", "imap"]);
    }
    let mut child = cmd.spawn().expect("run openssl s_client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a LOGOUT\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let verified = stderr.contains("Verification: OK");
    assert_eq!(out.status.success(), verified, "openssl s_client: {stderr}");
    verified
}

#[test]
fn tls_certificates_verify_against_the_right_ca_only() {
    let server = Dovecot::start(1);
    assert!(openssl_verifies(
        &server,
        server.tls_port(),
        false,
        server.ca_file()
    ));
    assert!(openssl_verifies(
        &server,
        server.plain_port(),
        true,
        server.ca_file()
    ));
    assert!(!openssl_verifies(
        &server,
        server.tls_port(),
        false,
        server.wrong_ca_file()
    ));
    assert!(!openssl_verifies(
        &server,
        server.plain_port(),
        true,
        server.wrong_ca_file()
    ));
}

/// `AUTHENTICATE OAUTHBEARER` with SASL-IR; answers an error challenge with
/// the dummy `\x01` (RFC 7628). Returns the tagged status.
fn oauthbearer(imap: &mut Imap, user: &str, token: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let ir = b64.encode(format!("n,a={user},\x01auth=Bearer {token}\x01\x01"));
    imap.tag += 1;
    let tag = format!("t{}", imap.tag);
    write!(imap.writer, "{tag} AUTHENTICATE OAUTHBEARER {ir}\r\n").unwrap();
    let first = imap.line();
    if let Some(challenge) = first.strip_prefix("+ ") {
        let json = b64.decode(challenge.trim_end()).expect("base64 challenge");
        assert!(
            String::from_utf8_lossy(&json).contains("\"status\""),
            "error challenge: {json:?}"
        );
        write!(imap.writer, "AQ==\r\n").unwrap();
        return imap.finish(&tag).1;
    }
    first
        .strip_prefix(&format!("{tag} "))
        .unwrap_or_else(|| panic!("unexpected answer: {first}"))
        .trim_end()
        .to_owned()
}

#[test]
fn oauth2_profile_accepts_valid_tokens_only() {
    let server = Dovecot::start_profile(2, "oauth2");
    let user = server.account(0).user.clone();
    // No password login at all.
    let mut imap = Imap::connect(&server);
    let caps = imap.ok("CAPABILITY").join(" ");
    assert!(
        caps.contains("AUTH=OAUTHBEARER") && caps.contains("AUTH=XOAUTH2"),
        "{caps}"
    );
    assert!(!caps.contains("AUTH=PLAIN"), "{caps}");
    let (_, status) = imap.command("LOGIN user1@sma.test pass1");
    assert!(status.starts_with("NO"), "{status}");
    // A valid token logs in.
    let mut imap = Imap::connect(&server);
    let status = oauthbearer(&mut imap, &user, &server.oauth2_token(0, 600));
    assert!(status.starts_with("OK"), "{status}\n{}", server.log());
    imap.ok("SELECT INBOX");
    // Wrong key, expired, another account's token: refused.
    let wrong_key =
        sma_testrig::oauth2::mint_jwt(b"not the key", &user, sma_testrig::oauth2::unix_now() + 600);
    for (what, token) in [
        ("wrong signature", wrong_key),
        ("expired", server.oauth2_token(0, -60)),
        ("other account", server.oauth2_token(1, 600)),
    ] {
        let mut imap = Imap::connect(&server);
        let status = oauthbearer(&mut imap, &user, &token);
        assert!(status.starts_with("NO"), "{what}: {status}");
    }
    let log = server.log();
    assert!(log.contains("Incorrect JWT signature"), "{log}");
    assert!(log.contains("Token has expired"), "{log}");
}
