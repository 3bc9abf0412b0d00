//! The WAN part's floor over IMAP: a raw client that does each command's
//! IMAP work with everything pipelined (connect, TLS, then LOGIN and all
//! commands in one flight), through the same delay proxy.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proxy::DelayProxy;
use crate::rig::{raw_message, Rig, Sec};
use crate::wan_group;
use crate::wan_steps::{tls_connect, COMMANDS, PAIRING_HOPS};
use crate::wan_watch;

/// The floor's IMAP work per command: what a client that knew everything
/// in advance would send, all in one flight after LOGIN. `folder` names are
/// fresh (`floor-{n}-…`, below the server's `prefix`) where the product
/// creates folders.
fn floor_scripts(n: usize, prefix: &str) -> Vec<Vec<Vec<u8>>> {
    let msg = raw_message(2048, "floor");
    let append = |folder: &str| {
        let mut c = format!("APPEND \"{folder}\" (\\Seen) {{{}+}}\r\n", msg.len()).into_bytes();
        c.extend_from_slice(&msg);
        c
    };
    let cmd = |s: &str| s.as_bytes().to_vec();
    let ann = format!("{prefix}floor-{n}-announce");
    let inbox_a = format!("{prefix}floor-{n}-a");
    let inbox_b = format!("{prefix}floor-{n}-b");
    vec![
        // init (founder): create the announcements folder and the device's
        // inbox, announce, publish the account key.
        vec![
            cmd(&format!("CREATE \"{ann}\"")),
            cmd(&format!("CREATE \"{inbox_a}\"")),
            append(&ann),
            append(&ann),
        ],
        // init (pending): look at the announcements, create the inbox,
        // announce itself.
        vec![
            cmd(&format!("SELECT \"{ann}\"")),
            cmd("UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER])"),
            cmd(&format!("CREATE \"{inbox_b}\"")),
            append(&ann),
        ],
        // pairing: measured as one session reading the welcome; the hops
        // are added in `floor_run`.
        vec![
            cmd(&format!("SELECT \"{inbox_b}\"")),
            cmd("UID FETCH 1:* (UID BODY.PEEK[])"),
            append(&ann),
        ],
        // send --to: one APPEND into the peer's inbox.
        vec![append(&inbox_b)],
        // recv of one message: select, fetch, delete.
        vec![
            cmd(&format!("SELECT \"{inbox_b}\"")),
            cmd("UID FETCH 1:* (UID BODY.PEEK[])"),
            cmd("UID STORE 1:* +FLAGS.SILENT (\\Deleted)"),
            cmd("EXPUNGE"),
        ],
        // recv / sync with nothing to do: is anything new?
        vec![cmd(&format!("SELECT \"{inbox_b}\""))],
        vec![cmd(&format!("SELECT \"{inbox_b}\""))],
        // status: the folders and their sizes.
        vec![
            cmd(&format!("STATUS \"{ann}\" (MESSAGES)")),
            cmd(&format!("STATUS \"{inbox_a}\" (MESSAGES)")),
            cmd(&format!("STATUS \"{inbox_b}\" (MESSAGES)")),
        ],
    ]
}

/// The floor of a broadcast: one APPEND per recipient, all in one flight
/// (to the floor's two inboxes in turn; the server's work is the same).
fn broadcast_script(n: usize, prefix: &str) -> Vec<Vec<u8>> {
    let msg = raw_message(2048, "floor-broadcast");
    (0..wan_group::RECIPIENTS)
        .map(|i| {
            let folder = format!("{prefix}floor-{n}-{}", if i % 2 == 0 { "a" } else { "b" });
            let mut c = format!("APPEND \"{folder}\" (\\Seen) {{{}+}}\r\n", msg.len()).into_bytes();
            c.extend_from_slice(&msg);
            c
        })
        .collect()
}

