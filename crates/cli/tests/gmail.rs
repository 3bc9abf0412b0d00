//! Servers whose expunge only archives, end to end: a Dovecot configured
//! like Gmail (`scripts/imap-server --profile gmail`: separator `/`,
//! `[Gmail]/All Mail` and `[Gmail]/Trash`, `X-GM-EXT-1`, and `lazy_expunge`
//! keeping every expunged message in All Mail unless a copy is left), and
//! the same without `X-GM-EXT-1` (`gmail-quiet`), which only the probe of
//! `init` can recognise. Devices are set up, paired and inspected with the
//! real `sma` binary; the bulk of the traffic runs through the library on
//! the same homes, which is much faster than a process per message.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use sma::{Device, ImapSession};
use sma_imap::{ImapConfig, Security, Transport};
use sma_proto::state::{Change, PeerState};
use sma_testrig::Dovecot;

const ALL_MAIL: &str = "[Gmail]/All Mail";
const TRASH: &str = "[Gmail]/Trash";
/// Rounds of traffic: each is a keyring change and an application message
/// from a to b, and a sync on both (so at least two SMA messages each).
const ROUNDS: usize = 150;
/// "A handful": SMA messages All Mail and Trash may hold at the end.
const HANDFUL: usize = 3;

fn gmail() -> &'static Dovecot {
    static S: OnceLock<Dovecot> = OnceLock::new();
    S.get_or_init(|| Dovecot::start_profile(4, "gmail"))
}

fn gmail_quiet() -> &'static Dovecot {
    static S: OnceLock<Dovecot> = OnceLock::new();
    S.get_or_init(|| Dovecot::start_profile(2, "gmail-quiet"))
}

/// One account of `server` with a temp dir for device homes.
struct Account {
    server: &'static Dovecot,
    user: String,
    password: String,
    dir: tempfile::TempDir,
}

