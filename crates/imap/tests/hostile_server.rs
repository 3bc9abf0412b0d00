//! Issue 20: a server that misbehaves on cue (a proxy in front of the real
//! Dovecot, `sma_testrig::hostile`). One test per row of the table:
//! each asserts the error, the peak memory the command allocated (a
//! counting allocator), the elapsed time, and that a new session works
//! afterwards. Bounds: docs/TRANSPORT.md.

mod common;
mod rig;

use std::time::Duration;

use rig::{connect, folder_with, measure, proxy, works_afterwards, Counting, MIB, SERIAL};
use sma_imap::{ImapError, Transport, UidRange};
use sma_testrig::hostile::{Reply, Rule};

#[global_allocator]
static ALLOC: Counting = Counting;

const GIB: u64 = 1 << 30;

fn oversized(e: &ImapError) -> (&str, &str) {
    match e {
        ImapError::Oversized { what, limit, .. } => (what.as_str(), limit.as_str()),
        other => panic!("expected Oversized, got {other:?}"),
    }
}

#[tokio::test]
async fn a_line_of_1_gb_without_crlf_then_close() {
    let _one = SERIAL.lock().await;
    let p = proxy();
    let uids = folder_with(0, "Line", &[100]).await;
    let mut s = connect(&p, 0).await;
    s.select("Line").await.expect("select");
    p.add(Rule::on("NOOP").respond(Reply::text("* ").and_fill(b'a', GIB).then_close()));
    let cost = measure(s.noop()).await;
    let e = cost.out.expect_err("must fail");
    assert_eq!(oversized(&e), ("an overlong response line", "1 MiB"));
    assert!(!e.to_string().contains("network"), "{e}");
    assert!(cost.peak < 4 * MIB, "peak {} bytes", cost.peak);
    assert!(cost.elapsed < Duration::from_secs(10), "{:?}", cost.elapsed);
    assert!(s.is_lost());
    drop(s);
    works_afterwards(&p, 0, "Line", uids.len()).await;
}

#[tokio::test]
async fn six_300_mb_bodies_for_uids_never_asked_for() {
    let _one = SERIAL.lock().await;
    let p = proxy();
    let uids = folder_with(1, "Six", &[100]).await;
    let mut s = connect(&p, 1).await;
    s.select("Six").await.expect("select");
    let mut reply = Reply::default();
    for k in 1..=6 {
        reply = reply
            .and_text(format!(
                "* {k} FETCH (UID {} BODY[] {{314572800}}\r\n",
                1000 + k
            ))
            .and_fill(b'x', 300 << 20)
            .and_text(")\r\n");
    }
    p.add(Rule::on("BODY.PEEK[]").respond(reply.and_text("{tag} OK Fetch completed.\r\n")));
    let cost = measure(s.fetch_messages(&uids, 1 << 20)).await;
    let e = cost.out.expect_err("must fail");
    let (what, _) = oversized(&e);
    assert_eq!(what, "a literal of 314572800 bytes");
    assert!(cost.peak < 2 * MIB, "peak {} bytes", cost.peak);
    assert!(cost.elapsed < Duration::from_secs(5), "{:?}", cost.elapsed);
    drop(s);
    works_afterwards(&p, 1, "Six", uids.len()).await;
}

#[tokio::test]
async fn data_for_uids_never_asked_for_is_dropped_without_copying() {
    let _one = SERIAL.lock().await;
    let p = proxy();
    // A message the proxy can send from a pattern: header, then 1 MiB of y.
    let head = "Subject: wanted\r\n\r\n";
    let mut wanted = head.as_bytes().to_vec();
    wanted.resize(head.len() + MIB, b'y');
    let mut direct = common::session(2).await;
    direct.create("Drop").await.expect("create");
    let uid = direct
        .append("Drop", &[], &wanted)
        .await
        .expect("append")
        .expect("uid");
    let mut s = connect(&p, 2).await;
    s.select("Drop").await.expect("select");
    let n = wanted.len() as u64;
    let mut reply = Reply::default();
    for k in 1..=5u64 {
        reply = reply
            .and_text(format!("* {k} FETCH (UID {} BODY[] {{{n}}}\r\n", 1000 + k))
            .and_fill(b'x', n)
            .and_text(")\r\n");
    }
    let reply = reply
        .and_text(format!("* 9 FETCH (UID {{uid}} BODY[] {{{n}}}\r\n{head}"))
        .and_fill(b'y', MIB as u64)
        .and_text(")\r\n{tag} OK Fetch completed.\r\n");
    p.add(Rule::on("BODY.PEEK[]").respond(reply));
    let cost = measure(s.fetch_messages(&[uid], 4 << 20)).await;
    let got = cost.out.expect("the requested message");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].uid, uid);
    assert!(got[0].body.as_deref() == Some(&wanted[..]), "body differs");
    // One response in flight plus the kept body; copying the five others
    // would have taken 5 MiB more.
    assert!(cost.peak < 4 * MIB, "peak {} bytes", cost.peak);
    s.noop().await.expect("the session is fine");
}