/// The floor of every command, [`COMMANDS`] order.
pub(crate) async fn floor_run(
    rig: &Rig,
    proxy: &DelayProxy,
    account: usize,
    rtt: f64,
) -> Result<Vec<Duration>> {
    let mut out = Vec::new();
    for (i, script) in floor_scripts(account, rig.server.folder_prefix())
        .into_iter()
        .enumerate()
    {
        let mut d = pipelined(rig, proxy.port(), account, &script).await?;
        if COMMANDS[i].starts_with("pairing") {
            d += Duration::from_secs_f64(PAIRING_HOPS * rtt / 1000.0);
        }
        out.push(d);
    }
    let folder = format!("{}floor-{account}-b", rig.server.folder_prefix());
    out.push(wan_watch::floor(rig, proxy, account, &folder, rtt).await?);
    out.push(
        pipelined(
            rig,
            proxy.port(),
            account,
            &broadcast_script(account, rig.server.folder_prefix()),
        )
        .await?,
    );
    Ok(out)
}

/// What a client may send before the login is answered: Dovecot's login
/// process buffers what comes behind the login until its authentication
/// process answers, and ends the connection ("Input buffer full") when
/// that is slow (just after a start) and more than a few KiB arrived; a
/// 2 KiB APPEND behind the login was enough to trigger it.
pub const BEFORE_LOGIN_BYTES: usize = 1024;

/// Connect, TLS, then LOGIN and `script`: in one write as far as
/// [`BEFORE_LOGIN_BYTES`] allows, the rest once the login is answered;
/// returns when the last command's tagged reply is in.
async fn pipelined(rig: &Rig, port: u16, account: usize, script: &[Vec<u8>]) -> Result<Duration> {
    let start = Instant::now();
    let tcp = TcpStream::connect((rig.server.host(), port)).await?;
    tcp.set_nodelay(true)?;
    let acct = rig.server.account(account);
    let login = format!("f0 LOGIN \"{}\" \"{}\"\r\n", acct.user, acct.password).into_bytes();
    let flight = Flight::split(login, script);
    match rig.sec {
        Sec::Plain => exchange(tcp, &flight).await?,
        Sec::Tls => {
            let tls = tls_connect(rig, tcp).await?;
            exchange(tls, &flight).await?
        }
    }
    Ok(start.elapsed())
}

/// The floor's bytes: those sent with the login, those sent once it is
/// answered, and the tag of the last command.
struct Flight {
    with_login: Vec<u8>,
    after_login: Vec<u8>,
    last: String,
}

impl Flight {
    /// Tags `script` (`f1`, `f2`, …) behind `login` (`f0`); commands go
    /// with the login while the bytes stay within [`BEFORE_LOGIN_BYTES`].
    fn split(login: Vec<u8>, script: &[Vec<u8>]) -> Flight {
        let mut with_login = login;
        let mut after_login = Vec::new();
        for (i, c) in script.iter().enumerate() {
            let mut line = format!("f{} ", i + 1).into_bytes();
            line.extend_from_slice(c);
            line.extend_from_slice(b"\r\n");
            if after_login.is_empty() && with_login.len() + line.len() <= BEFORE_LOGIN_BYTES {
                with_login.extend_from_slice(&line);
            } else {
                after_login.extend_from_slice(&line);
            }
        }
        Flight {
            with_login,
            after_login,
            last: format!("f{} ", script.len()),
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, flight: &Flight) -> Result<()> {
    s.write_all(&flight.with_login).await?;
    s.flush().await?;
    let mut got = Vec::new();
    let mut rest = (!flight.after_login.is_empty()).then_some(&flight.after_login);
    let last = flight.last.as_str();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!(
                "the server closed before answering the floor's script: {}",
                String::from_utf8_lossy(&got)
            );
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if rest.is_some() && text.split("\r\n").any(|l| l.starts_with("f0 OK")) {
            if let Some(bytes) = rest.take() {
                s.write_all(bytes).await?;
                s.flush().await?;
            }
        }
        if let Some(line) = text
            .split("\r\n")
            .find(|l| l.starts_with(last))
            .map(str::to_owned)
        {
            if !line[last.len()..].starts_with("OK") {
                bail!("the floor's script failed: {line}");
            }
            return Ok(());
        }
        // A tagged NO/BAD earlier is a broken script.
        if let Some(bad) = text
            .split("\r\n")
            .find(|l| l.starts_with('f') && (l.contains(" NO ") || l.contains(" BAD ")))
        {
            bail!("the floor's script failed: {bad}");
        }
    }
}
