//! Events the library reports to front ends (JSON lines in the CLI,
//! notifications in the JSON-RPC server).

use serde::Serialize;
use sma_proto::engine::StateEvent;
use sma_proto::DeviceId;

/// An application message delivered to this device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppMessage {
    /// Sender device id.
    pub from: String,
    /// Application kind.
    pub kind: String,
    /// Body, base64.
    pub body_b64: String,
    /// When it was sent (RFC 3339).
    pub sent_at: String,
    /// The message id (used to acknowledge delivery).
    #[serde(skip)]
    pub message_id: String,
}

/// Something that happened during a sync round or a watch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Ops from a peer were applied.
    Applied {
        /// The device whose message carried them.
        from: DeviceId,
        /// Number of new ops.
        ops: usize,
    },
    /// An application message arrived.
    Message(AppMessage),
    /// A device became an active member.
    DeviceAdded {
        /// The device.
        device_id: DeviceId,
        /// Its name.
        name: String,
    },
    /// A device was removed from the group.
    DeviceRemoved {
        /// The device.
        device_id: DeviceId,
    },
    /// A correspondent's key or the account key changed.
    KeyUpdated {
        /// The address (or `account` for the account key).
        addr: String,
    },
    /// The connection was re-established after a failure.
    Reconnected {
        /// Attempts it took.
        attempts: u32,
    },
}

impl From<StateEvent> for Event {
    fn from(e: StateEvent) -> Event {
        match e {
            StateEvent::Applied { from, ops } => Event::Applied { from, ops },
            StateEvent::DeviceAdded { device_id, name } => Event::DeviceAdded { device_id, name },
            StateEvent::DeviceRemoved { device_id } => Event::DeviceRemoved { device_id },
            StateEvent::KeyUpdated { addr } => Event::KeyUpdated { addr },
        }
    }
}
