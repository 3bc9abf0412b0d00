//! Helpers of the hostile-server tests: a counting allocator (peak bytes
//! allocated by the whole test process), one test at a time, and sessions
//! through a [`HostileProxy`] in front of the shared Dovecot.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sma_imap::{ImapConfig, ImapSession, Security, Transport, Uid};
use sma_testrig::hostile::HostileProxy;

use crate::common::{message, server, session};

/// Counts the bytes allocated and their peak.
pub struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters are plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

/// One test at a time: the counters are process-wide.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What running something cost.
#[derive(Debug)]
pub struct Cost<T> {
    /// Its result.
    pub out: T,
    /// Peak bytes allocated above what was allocated when it started.
    pub peak: usize,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// Runs `f`, measuring its peak allocation and time.
pub async fn measure<T>(f: impl Future<Output = T>) -> Cost<T> {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let started = Instant::now();
    let out = f.await;
    let elapsed = started.elapsed();
    let peak = PEAK.load(Ordering::SeqCst).saturating_sub(base);
    eprintln!("measured: peak {peak} bytes allocated, {elapsed:?}");
    Cost { out, peak, elapsed }
}

pub const MIB: usize = 1 << 20;

/// A proxy in front of the shared Dovecot.
pub fn proxy() -> HostileProxy {
    let d = server();
    HostileProxy::start(d.host(), d.plain_port())
}

/// A plain-IMAP configuration for account `i` through `proxy`.
pub fn via(proxy: &HostileProxy, i: usize) -> ImapConfig {
    let account = &server().accounts()[i];
    let mut c = ImapConfig::new(
        "127.0.0.1",
        Security::Plain,
        account.user.clone(),
        account.password.clone(),
    );
    c.port = proxy.port();
    c
}

/// A session of account `i` through `proxy`.
pub async fn connect(proxy: &HostileProxy, i: usize) -> ImapSession {
    ImapSession::connect(&via(proxy, i))
        .await
        .unwrap_or_else(|e| panic!("connect through the proxy: {e}"))
}

/// Creates `folder` for account `i` (directly, not through a proxy) and
/// appends messages of these body sizes; returns their UIDs.
pub async fn folder_with(i: usize, folder: &str, sizes: &[usize]) -> Vec<Uid> {
    let mut s = session(i).await;
    s.create(folder).await.expect("create");
    let mut uids = Vec::new();
    for (n, size) in sizes.iter().enumerate() {
        let m = message(&format!("{folder}-{n}"), "", *size);
        uids.push(
            s.append(folder, &[], &m)
                .await
                .expect("append")
                .expect("uid"),
        );
    }
    s.logout().await.expect("logout");
    uids
}

/// After a hostile episode: with the proxy behaving again, a new session
/// works and reads `folder` in full.
pub async fn works_afterwards(proxy: &HostileProxy, i: usize, folder: &str, messages: usize) {
    proxy.clear();
    let mut s = connect(proxy, i).await;
    let st = s.select(folder).await.expect("select after the episode");
    assert_eq!(st.exists as usize, messages);
    let headers = s
        .fetch_headers(sma_imap::UidRange::all())
        .await
        .expect("fetch after the episode");
    assert_eq!(headers.len(), messages);
    let uids: Vec<Uid> = headers.iter().map(|h| h.uid).collect();
    let bodies = s.fetch_messages(&uids, 16 << 20).await.expect("bodies");
    assert!(bodies.iter().all(|m| m.body.is_some()));
    s.logout().await.expect("logout");
}