impl Account {
    /// Account `index` of `server` (each test uses its own).
    fn new(server: &'static Dovecot, index: usize) -> Account {
        let a = server.account(index);
        Account {
            server,
            user: a.user.clone(),
            password: a.password.clone(),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sma"));
        c.arg("--home").arg(self.home(name)).arg("--json");
        c.env("SMA_PASSWORD", &self.password).env_remove("SMA_HOME");
        c
    }

    fn run(&self, name: &str, args: &[&str]) -> Output {
        self.cmd(name).args(args).output().expect("run sma")
    }

    fn ok(&self, name: &str, args: &[&str]) -> Vec<Value> {
        common::expect_ok(&self.run(name, args), name, args)
    }

    fn init(&self, name: &str) -> Value {
        let server = format!("127.0.0.1:{}", self.server.tls_port());
        let ca = self.server.ca_file().to_str().expect("utf-8").to_owned();
        let args = [
            "init",
            "--server",
            &server,
            "--ca-file",
            &ca,
            "--user",
            &self.user,
            "--name",
            name,
        ];
        self.ok(name, &args).remove(0)
    }

    fn pair(&self, member: &str, joiner: &str) {
        let id = self.ok(joiner, &["status"])[0]["device_id"]
            .as_str()
            .expect("id")
            .to_owned();
        let mut child = self
            .cmd(member)
            .args(["pair", "--device", &id])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pair");
        let code = {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.as_mut().expect("stdout"))
                .read_line(&mut line)
                .expect("code line");
            let v: Value = serde_json::from_str(&line).expect("code JSON");
            v["code"].as_str().expect("code").to_owned()
        };
        self.ok(joiner, &["join", "--code", &code]);
        let out = child.wait_with_output().expect("pair");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn session(&self) -> ImapSession {
        let mut c = ImapConfig::new(
            "127.0.0.1",
            Security::Tls,
            &self.user,
            self.password.as_str(),
        );
        c.port = self.server.tls_port();
        c.ca_file = Some(self.server.ca_file().to_owned());
        ImapSession::connect(&c).await.expect("connect")
    }

    /// SMA messages (with an `Autocrypt-SMA` field) and all messages in
    /// `folder`.
    async fn count(&self, folder: &str) -> (usize, usize) {
        let mut t = self.session().await;
        let all = t.examine(folder).await.expect("examine").exists as usize;
        let sma = t.search_header("Autocrypt-SMA", "").await.expect("search");
        let _ = t.logout().await;
        (sma.len(), all)
    }

    /// SMA messages in All Mail and in the Trash.
    async fn archived(&self) -> (usize, usize) {
        (self.count(ALL_MAIL).await.0, self.count(TRASH).await.0)
    }
}

/// The rig itself: on the gmail profile a plain expunge leaves the message
/// in All Mail, while a move to the Trash and an expunge there deletes.
#[tokio::test(flavor = "current_thread")]
async fn the_gmail_profile_archives_like_gmail() {
    let acc = Account::new(gmail(), 0);
    let mut t = acc.session().await;
    assert!(t.capabilities().has("X-GM-EXT-1"));
    let special = t.special_use_folders().await.expect("special-use");
    let find = |a: &str| {
        special
            .iter()
            .find(|f| f.has_attribute(a))
            .map(|f| f.name.clone())
    };
    assert_eq!(find("\\All").as_deref(), Some(ALL_MAIL));
    assert_eq!(find("\\Trash").as_deref(), Some(TRASH));
    let before = acc.count(ALL_MAIL).await.1;
    t.create("rig").await.expect("create");
    let msg = |n: u32| format!("Message-ID: <rig{n}@test>\r\nSubject: {n}\r\n\r\nx\r\n");
    let one = t
        .append("rig", &[], msg(1).as_bytes())
        .await
        .expect("append");
    let two = t
        .append("rig", &[], msg(2).as_bytes())
        .await
        .expect("append");
    t.select("rig").await.expect("select");
    t.delete_messages(&[one.expect("APPENDUID")])
        .await
        .expect("expunge");
    assert_eq!(
        acc.count(ALL_MAIL).await.1,
        before + 1,
        "an expunge archives"
    );
    let copies = t
        .move_messages(&[two.expect("APPENDUID")], TRASH)
        .await
        .expect("move")
        .expect("COPYUID");
    assert_eq!(copies.len(), 1);
    t.select(TRASH).await.expect("select trash");
    t.delete_messages(&copies).await.expect("expunge in trash");
    assert_eq!(acc.count(TRASH).await.1, 0);
    assert_eq!(
        acc.count(ALL_MAIL).await.1,
        before + 1,
        "the trashed one is gone"
    );
    // Clean up the archived one (an expunge in All Mail deletes).
    t.select(ALL_MAIL).await.expect("select all mail");
    let left = t
        .search_header("Message-ID", "<rig1@test>")
        .await
        .expect("search");
    t.delete_messages(&left).await.expect("expunge");
    t.delete("rig").await.expect("delete");
    assert_eq!(acc.count(ALL_MAIL).await.1, before);
}

/// Keyring changes and application messages from a to b through the
/// library, on the homes the binary made.
async fn exchange(acc: &Account, rounds: usize) {
    let mut a = Device::open(&acc.home("a")).expect("open a");
    let mut b = Device::open(&acc.home("b")).expect("open b");
    let (mut ta, mut tb) = (acc.session().await, acc.session().await);
    let to = b.id().clone();
    for i in 0..rounds {
        let mut p = PeerState::new(&format!("c{i}@example.net"));
        p.last_seen = 1_700_000_000 + i as u64;
        a.record_change(Change::Peer(p)).expect("change");
        a.send(&mut ta, Some(&to), "text", format!("hello {i}").as_bytes())
            .await
            .expect("send");
        a.sync(&mut ta).await.expect("a sync");
        let got = b.recv(&mut tb, Duration::ZERO).await.expect("recv");
        assert_eq!(got.len(), 1, "round {i}");
        b.delivered(&got).expect("delivered");
        b.sync(&mut tb).await.expect("b sync");
    }
    assert_eq!(b.core().group().keyring().len(), rounds);
}

#[tokio::test(flavor = "current_thread")]
async fn a_device_pair_on_gmail_keeps_all_mail_and_trash_free() {
    let acc = Account::new(gmail(), 1);
    acc.init("a");
    acc.init("b");
    acc.pair("a", "b");
    let status = acc.ok("a", &["status"]).remove(0);
    let delete = &status["server"]["delete"];
    assert_eq!(delete["archives"], true, "{delete}");
    assert_eq!(delete["detected_by"], "capability");
    assert_eq!(delete["method"], "trash");
    assert_eq!(delete["trash"], TRASH);
    assert_eq!(delete["all_mail"], ALL_MAIL);
    let doctor = acc.ok("a", &["doctor"]);
    let check = doctor
        .iter()
        .find(|c| c["check"] == "delete")
        .unwrap_or_else(|| panic!("no delete check in {doctor:?}"));
    assert_eq!(check["status"], "ok", "{check}");
    assert!(check["detail"].as_str().unwrap_or_default().contains(TRASH));

    exchange(&acc, ROUNDS).await;
    let (all, trash) = acc.archived().await;
    println!("after {ROUNDS} rounds: {all} SMA messages in All Mail, {trash} in the Trash");
    assert!(all + trash <= HANDFUL, "All Mail {all}, Trash {trash}");

    // A removal: b learns of it, stops and deletes its own folders.
    let b_id = acc.ok("b", &["status"])[0]["device_id"]
        .as_str()
        .expect("id")
        .to_owned();
    acc.ok("a", &["remove", &b_id]);
    let out = acc.run("b", &["sync"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    acc.ok("a", &["sync"]);
    let (all, trash) = acc.archived().await;
    println!("after the removal: {all} SMA messages in All Mail, {trash} in the Trash");
    assert!(all + trash <= HANDFUL, "All Mail {all}, Trash {trash}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_probe_recognises_a_server_that_archives_without_saying_so() {
    let acc = Account::new(gmail_quiet(), 0);
    let report = acc.init("a");
    let status = acc.ok("a", &["status"]).remove(0);
    assert!(
        !status["server"]["capabilities"]
            .as_array()
            .expect("capabilities")
            .iter()
            .any(|c| c == "X-GM-EXT-1"),
        "the quiet profile must not advertise X-GM-EXT-1"
    );
    let delete = &status["server"]["delete"];
    assert_eq!(delete["archives"], true, "{delete}");
    assert_eq!(delete["detected_by"], "probe");
    assert_eq!(delete["method"], "trash");
    // The probe left nothing behind: not in All Mail, the Trash or the inbox.
    assert_eq!(acc.count(ALL_MAIL).await.1, 0);
    assert_eq!(acc.count(TRASH).await.1, 0);
    let inbox = report["folders"]["inbox"].as_str().expect("inbox");
    assert_eq!(acc.count(inbox).await.1, 0);
    // A second device: pairing and a few rounds stay out of All Mail.
    acc.init("b");
    acc.pair("a", "b");
    exchange(&acc, 10).await;
    let (all, trash) = acc.archived().await;
    assert!(all + trash <= HANDFUL, "All Mail {all}, Trash {trash}");
}
