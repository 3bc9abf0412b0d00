//! Running a child process and measuring it: exit, output, elapsed time and
//! peak resident memory (from the kernel's accounting at exit, so even a
//! spike right before the exit is seen).

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What [`run_measured`] saw.
#[derive(Debug)]
pub struct Measured {
    /// How the process ended; `None` if it was killed for running too long.
    pub status: Option<ExitStatus>,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
    /// Its peak resident set size in KiB (`ru_maxrss`).
    pub peak_rss_kib: u64,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
    /// CPU time (user + system) it used.
    pub cpu: Duration,
}

impl Measured {
    /// The exit code, if it exited normally.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// stderr as text (lossy), for assertion messages.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `cmd` (stdin closed, stdout and stderr captured) and measures it.
/// After `limit` it is killed and `status` is `None`. Panics if it cannot
/// be started.
pub fn run_measured(cmd: &mut Command, limit: Duration) -> Measured {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("sma-testrig: cannot start {cmd:?}: {e}"));
    let stdout = reader(&mut child, true);
    let stderr = reader(&mut child, false);
    let pid = i32::try_from(child.id()).unwrap_or_else(|_| panic!("sma-testrig: pid out of range"));
    let mut killed = false;
    let (raw, usage) = loop {
        if let Some(done) = wait4(pid) {
            break done;
        }
        if started.elapsed() >= limit && !killed {
            let _ = child.kill();
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Measured {
        status: (!killed).then(|| ExitStatus::from_raw(raw)),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        peak_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        elapsed,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
    }
}

/// Collects one output pipe on a thread.
fn reader(child: &mut Child, stdout: bool) -> std::thread::JoinHandle<Vec<u8>> {
    let pipe: Option<Box<dyn Read + Send>> = if stdout {
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>)
    } else {
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>)
    };
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut out);
        }
        out
    })
}

/// Reaps `pid` if it has exited: its raw wait status and resource usage.
fn wait4(pid: i32) -> Option<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data for which all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = libc::WNOHANG;
    // SAFETY: `status` and `usage` are valid, exclusively borrowed
    // out-pointers for the duration of the call; `pid` is our own child,
    // which std does not reap behind our back (we never call `wait`).
    let got = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
    (got == pid).then_some((status, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_exit_output_and_memory() {
        let m = run_measured(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!(m.code(), Some(3));
        assert_eq!(m.stdout, b"out\n");
        assert_eq!(m.stderr_text(), "err\n");
        assert!(m.peak_rss_kib > 0);
        // A process that fills a 64 MiB buffer shows it.
        let big = run_measured(
            Command::new("dd").args(["if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]),
            Duration::from_secs(30),
        );
        assert_eq!(big.code(), Some(0), "{}", big.stderr_text());
        assert!(big.peak_rss_kib >= 60 * 1024, "{} KiB", big.peak_rss_kib);
        assert!(m.peak_rss_kib < 16 * 1024, "{} KiB", m.peak_rss_kib);
        let killed = run_measured(Command::new("sleep").arg("30"), Duration::from_millis(200));
        assert!(killed.status.is_none());
        assert!(killed.elapsed < Duration::from_secs(5));
    }
}
