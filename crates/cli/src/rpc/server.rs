//! The server loop: reads requests line by line, runs each as its own task
//! (those that use the device take turns on one lock), writes answers and
//! notifications through one writer so lines never interleave.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sma::{Device, Password, Session};
use sma_imap::Transport;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Mutex, Notify};
use tokio::task::{JoinHandle, JoinSet};

use super::protocol::{self, Call, Parsed, RpcError};
use crate::secrets;

/// A kept session that has been unused for longer than this is checked with
/// NOOP before it is used again (servers log idle clients out).
const SESSION_CHECK_AFTER: Duration = Duration::from_secs(30);

/// Where the device lives and where the password comes from.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The device home, or why there is none.
    pub home: Result<PathBuf, RpcError>,
    /// `--password-file`.
    pub password_file: Option<PathBuf>,
    /// `--password-command`.
    pub password_command: Option<String>,
    /// `--oauth2-token-command`: stored in the home when the device is
    /// opened (it replaces the stored command).
    pub oauth2_token_command: Option<String>,
}

/// The device, its kept IMAP session and the password, behind one lock.
pub(super) struct Core {
    settings: Settings,
    dev: Option<Device>,
    session: Option<(Session, Instant)>,
    password: Option<Password>,
}

impl Core {
    /// The opened device (opened on first use).
    pub(super) fn device(&mut self) -> Result<&mut Device, RpcError> {
        if self
            .dev
            .as_ref()
            .is_none_or(|d| d.info().role == sma::Role::Removed)
        {
            let home = self.settings.home.clone()?;
            // A removed or departed device answers error 4 to everything.
            sma::lifecycle::check_not_removed(&home)?;
            let mut dev = Device::open(&home)?;
            if let Some(cmd) = &self.settings.oauth2_token_command {
                dev.set_oauth2_token_command(cmd)?;
            }
            self.dev = Some(dev);
        }
        self.dev
            .as_mut()
            .ok_or_else(|| RpcError::new(protocol::INTERNAL_ERROR, "device not open"))
    }

    /// The IMAP password (resolved once); empty, and nothing read, when
    /// the device logs in with OAuth 2.0 tokens (the token command then
    /// runs for every connection).
    pub(super) fn password(&mut self) -> Result<Password, RpcError> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        if self.device()?.info().server.uses_oauth2() {
            return Ok(Password::default());
        }
        self.device()?;
        let p = secrets::password(
            self.settings.password_file.as_deref(),
            self.settings.password_command.as_deref(),
            self.dev.as_ref(),
        )?;
        self.password = Some(p.clone());
        Ok(p)
    }

    /// The device with a logged-in session (kept between requests).
    pub(super) async fn connected(&mut self) -> Result<(&mut Device, &mut Session), RpcError> {
        self.device()?;
        if let Some((t, used)) = &mut self.session {
            if t.is_lost() || (used.elapsed() > SESSION_CHECK_AFTER && t.noop().await.is_err()) {
                self.session = None;
            }
        }
        if self.session.is_none() {
            let password = self.password()?;
            // Not `Device::connect`: its future holds `&Device`, which is not `Sync`.
            let dev = self.device()?;
            crate::commands::warn_if_insecure(&dev.info().server);
            let config = dev.session_config(&password)?;
            let t = config.connect().await.map_err(sma::Error::from)?;
            self.device()?.remember_login(&t);
            self.session = Some((t, Instant::now()));
        }
        match (&mut self.dev, &mut self.session) {
            (Some(dev), Some((t, used))) => {
                *used = Instant::now();
                Ok((dev, t))
            }
            _ => Err(RpcError::new(protocol::INTERNAL_ERROR, "no session")),
        }
    }

    /// Forgets the kept session and password: the device's settings
    /// changed (`config.set`), so the next call connects anew with them.
    pub(super) fn settings_changed(&mut self) {
        self.session = None;
        self.password = None;
    }

    /// Maps a library result, dropping the kept session if it was lost.
    pub(super) fn check<T>(&mut self, r: sma::Result<T>) -> Result<T, RpcError> {
        r.map_err(|e| {
            if let sma::Error::Imap(i) = &e {
                if i.needs_reconnect() {
                    self.session = None;
                }
            }
            RpcError::from_sma(&e)
        })
    }
}

/// The running watch.
pub(super) struct WatchTask {
    pub(super) stop: tokio::sync::watch::Sender<bool>,
    pub(super) handle: JoinHandle<()>,
}

/// What every request task shares.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) core: Arc<Mutex<Core>>,
    pub(super) out: mpsc::UnboundedSender<Value>,
    pub(super) watch: Arc<Mutex<Option<WatchTask>>>,
    /// Wakes the watch for a round (after requests that may have fetched).
    pub(super) kick: Arc<Notify>,
}

impl Shared {
    fn new(settings: Settings, out: mpsc::UnboundedSender<Value>) -> Self {
        Shared {
            core: Arc::new(Mutex::new(Core {
                settings,
                dev: None,
                session: None,
                password: None,
            })),
            out,
            watch: Arc::new(Mutex::new(None)),
            kick: Arc::new(Notify::new()),
        }
    }

    /// Sends `ev` as an `event` notification.
    pub(super) fn event<T: serde::Serialize>(&self, ev: &T) -> Result<(), RpcError> {
        let params = protocol::to_value(ev)?;
        let _ = self.out.send(protocol::notification("event", params));
        Ok(())
    }

    async fn handle(&self, call: Call) {
        let result = self.dispatch(&call.method, call.params).await;
        if let Some(id) = &call.id {
            let line = match result {
                Ok(v) => protocol::success(id, v),
                Err(e) => protocol::failure(id, &e),
            };
            let _ = self.out.send(line);
        }
    }

