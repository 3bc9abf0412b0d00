//! Crash safety on the real stack: the real `sma` binary against a real
//! Dovecot, killed with SIGKILL at random points of `send`, `sync`, `recv`,
//! `pair` and `join`, and run again. Nothing acknowledged may be lost and
//! nothing may be applied or delivered twice; the group converges.
//!
//! The kill points come from a seeded generator: the seed is printed, and
//! `CRASH_SEED=<seed>` replays the same schedule (timing still varies with
//! the machine). `CRASH_ITERATIONS` changes the number of kills (default 100).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine as _;
use common::{read_code, run_and_kill, Account, MaybeKilled};
use rand::{Rng, SeedableRng};
use serde_json::Value;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Body text of a `recv` line.
fn body_of(line: &Value) -> String {
    let b64 = line["body_b64"].as_str().expect("body_b64");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64 body");
    String::from_utf8(bytes).expect("utf-8 body")
}

/// What each device printed. Once a run that was not killed printed a
/// message, it recorded the hand-out: no later run may print it again. A
/// run killed after printing may not have recorded it, so the message may
/// come again (at-least-once across a kill of the printing process).
#[derive(Default)]
struct Deliveries {
    /// Printed by a run that completed (recorded as handed out).
    done: BTreeSet<(String, String)>,
    /// Printed at all.
    seen: BTreeSet<(String, String)>,
}

impl Deliveries {
    fn record(&mut self, device: &str, run: &MaybeKilled) {
        for line in &run.lines {
            let key = (device.to_owned(), body_of(line));
            assert!(
                !self.done.contains(&key),
                "{device} got {:?} again after a completed run had delivered it",
                key.1
            );
            self.seen.insert(key.clone());
            if !run.killed {
                self.done.insert(key);
            }
        }
    }

    fn got(&self, device: &str, body: &str) -> bool {
        self.seen.contains(&(device.to_owned(), body.to_owned()))
    }
}

/// A send whose outcome is known: the body and, if `send` reported
/// success, its recipients.
struct Sent {
    from: String,
    body: String,
    to: Option<Vec<String>>,
}

fn assert_ok(what: &str, device: &str, run: &MaybeKilled) {
    assert!(
        run.killed || run.status == Some(0),
        "{what} on {device} failed after a crash (status {:?}): {}",
        run.status,
        run.stderr
    );
}

/// Pairs `joiner` from `member`, killing one side at a random moment in the
/// first attempts (a killed `join` after its reply leaves the member thinking
/// the pairing worked); the last attempt runs undisturbed. Returns attempts.
fn pair_with_kills(acc: &Account, member: &str, joiner: &str, rng: &mut impl Rng) -> u32 {
    let joiner_id = acc.device_id(joiner);
    for attempt in 1..=4u32 {
        let mut pair = acc.spawn_pair(member, &["--device", &joiner_id, "--timeout", "30"]);
        let code = read_code(&mut pair);
        let mut join = acc
            .cmd(joiner)
            .args(["join", "--code", &code, "--timeout", "30"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn join");
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..1200)));
        // Kill one side, then give up on the other as a person would.
        let (first, second) = if rng.gen_bool(0.5) {
            (&mut pair, &mut join)
        } else {
            (&mut join, &mut pair)
        };
        let _ = first.kill();
        let _ = first.wait();
        std::thread::sleep(Duration::from_millis(300));
        let _ = second.kill();
        let _ = second.wait();
        let status = acc.ok(joiner, &["status"]);
        if status[0]["role"] == "member" {
            // The join finished before the kill.
            return attempt;
        }
    }
    acc.pair(member, joiner);
    5
}

