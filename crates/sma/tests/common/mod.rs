//! Shared helpers for the library-level tests: a real Dovecot (sma-testrig),
//! devices made with `init_on` and opened with an adjustable clock, and
//! pairing driven from one task.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sma::clock::{Clock, SystemClock};
use sma::init::{init_on, InitOptions};
use sma::pair::PairEvent;
use sma::{Device, ImapSession, PairingCode, Password, ServerConfig};
use sma_proto::folders::Layout;
use sma_testrig::Dovecot;

/// Accounts on the shared server; each test takes its own.
const ACCOUNTS: usize = 8;

/// One Dovecot per test binary.
pub fn server() -> &'static Dovecot {
    static SERVER: OnceLock<Dovecot> = OnceLock::new();
    SERVER.get_or_init(|| Dovecot::start(ACCOUNTS))
}

fn next_account() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let i = NEXT.fetch_add(1, Ordering::SeqCst);
    assert!(
        i < ACCOUNTS,
        "test harness ran out of accounts; raise ACCOUNTS"
    );
    i
}

/// The system clock shifted by an adjustable number of seconds: tests walk
/// through days and months without sleeping.
#[derive(Clone, Default)]
pub struct ShiftClock(Arc<AtomicI64>);

impl ShiftClock {
    /// Sets the offset from the system clock, in seconds.
    pub fn set_offset(&self, secs: i64) {
        self.0.store(secs, Ordering::SeqCst);
    }
}

impl Clock for ShiftClock {
    fn now_ms(&self) -> u64 {
        let now = SystemClock.now_ms() as i64 + self.0.load(Ordering::SeqCst) * 1000;
        now.max(0) as u64
    }
}

/// One account of the shared server, with a temp dir for device homes.
pub struct Account {
    pub index: usize,
    pub server: ServerConfig,
    pub password: Password,
    pub dir: tempfile::TempDir,
}

impl Account {
    pub fn new() -> Account {
        let index = next_account();
        let d = server();
        let a = d.account(index);
        Account {
            index,
            server: ServerConfig {
                host: d.host().to_owned(),
                port: d.tls_port(),
                security: sma_imap::Security::Tls,
                ca_file: Some(d.ca_file().to_owned()),
                allow_insecure: false,
                user: a.user.clone(),
                oauth2_token_command: None,
                jmap_url: None,
            },
            password: Password::new(&a.password),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A fresh IMAP session for this account.
    pub async fn connect(&self) -> ImapSession {
        ImapSession::connect(&self.server.imap_config(&self.password))
            .await
            .unwrap_or_else(|e| panic!("connect failed: {e}"))
    }

    /// Creates device `name` (founder if first, else pending) and opens it
    /// with `clock`.
    pub async fn init(&self, name: &str, clock: ShiftClock) -> Device {
        let mut t = self.connect().await;
        let opts = InitOptions {
            home: self.home(name),
            server: self.server.clone(),
            name: name.to_owned(),
            layout: Layout::Flat,
            account_key: None,
        };
        init_on(
            &mut t,
            opts,
            Arc::new(clock.clone()),
            Box::new(rand::rngs::OsRng),
        )
        .await
        .unwrap_or_else(|e| panic!("init {name}: {e}"));
        self.open(name, clock)
    }

    /// Opens device `name` with `clock`.
    pub fn open(&self, name: &str, clock: ShiftClock) -> Device {
        Device::open_with(
            &self.home(name),
            Arc::new(clock),
            Box::new(rand::rngs::OsRng),
        )
        .unwrap_or_else(|e| panic!("open {name}: {e}"))
    }

    /// Founder `a` and member `b`, paired and synced twice each so that
    /// both know each other, with a session for each.
    pub async fn two_synced_members(&self) -> (Device, Device, ImapSession, ImapSession) {
        let mut a = self.init("a", ShiftClock::default()).await;
        let mut b = self.init("b", ShiftClock::default()).await;
        self.pair(&mut a, &mut b).await;
        let (mut ta, mut tb) = (self.connect().await, self.connect().await);
        for _ in 0..2 {
            a.sync(&mut ta).await.expect("a sync");
            b.sync(&mut tb).await.expect("b sync");
        }
        (a, b, ta, tb)
    }

    /// Pairs `joiner` through `member`, both driven from this task.
    pub async fn pair(&self, member: &mut Device, joiner: &mut Device) {
        let joiner_id = joiner.id().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let mut tx = Some(tx);
        let mut tm = self.connect().await;
        let mut tj = self.connect().await;
        let pairing = member.pair(&mut tm, Some(&joiner_id), Duration::from_secs(60), |ev| {
            if let PairEvent::Code { code, .. } = ev {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(code.clone());
                }
            }
        });
        let joining = async {
            let code = rx.await.expect("pairing code");
            let code = PairingCode::parse(&code).expect("code parses");
            joiner.join(&mut tj, &code, Duration::from_secs(60)).await
        };
        let (paired, joined) = tokio::join!(pairing, joining);
        paired.unwrap_or_else(|e| panic!("pair: {e}"));
        joined.unwrap_or_else(|e| panic!("join: {e}"));
    }

    /// Messages and bytes in this account's SMA folders, read from disk.
    pub fn footprint(&self) -> (usize, usize) {
        let msgs: Vec<_> = server()
            .all_messages_on_disk(self.index)
            .into_iter()
            .filter(|(path, _)| path.starts_with("._Autocrypt_SMA"))
            .collect();
        (msgs.len(), msgs.iter().map(|(_, b)| b.len()).sum())
    }

    /// Message count of one folder on disk (0 if it does not exist).
    pub fn count(&self, folder: &str) -> usize {
        server()
            .folders_on_disk(self.index)
            .into_iter()
            .find(|(n, _)| n == folder)
            .map(|(_, c)| c)
            .unwrap_or(0)
    }

    /// Whether a folder exists on disk.
    pub fn has_folder(&self, folder: &str) -> bool {
        server()
            .folders_on_disk(self.index)
            .iter()
            .any(|(n, _)| n == folder)
    }
}