#[tokio::test]
async fn a_200_mb_body_whose_size_said_small() {
    let _one = SERIAL.lock().await;
    let p = proxy();
    let uids = folder_with(3, "Lie", &[2000]).await;
    let mut s = connect(&p, 3).await;
    s.select("Lie").await.expect("select");
    p.add(
        Rule::on("BODY.PEEK[]").respond(
            Reply::text("* 1 FETCH (UID {uid} BODY[] {209715200}\r\n")
                .and_fill(b'x', 200 << 20)
                .and_text(")\r\n{tag} OK Fetch completed.\r\n"),
        ),
    );
    let cost = measure(s.fetch_messages(&uids, 16 << 20)).await;
    let e = cost.out.expect_err("must fail");
    let (what, limit) = oversized(&e);
    assert_eq!(what, "a literal of 209715200 bytes");
    // The announced RFC822.SIZE plus slack, not the 16 MiB asked for.
    assert!(limit.ends_with("bytes"), "{limit}");
    assert!(cost.peak < 2 * MIB, "peak {} bytes", cost.peak);
    drop(s);
    works_afterwards(&p, 3, "Lie", uids.len()).await;
}

#[tokio::test]
async fn a_200_mb_header() {
    let _one = SERIAL.lock().await;
    let p = proxy();
    let uids = folder_with(4, "Head", &[100]).await;
    let mut s = connect(&p, 4).await;
    s.select("Head").await.expect("select");
    p.add(
        Rule::on("BODY.PEEK[HEADER]").respond(
            Reply::text("* 1 FETCH (UID {uid} RFC822.SIZE 100 BODY[HEADER] {209715200}\r\n")
                .and_fill(b'x', 200 << 20)
                .and_text(")\r\n{tag} OK Fetch completed.\r\n"),
        ),
    );
    let cost = measure(s.fetch_headers(UidRange::all())).await;
    let e = cost.out.expect_err("must fail");
    assert_eq!(oversized(&e), ("a literal of 209715200 bytes", "256 KiB"));
    assert!(cost.peak < 2 * MIB, "peak {} bytes", cost.peak);
    drop(s);
    works_afterwards(&p, 4, "Head", uids.len()).await;
}

#[tokio::test]
async fn a_literal_of_530_mb_announced_then_silence() {
    let _one = SERIAL.lock().await;
    let p = proxy();
    let uids = folder_with(5, "Silence", &[100]).await;
    let mut s = connect(&p, 5).await;
    s.select("Silence").await.expect("select");
    p.add(
        Rule::on("BODY.PEEK[]")
            .respond(Reply::text("* 1 FETCH (UID {uid} BODY[] {530000000}\r\n").then_hang()),
    );
    let cost = measure(s.fetch_messages(&uids, 16 << 20)).await;
    let e = cost.out.expect_err("must fail");
    assert_eq!(oversized(&e).0, "a literal of 530000000 bytes");
    // Refused on the announcement: no allocation, no wait for a timeout.
    assert!(cost.peak < MIB, "peak {} bytes", cost.peak);
    assert!(cost.elapsed < Duration::from_secs(2), "{:?}", cost.elapsed);
    drop(s);
    works_afterwards(&p, 5, "Silence", uids.len()).await;
}

#[tokio::test]
async fn forty_unparseable_lines_of_25_mb() {
    let _one = SERIAL.lock().await;
    let p = proxy();
    let mut s = connect(&p, 6).await;
    let mut reply = Reply::default();
    for _ in 0..40 {
        reply = reply
            .and_text("* XJUNK (")
            .and_fill(b'[', 25_000_000)
            .and_text("\r\n");
    }
    p.add(Rule::on("NOOP").respond(reply.and_text("{tag} OK NOOP completed.\r\n")));
    let cost = measure(s.noop()).await;
    let e = cost.out.expect_err("must fail");
    assert_eq!(oversized(&e).0, "an overlong response line");
    assert!(cost.peak < 4 * MIB, "peak {} bytes", cost.peak);
    assert!(cost.elapsed < Duration::from_secs(5), "{:?}", cost.elapsed);
}