    /// Stops the watch (if any) and waits for it.
    pub(super) async fn stop_watch(&self) -> bool {
        let task = self.watch.lock().await.take();
        match task {
            Some(w) => {
                let _ = w.stop.send(true);
                let _ = w.handle.await;
                true
            }
            None => false,
        }
    }
}

/// Serves JSON-RPC on `input`/`output` until `input` ends; then waits for
/// the requests in flight and stops the watch.
pub async fn serve<R, W>(settings: Settings, input: R, output: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(write_lines(rx, output));
    let shared = Shared::new(settings, tx.clone());
    let mut input = BufReader::new(input);
    let mut tasks = JoinSet::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf).await? == 0 {
            break;
        }
        // Invalid UTF-8 becomes U+FFFD and then a parse error.
        match protocol::parse_line(&String::from_utf8_lossy(&buf)) {
            Parsed::Empty => {}
            Parsed::Reply(v) => {
                let _ = tx.send(v);
            }
            Parsed::Call(call) => {
                let s = shared.clone();
                tasks.spawn(async move { s.handle(call).await });
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    shared.stop_watch().await;
    drop(shared);
    drop(tx);
    writer.await.map_err(std::io::Error::other)?
}

async fn write_lines<W: AsyncWrite + Unpin>(
    mut rx: mpsc::UnboundedReceiver<Value>,
    mut output: W,
) -> std::io::Result<()> {
    while let Some(v) = rx.recv().await {
        let mut line = serde_json::to_vec(&v).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if let Err(e) = async {
            output.write_all(&line).await?;
            output.flush().await
        }
        .await
        {
            // The client has gone; drain so senders never block or fail loudly.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                while rx.recv().await.is_some() {}
                return Ok(());
            }
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::protocol::{INVALID_PARAMS, METHOD_NOT_FOUND, PARSE_ERROR};
    use serde_json::json;

    /// Runs the server over in-memory pipes with `lines` as input and returns
    /// every output line, keyed by id where there is one.
    async fn run(settings: Settings, lines: &[&str]) -> Vec<Value> {
        let input = lines.join("\n") + "\n";
        let (client, server_out) = tokio::io::duplex(1 << 20);
        serve(settings, input.as_bytes(), server_out)
            .await
            .expect("serve");
        let mut text = String::new();
        let mut r = BufReader::new(client);
        while r.read_line(&mut text).await.expect("read") > 0 {}
        text.lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    fn by_id(out: &[Value], id: Value) -> &Value {
        out.iter()
            .find(|v| v["id"] == id)
            .unwrap_or_else(|| panic!("no answer with id {id} in {out:?}"))
    }

    fn no_home() -> Settings {
        Settings {
            home: Ok(std::env::temp_dir().join("sma-rpc-test-no-such-home")),
            password_file: None,
            password_command: None,
            oauth2_token_command: None,
        }
    }

    #[tokio::test]
    async fn protocol_errors_without_a_device() {
        let out = run(
            no_home(),
            &[
                "{not json",
                r#"{"jsonrpc":"2.0","method":"no.such.method","id":1}"#,
                r#"{"jsonrpc":"2.0","method":"recv","params":{"wait":"x"},"id":2}"#,
                r#"{"jsonrpc":"2.0","method":"status","id":3}"#,
                r#"{"jsonrpc":"2.0","method":"gc","params":{},"id":4}"#,
                r#"{"jsonrpc":"2.0","method":"status"}"#,
                "",
            ],
        )
        .await;
        assert_eq!(
            out.len(),
            5,
            "one answer per request, none for the notification: {out:?}"
        );
        assert_eq!(by_id(&out, Value::Null)["error"]["code"], PARSE_ERROR);
        assert_eq!(by_id(&out, json!(1))["error"]["code"], METHOD_NOT_FOUND);
        assert_eq!(by_id(&out, json!(2))["error"]["code"], INVALID_PARAMS);
        // No device in that home: an application error of kind "failed".
        let status = by_id(&out, json!(3));
        assert_eq!(status["error"]["code"], 1, "{status}");
        assert_eq!(status["error"]["data"]["kind"], "failed");
        assert!(
            status["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("sma init")),
            "{status}"
        );
        assert_eq!(by_id(&out, json!(4))["error"]["data"]["kind"], "failed");
    }

    #[tokio::test]
    async fn discover_lists_every_method() {
        let out = run(
            no_home(),
            &[r#"{"jsonrpc":"2.0","method":"rpc.discover","id":"d"}"#],
        )
        .await;
        let doc = &by_id(&out, json!("d"))["result"];
        assert_eq!(doc["openrpc"], "1.2.6");
        let names: Vec<&str> = doc["methods"]
            .as_array()
            .expect("methods")
            .iter()
            .filter_map(|m| m["name"].as_str())
            .collect();
        for m in [
            "status", "devices", "pair", "join", "send", "recv", "sync", "watch",
        ] {
            assert!(names.contains(&m), "{m} missing from {names:?}");
        }
    }

    #[tokio::test]
    async fn a_home_error_is_reported_per_request() {
        let settings = Settings {
            home: Err(RpcError::of_kind(
                sma::ErrorKind::Usage,
                "several sma devices; choose one with --home".into(),
            )),
            password_file: None,
            password_command: None,
            oauth2_token_command: None,
        };
        let out = run(
            settings,
            &[r#"{"jsonrpc":"2.0","method":"devices","id":5}"#],
        )
        .await;
        assert_eq!(by_id(&out, json!(5))["error"]["code"], 2);
    }
}