#[test]
fn killed_commands_lose_nothing_acknowledged_and_deliver_nothing_twice() {
    let seed = env_u64("CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7)
    });
    let iterations = env_u64("CRASH_ITERATIONS").unwrap_or(100) as usize;
    eprintln!("crash test: CRASH_SEED={seed} CRASH_ITERATIONS={iterations}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let acc = Account::new();
    for d in ["a", "b", "c"] {
        acc.init(d);
    }
    acc.pair("a", "b");
    acc.pair("a", "c");
    for d in ["a", "b", "c"] {
        acc.ok(d, &["sync"]);
    }
    let devices = ["a", "b", "c"];
    let ids: BTreeMap<&str, String> = devices.iter().map(|d| (*d, acc.device_id(d))).collect();

    // Kills land within 1.25 times what a whole command takes here (the
    // shortest of three `sync`s): spread over the whole of a command's
    // work, whatever the machine's speed, with some commands finishing.
    let whole = (0..3)
        .map(|_| {
            let started = std::time::Instant::now();
            acc.ok("a", &["sync"]);
            started.elapsed()
        })
        .min()
        .unwrap_or(Duration::from_millis(70));
    let window = (whole.as_millis() as u64 * 5 / 4).max(3);
    eprintln!("a whole sync takes {whole:?}: kills within {window} ms");

    let mut sent: Vec<Sent> = Vec::new();
    let mut got = Deliveries::default();
    let mut kills = 0;
    for i in 0..iterations {
        let dev = devices[rng.gen_range(0..devices.len())];
        let after = Duration::from_millis(rng.gen_range(2..window));
        match rng.gen_range(0..3) {
            0 => {
                let body = format!("m{i}-{dev}");
                let file = acc.dir.path().join(format!("body-{i}"));
                std::fs::write(&file, &body).expect("write body");
                let mut cmd = acc.cmd(dev);
                cmd.arg("send").arg("--all").arg(&file);
                let run = run_and_kill(cmd, after);
                assert_ok("send", dev, &run);
                let to = (!run.killed).then(|| {
                    run.lines[0]["to"]
                        .as_array()
                        .expect("send report lists recipients")
                        .iter()
                        .map(|v| v.as_str().expect("recipient id").to_owned())
                        .collect()
                });
                kills += u32::from(run.killed);
                sent.push(Sent {
                    from: dev.into(),
                    body,
                    to,
                });
            }
            1 => {
                let mut cmd = acc.cmd(dev);
                cmd.arg("sync");
                let run = run_and_kill(cmd, after);
                assert_ok("sync", dev, &run);
                kills += u32::from(run.killed);
            }
            _ => {
                let mut cmd = acc.cmd(dev);
                cmd.arg("recv");
                let run = run_and_kill(cmd, after);
                assert_ok("recv", dev, &run);
                got.record(dev, &run);
                kills += u32::from(run.killed);
            }
        }
    }
    eprintln!("{kills} of {iterations} commands were killed mid-way");
    assert!(
        kills as usize * 2 >= iterations,
        "only {kills} of {iterations} kills hit a running command: the loop would test little"
    );

    // A new device paired with kills on both sides.
    acc.init("d");
    let attempts = pair_with_kills(&acc, "a", "d", &mut rng);
    eprintln!("pairing d took {attempts} attempts");

    // Settle: every device syncs a few times, then hands out what waits.
    let all = ["a", "b", "c", "d"];
    for _ in 0..3 {
        for d in all {
            acc.ok(d, &["sync"]);
        }
    }
    for d in all {
        let out = acc.run(d, &["recv"]);
        assert!(out.status.success(), "final recv on {d}");
        got.record(
            d,
            &MaybeKilled {
                killed: false,
                status: Some(0),
                lines: common::json_lines(&out.stdout),
                stderr: String::new(),
            },
        );
    }

    // Every acknowledged send reached each of its recipients (at most once
    // was checked as the runs were recorded); nothing else was delivered.
    for s in &sent {
        for d in devices.iter().filter(|d| **d != s.from) {
            if s.to.as_ref().is_some_and(|to| to.contains(&ids[d])) {
                assert!(
                    got.got(d, &s.body),
                    "acknowledged message {:?} from {} never reached {d} (CRASH_SEED={seed})",
                    s.body,
                    s.from
                );
            }
        }
        assert!(
            !got.got(s.from.as_str(), &s.body),
            "{} got its own message",
            s.from
        );
    }
    let bodies: BTreeSet<&str> = sent.iter().map(|s| s.body.as_str()).collect();
    for (d, body) in &got.seen {
        assert!(bodies.contains(body.as_str()), "{d} got unknown {body:?}");
    }

    // The group converged: every member lists the same four active devices.
    let mut views = Vec::new();
    for d in all {
        let mut view: Vec<(String, String)> = acc
            .ok(d, &["devices"])
            .iter()
            .map(|v| {
                (
                    v["device_id"].as_str().expect("id").to_owned(),
                    v["state"].as_str().expect("state").to_owned(),
                )
            })
            .collect();
        view.sort();
        views.push(view);
    }
    assert_eq!(views[0].len(), 4, "{:?}", views[0]);
    assert!(
        views[0].iter().all(|(_, s)| s == "active"),
        "{:?}",
        views[0]
    );
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "devices disagree: {views:?}"
    );
}
