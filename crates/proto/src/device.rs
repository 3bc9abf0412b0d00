//! A device's identity, and its self-description in the announcements
//! folder (PROTOCOL 8).

use rand_core::{CryptoRng, RngCore};
use sma_crypto::{Certificate, DeviceKey, SigContext};

use crate::envelope::{Body, Envelope, Kind, Marker, Recipient};
use crate::error::{InvalidMessage, PeerMisbehaved, ProtoError};
use crate::folders::Layout;
use crate::ids::{DeviceId, MessageId};
use crate::payload::{self, AnnouncedState, Announcement, PAYLOAD_VERSION};

/// A device's identity: id, account and device key.
pub struct Identity {
    /// Our device id.
    pub id: DeviceId,
    /// The account address.
    pub account: String,
    /// Our device key (secret).
    pub key: DeviceKey,
}

impl Identity {
    /// Our public certificate.
    pub fn cert(&self) -> Certificate {
        self.key.certificate()
    }

    /// Our certificate fingerprint (upper-case hex).
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint().to_string()
    }
}

/// Builds a signed announcement message.
#[allow(clippy::too_many_arguments)]
pub fn build_announcement(
    rng: &mut (impl RngCore + CryptoRng),
    me: &Identity,
    name: &str,
    created: u64,
    now: u64,
    state: AnnouncedState,
    layout: Layout,
    founder: bool,
) -> Result<Vec<u8>, ProtoError> {
    let ann = Announcement {
        v: PAYLOAD_VERSION,
        device_id: me.id.clone(),
        name: name.to_owned(),
        software: concat!("sma ", env!("CARGO_PKG_VERSION")).to_owned(),
        cert: me.cert().to_armored(),
        created,
        heartbeat: now,
        state,
        layout,
        founder,
    };
    let doc = payload::to_json(&ann);
    let signature = sma_crypto::sign_detached(&me.key, &doc, SigContext::Announcement)?;
    Ok(Envelope {
        account: me.account.clone(),
        date: now,
        marker: Marker {
            kind: Kind::Announce,
            from: me.id.clone(),
            to: Recipient::All,
            id: MessageId::random(rng),
        },
        body: Body::Signed {
            payload: doc.to_vec(),
            signature,
        },
    }
    .to_bytes())
}

/// Checks an announcement: well-formed, self-consistent and self-signed.
/// Returns it with its certificate. Whether the device is a *member* is a
/// separate question for the group state.
pub fn verify_announcement(env: &Envelope) -> Result<(Announcement, Certificate), ProtoError> {
    let Body::Signed { payload, signature } = &env.body else {
        return Err(InvalidMessage::Missing("signed body").into());
    };
    let ann: Announcement = payload::from_json(payload)?;
    ann.validate()?;
    if ann.device_id != env.marker.from {
        return Err(PeerMisbehaved::EnvelopeMismatch("device id").into());
    }
    let cert = Certificate::from_armored(&ann.cert)
        .map_err(|_| InvalidMessage::BadField("certificate"))?;
    sma_crypto::verify_detached(&cert, payload, signature, SigContext::Announcement)
        .map_err(PeerMisbehaved::Crypto)?;
    Ok((ann, cert))
}
