//! TLS client setup (rustls with ring): web PKI roots by default, or only a
//! private CA from a PEM file; host name verification always on.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::{CertificateError, ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::bare_host;
use crate::error::ImapError;

/// Builds the rustls client configuration: only the certificates in
/// `ca_file` when given, else the web PKI roots (ring, safe default
/// versions). Errors name `addr` and say which part of the CA file is
/// wrong. Shared with the JMAP transport.
pub fn client_config(addr: &str, ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, ImapError> {
    let tls_err = |reason: String| ImapError::Tls {
        addr: addr.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    match ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let shown = path.display();
            let iter = CertificateDer::pem_file_iter(path).map_err(|e| {
                tls_err(format!(
                    "cannot read the CA file {shown}: {e} — check --ca-file"
                ))
            })?;
            for cert in iter {
                let cert = cert.map_err(|e| {
                    tls_err(format!(
                        "the CA file {shown} is not valid PEM: {e} — check --ca-file"
                    ))
                })?;
                roots.add(cert).map_err(|e| {
                    tls_err(format!(
                        "the CA file {shown} holds an unusable certificate: {e} — check --ca-file"
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(tls_err(format!(
                    "the CA file {shown} holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks) — check --ca-file"
                )));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Runs the TLS handshake over `tcp`, verifying the certificate for `host`.
pub(crate) async fn handshake(
    tcp: TcpStream,
    host: &str,
    addr: &str,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, ImapError> {
    let config = client_config(addr, ca_file)?;
    let name = ServerName::try_from(bare_host(host).to_owned()).map_err(|e| ImapError::Tls {
        addr: addr.to_owned(),
        reason: format!("{host:?} is not a valid host name for TLS: {e}"),
    })?;
    let connector = TlsConnector::from(config);
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Err(_) => Err(ImapError::Timeout {
            what: format!("the TLS handshake with {addr}"),
        }),
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(handshake_error(e, host, addr, ca_file)),
    }
}

/// Turns a failed handshake into an error that says why and what to do.
/// Plain I/O failures (reset, EOF) count as a lost connection: retrying may
/// help; verification failures are [`ImapError::Tls`] and are not retried.
fn handshake_error(e: io::Error, host: &str, addr: &str, ca_file: Option<&Path>) -> ImapError {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return ImapError::ConnectionLost(format!("during the TLS handshake with {addr}: {e}"));
    };
    ImapError::Tls {
        addr: addr.to_owned(),
        reason: describe(tls, host, ca_file),
    }
}

/// Human explanation of a rustls error.
pub(crate) fn describe(e: &rustls::Error, host: &str, ca_file: Option<&Path>) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => match ca_file {
                Some(p) => format!(
                    "the server's certificate is not signed by the CA in {} ({cert:?}) — check --ca-file, or that this is the right server",
                    p.display()
                ),
                None => format!(
                    "the server's certificate is not signed by a trusted certificate authority ({cert:?}) — for a private CA pass its certificate with --ca-file"
                ),
            },
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the server's certificate is not valid for the name {host:?} — connect with a host name the certificate lists"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired — the server's administrator must renew it (or check this machine's clock)".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet — check this machine's clock".to_owned()
            }
            CertificateError::Revoked => "the server's certificate has been revoked".to_owned(),
            other => format!("the server's certificate was rejected ({other:?})"),
        },
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            "the server did not answer with TLS — check the port and --security (993 is usually implicit TLS, 143 STARTTLS)".to_owned()
        }
        E::AlertReceived(alert) => format!(
            "the server aborted the TLS handshake ({alert:?}) — check --security and the port"
        ),
        E::PeerIncompatible(why) => format!(
            "the server supports no TLS version or cipher suite in common with sma ({why:?})"
        ),
        other => format!("{other}"),
    }
}
