//! The results both front ends print as JSON: `sma --json` (one line per
//! result) and `sma serve` (the `result` of a call, or a notification).
//!
//! Results the library has a struct for (`sma::status::StatusReport`,
//! `sma::keys::PeerView`, `sma::lifecycle::RemovalReport`,
//! `sma::pair::PairEvent`, ...) are serialised as they are. The few it has
//! none for are defined here, once, together with the steps both front ends
//! take to fill them, so the CLI and the JSON-RPC server cannot drift apart.
//!
//! The fields of these structs are in alphabetical order on purpose: the
//! results used to be built as `serde_json` maps, which sort their keys, and
//! a struct is printed in declaration order. Keeping the order keeps every
//! line byte for byte as it was (the tests below pin it).

use std::path::PathBuf;

use serde::Serialize;
use sma::{Device, DeviceId, Error};
use sma_crypto::{AccountKey, SecretString, SetupCode};

/// The account key of the group (an error if it has none).
pub(crate) fn account_key(dev: &Device) -> sma::Result<AccountKey> {
    dev.account_key()?
        .ok_or_else(|| Error::Server("this group has no account key".into()))
}

/// An Autocrypt Setup Message of the group's account key, dated now, and
/// the setup code that opens it.
pub(crate) fn setup_message(dev: &Device) -> sma::Result<(String, SetupCode)> {
    let key = account_key(dev)?;
    let date = sma_proto::timefmt::rfc5322(sma::clock::Clock::now(&sma::clock::SystemClock));
    sma_crypto::setup_message::export(&mut rand::rngs::OsRng, &key, &dev.info().account, &date)
        .map_err(sma_proto::ProtoError::from)
        .map_err(Error::from)
}

/// `sma account-key show` and `account_key.show`: what identifies the
/// account key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct AccountKeyView {
    /// `<primary>+<encryption subkey>`, e.g. `ed25519+cv25519`.
    pub(crate) algorithm: String,
    /// Creation time, RFC 3339.
    pub(crate) created: String,
    /// Fingerprint of the primary key.
    pub(crate) fingerprint: String,
}

impl AccountKeyView {
    /// The view of `key`.
    pub(crate) fn of(key: &AccountKey) -> Self {
        AccountKeyView {
            algorithm: key.algorithm(),
            created: sma_proto::timefmt::rfc3339(key.created_unix()),
            fingerprint: key.fingerprint().to_string(),
        }
    }
}

/// `sma account-key export --out FILE` (with `out`) and
/// `account_key.export` (with `armored`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct AccountKeyExport {
    /// The exported key, ASCII-armored (JSON-RPC: there is no file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) armored: Option<SecretString>,
    /// Fingerprint of the primary key.
    pub(crate) fingerprint: String,
    /// The file written (CLI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) out: Option<PathBuf>,
    /// Whether the secret key was exported.
    pub(crate) secret: bool,
}

impl AccountKeyExport {
    /// The armored public key, or the secret key with `secret` (wiped from
    /// memory when dropped either way).
    pub(crate) fn armored(key: &AccountKey, secret: bool) -> SecretString {
        if secret {
            key.to_armored_secret()
        } else {
            key.public_armored().into()
        }
    }
}

/// `sma setup-message export` (the message went to a file) and
/// `setup_message.export` (with the message).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct SetupMessageExport {
    /// The whole Setup Message (JSON-RPC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
    /// The setup code, grouped, shown only now.
    pub(crate) setup_code: String,
}

/// `sma keys prefer-encrypt`: the account's setting now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct PreferEncryptView {
    /// `mutual` or `nopreference`.
    pub(crate) prefer_encrypt: &'static str,
}

/// The first line of `sma join`: who this device is, to compare with what
/// `sma pair` shows on the member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct JoinWaiting {
    /// This device.
    pub(crate) device_id: DeviceId,
    /// Always `waiting`.
    event: &'static str,
    /// This device's key fingerprint.
    pub(crate) fingerprint: String,
}

