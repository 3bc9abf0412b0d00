//! A TLS front for a JMAP server that serves plain HTTP here (Cyrus's
//! `httpd` as the rig runs it), so that the WAN part measures JMAP over
//! TLS (`--server cyrus-jmap --security tls`): clients make a real TLS
//! handshake through the delay proxy, and the front ends TLS on loopback
//! and relays the bytes to the server.
//!
//! Its certificate (for `localhost` and `127.0.0.1`) is signed by a CA
//! made for the run with `openssl`, as `scripts/imap-server` makes
//! Dovecot's; clients trust that CA alone (`--ca-file`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::proxy::serve_on_own_thread;

/// A running TLS front (on its own thread and runtime, like the delay
/// proxy).
pub struct TlsFront {
    addr: SocketAddr,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsFront {
    /// Makes a CA and a server certificate, and starts relaying TLS
    /// connections on a free loopback port to `upstream` (plain).
    pub fn start(upstream: SocketAddr) -> Result<TlsFront> {
        let dir = tempfile::Builder::new()
            .prefix("sma-bench-tls-")
            .tempdir()
            .context("cannot create a directory for the TLS front's certificates")?;
        make_certificates(dir.path())?;
        let config = server_config(dir.path())?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot bind the TLS front")?;
        let addr = listener.local_addr()?;
        serve_on_own_thread("tls-front", listener, move |client| {
            let acceptor = acceptor.clone();
            async move {
                let _ = relay(acceptor, client, upstream).await;
            }
        })?;
        Ok(TlsFront {
            addr,
            ca_file: dir.path().join("ca.pem"),
            _dir: dir,
        })
    }

    /// Where clients (the delay proxy) connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA that signed the front's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }
}

/// Ends TLS from `client` and copies the bytes both ways to `upstream`.
async fn relay(acceptor: TlsAcceptor, client: TcpStream, upstream: SocketAddr) -> Result<()> {
    client.set_nodelay(true)?;
    let mut tls = acceptor.accept(client).await?;
    let mut server = TcpStream::connect(upstream).await?;
    server.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut tls, &mut server).await?;
    Ok(())
}

/// The server side: the certificate and key in `dir`, HTTP/1.1 only.
fn server_config(dir: &Path) -> Result<ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .context("cannot read the TLS front's certificate")?
        .collect::<Result<_, _>>()
        .context("the TLS front's certificate is not PEM")?;
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key"))
        .context("cannot read the TLS front's key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS front setup")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS front's certificate and key do not fit")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A CA (`ca.pem`) and a server certificate it signed (`server.pem`,
/// `server.key`) for `localhost` and `127.0.0.1`, in `dir`.
fn make_certificates(dir: &Path) -> Result<()> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ext = "basicConstraints = critical,CA:FALSE\n\
               keyUsage = critical,digitalSignature,keyEncipherment\n\
               extendedKeyUsage = serverAuth\n\
               subjectAltName = DNS:localhost,IP:127.0.0.1\n";
    std::fs::write(dir.join("server.ext"), ext)?;
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
        ]
        .concat()
        .into_iter()
        .chain([
            "-subj",
            "/O=sma bench/CN=sma bench CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])
        .collect(),
        [
            &["req"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat()
        .into_iter()
        .chain(["-subj", "/O=sma bench/CN=localhost"])
        .collect(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(dir)
            .output()
            .context("cannot run openssl (scripts/imap-server install brings it)")?;
        if !out.status.success() {
            bail!(
                "openssl {} failed: {}",
                args[0],
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}