#[tokio::test]
async fn unparseable_lines_under_the_line_limit_are_not_kept() {
    let _one = SERIAL.lock().await;
    let p = proxy();
    let mut s = connect(&p, 6).await;
    let mut reply = Reply::default();
    for _ in 0..40 {
        reply = reply
            .and_text("* XJUNK (")
            .and_fill(b'[', 200_000)
            .and_text("\r\n");
    }
    p.add(
        Rule::on("NOOP")
            .respond(reply.and_text("{tag} OK NOOP completed.\r\n"))
            .times(1),
    );
    let cost = measure(s.noop()).await;
    cost.out
        .expect("junk lines are set aside, the command succeeds");
    // 8 MB of junk went by; at most one line was held at a time.
    assert!(cost.peak < MIB, "peak {} bytes", cost.peak);
    let cost = measure(s.noop()).await;
    cost.out.expect("usable");
    assert!(cost.peak < MIB);
}

#[tokio::test]
async fn one_byte_at_a_time() {
    let _one = SERIAL.lock().await;
    let p = proxy();
    let uids = folder_with(7, "Slow", &[100]).await;
    let mut s = connect(&p, 7).await;
    s.set_command_timeout(Duration::from_millis(500));
    p.add(Rule::on("NOOP").respond(Reply::text("* OK ").and_trickle(
        b'x',
        100_000,
        Duration::from_millis(50),
    )));
    let cost = measure(s.noop()).await;
    let e = cost.out.expect_err("must fail");
    // Bytes kept coming (no inactivity timeout), but far below the minimum
    // rate: cut off at about the command timeout.
    assert!(
        matches!(e, ImapError::TooSlow { bytes, .. } if bytes < 100),
        "{e:?}"
    );
    assert!(e.is_connection_lost() && s.is_lost());
    assert!(
        cost.elapsed >= Duration::from_millis(450),
        "{:?}",
        cost.elapsed
    );
    assert!(cost.elapsed < Duration::from_secs(3), "{:?}", cost.elapsed);
    drop(s);
    works_afterwards(&p, 7, "Slow", uids.len()).await;
}

#[tokio::test]
async fn a_quoted_header_line_of_32_mb() {
    let _one = SERIAL.lock().await;
    let p = proxy();
    let uids = folder_with(8, "Quoted", &[100]).await;
    let mut s = connect(&p, 8).await;
    s.select("Quoted").await.expect("select");
    p.add(
        Rule::on("BODY.PEEK[HEADER]").respond(
            Reply::text("* 1 FETCH (UID {uid} RFC822.SIZE 100 BODY[HEADER] \"")
                .and_fill(b'a', 32 << 20)
                .and_text("\")\r\n{tag} OK Fetch completed.\r\n"),
        ),
    );
    let cost = measure(s.fetch_headers(UidRange::all())).await;
    let e = cost.out.expect_err("must fail");
    assert_eq!(oversized(&e).0, "an overlong response line");
    // Not blamed on the network, and no quadratic parse (148 s before).
    assert!(!e.to_string().contains("network"), "{e}");
    assert!(cost.elapsed < Duration::from_secs(2), "{:?}", cost.elapsed);
    assert!(cost.peak < 4 * MIB, "peak {} bytes", cost.peak);
    drop(s);
    works_afterwards(&p, 8, "Quoted", uids.len()).await;
}

#[tokio::test]
async fn a_quoted_header_just_under_the_line_limit_parses_once() {
    let _one = SERIAL.lock().await;
    let p = proxy();
    let uids = folder_with(9, "Quoted2", &[100]).await;
    let mut s = connect(&p, 9).await;
    s.select("Quoted2").await.expect("select");
    let len = 1000 * 1000;
    p.add(
        Rule::on("BODY.PEEK[HEADER]").respond(
            Reply::text("* 1 FETCH (UID {uid} RFC822.SIZE 100 BODY[HEADER] \"")
                .and_fill(b'a', len)
                .and_text("\")\r\n{tag} OK Fetch completed.\r\n"),
        ),
    );
    let cost = measure(s.fetch_headers(UidRange::all())).await;
    let got = cost.out.expect("a long quoted header is legal");
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].uid, got[0].header.len()), (uids[0], len as usize));
    assert!(cost.elapsed < Duration::from_secs(2), "{:?}", cost.elapsed);
    assert!(cost.peak < 6 * MIB, "peak {} bytes", cost.peak);
}