impl JoinWaiting {
    /// The line for this device.
    pub(crate) fn new(device_id: DeviceId, fingerprint: String) -> Self {
        JoinWaiting {
            device_id,
            event: "waiting",
            fingerprint,
        }
    }
}

/// `watch` and `unwatch` of `sma serve`: whether the background watch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct WatchState {
    /// Whether it runs now.
    pub(crate) watching: bool,
}

/// The `watch_stopped` notification of `sma serve`: the background watch
/// ended with this error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct WatchStopped {
    /// The JSON-RPC error code.
    pub(crate) code: i64,
    /// The error message.
    pub(crate) error: String,
    /// Always `watch_stopped`.
    event: &'static str,
    /// The kind of an application error (`failed`, `timeout`, ...).
    pub(crate) kind: Option<String>,
}

impl WatchStopped {
    /// The notification for an error with `code`, `error` and `kind`.
    pub(crate) fn new(code: i64, error: String, kind: Option<String>) -> Self {
        WatchStopped {
            code,
            error,
            event: "watch_stopped",
            kind,
        }
    }
}

/// An error of `sma --json`, printed on standard error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ErrorLine<'a> {
    /// The message with its cause chain.
    pub(crate) error: String,
    /// The error kind (`failed`, `usage`, ...; see `docs/CLI.md`).
    pub(crate) kind: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The struct prints exactly the line the sorted map it replaced
    /// printed.
    fn same_line<T: Serialize>(view: &T, map: serde_json::Value) {
        let line = serde_json::to_string(view).expect("serialisable");
        assert_eq!(line, map.to_string());
    }

    #[test]
    fn views_print_the_lines_of_the_maps_they_replaced() {
        let id = DeviceId::parse("0123456789abcdef").expect("device id");
        same_line(
            &AccountKeyView {
                algorithm: "ed25519+cv25519".into(),
                created: "2026-01-02T03:04:05Z".into(),
                fingerprint: "AB".into(),
            },
            json!({"fingerprint": "AB", "created": "2026-01-02T03:04:05Z", "algorithm": "ed25519+cv25519"}),
        );
        same_line(
            &AccountKeyExport {
                armored: None,
                fingerprint: "AB".into(),
                out: Some(PathBuf::from("/tmp/k.asc")),
                secret: true,
            },
            json!({"fingerprint": "AB", "out": "/tmp/k.asc", "secret": true}),
        );
        same_line(
            &AccountKeyExport {
                armored: Some("-----BEGIN".into()),
                fingerprint: "AB".into(),
                out: None,
                secret: false,
            },
            json!({"fingerprint": "AB", "secret": false, "armored": "-----BEGIN"}),
        );
        same_line(
            &SetupMessageExport {
                message: None,
                setup_code: "1234-5678".into(),
            },
            json!({ "setup_code": "1234-5678" }),
        );
        same_line(
            &SetupMessageExport {
                message: Some("From: a".into()),
                setup_code: "1234-5678".into(),
            },
            json!({ "setup_code": "1234-5678", "message": "From: a" }),
        );
        same_line(
            &PreferEncryptView {
                prefer_encrypt: "mutual",
            },
            json!({ "prefer_encrypt": "mutual" }),
        );
        same_line(
            &JoinWaiting::new(id.clone(), "CD".into()),
            json!({"event": "waiting", "device_id": id, "fingerprint": "CD"}),
        );
        same_line(&WatchState { watching: true }, json!({ "watching": true }));
        same_line(
            &WatchStopped::new(1, "lost".into(), Some("failed".into())),
            json!({"event": "watch_stopped", "error": "lost", "kind": "failed", "code": 1}),
        );
        same_line(
            &WatchStopped::new(-32603, "bug".into(), None),
            json!({"event": "watch_stopped", "error": "bug", "kind": null, "code": -32603}),
        );
        same_line(
            &ErrorLine {
                error: "no".into(),
                kind: "usage",
            },
            json!({ "error": "no", "kind": "usage" }),
        );
    }
}
