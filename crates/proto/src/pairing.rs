//! The pairing protocol as two state machines (member side and joiner side).
//!
//! States are consumed by the step that handles a message, so a code can be
//! tried only once per attempt. The joiner can open the welcome only through
//! a [`JoinerConfirmed`], which exists only after the member's key
//! confirmation verified.

use rand_core::{CryptoRng, RngCore};
use sma_crypto::{
    pake_start, Certificate, DeviceKey, PairingCode, PairingKeys, PakeRole, PakeStart, Transcript,
};

use crate::error::{PeerMisbehaved, ProtoError};
use crate::ids::{DeviceId, RandomId};
use crate::payload::{self, PairConfirm, PairHello, PairReply, PairWelcome, Welcome, WelcomePart};
use crate::welcome_parts;

/// Largest welcome plaintext accepted (the whole group state).
pub const MAX_WELCOME_PLAINTEXT: usize = 64 << 20;

/// Member side, after sending the hello, waiting for the reply.
pub struct MemberPairing {
    attempt: RandomId,
    account: String,
    member_id: DeviceId,
    member_fpr: sma_crypto::Fingerprint,
    joiner_id: DeviceId,
    joiner_cert: Certificate,
    msg_member: Vec<u8>,
    pake: PakeStart,
}

/// Member side, after the joiner proved knowledge of the code.
pub struct MemberConfirmed {
    attempt: RandomId,
    keys: PairingKeys,
    transcript: Transcript,
    joiner_id: DeviceId,
    joiner_cert: Certificate,
}

/// The first digit of the code of the attempt `attempt`: the attempt id's
/// first byte modulo 10 (PROTOCOL 9.1). Public, like the attempt id.
pub fn code_selector(attempt: &RandomId) -> u8 {
    let first = attempt.as_str().get(..2).unwrap_or("00");
    u8::from_str_radix(first, 16).unwrap_or(0) % 10
}

/// Whether `code` can belong to `hello`: its first digit is the hello's
/// selector. A joiner answers only such hellos.
pub fn code_fits(hello: &PairHello, code: &PairingCode) -> bool {
    code_selector(&hello.attempt) == code.selector()
}

impl MemberPairing {
    /// Starts an attempt: returns the state and the hello to send.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        rng: &mut (impl RngCore + CryptoRng),
        account: &str,
        member_id: &DeviceId,
        member_cert: &Certificate,
        joiner_id: &DeviceId,
        joiner_cert: Certificate,
        code: &PairingCode,
    ) -> (MemberPairing, PairHello) {
        // The attempt id names the code's first digit (PROTOCOL 9.1), so a
        // joiner with hellos from two members answers the right one.
        let attempt = loop {
            let id = RandomId::random(rng);
            if code_selector(&id) == code.selector() {
                break id;
            }
        };
        let (pake, msg) = pake_start(
            rng,
            PakeRole::Member,
            code,
            member_id.as_str(),
            joiner_id.as_str(),
        );
        let hello = PairHello {
            attempt: attempt.clone(),
            account: account.to_owned(),
            member_id: member_id.clone(),
            joiner_id: joiner_id.clone(),
            member_cert: member_cert.to_armored(),
            spake: msg.clone(),
        };
        (
            MemberPairing {
                attempt,
                // Compared and hashed lower-cased on both sides.
                account: account.to_lowercase(),
                member_id: member_id.clone(),
                member_fpr: member_cert.fingerprint(),
                joiner_id: joiner_id.clone(),
                joiner_cert,
                msg_member: msg,
                pake,
            },
            hello,
        )
    }

    /// The attempt id.
    pub fn attempt(&self) -> &RandomId {
        &self.attempt
    }

    /// Handles the joiner's reply. Consumes the state: whatever the outcome,
    /// the code is spent. `Err(CodeRejected)` means the code was wrong.
    pub fn on_reply(self, reply: &PairReply) -> Result<MemberConfirmed, ProtoError> {
        if reply.attempt != self.attempt
            || reply.member_id != self.member_id
            || reply.joiner_id != self.joiner_id
        {
            return Err(PeerMisbehaved::EnvelopeMismatch("pairing attempt").into());
        }
        let reply_cert = Certificate::from_armored(&reply.joiner_cert)?;
        if reply_cert.fingerprint() != self.joiner_cert.fingerprint() {
            return Err(PeerMisbehaved::EnvelopeMismatch("joiner certificate").into());
        }
        let transcript = Transcript {
            account: self.account,
            attempt: self.attempt.to_string(),
            member_id: self.member_id.to_string(),
            joiner_id: self.joiner_id.to_string(),
            member_fpr: self.member_fpr,
            joiner_fpr: self.joiner_cert.fingerprint(),
            msg_member: self.msg_member,
            msg_joiner: reply.spake.clone(),
        };
        let keys = self
            .pake
            .finish(&reply.spake, &transcript)
            .map_err(|_| ProtoError::CodeRejected)?;
        keys.verify_tag(PakeRole::Joiner, &transcript, &reply.confirm)
            .map_err(|_| ProtoError::CodeRejected)?;
        Ok(MemberConfirmed {
            attempt: self.attempt,
            keys,
            transcript,
            joiner_id: self.joiner_id,
            joiner_cert: self.joiner_cert,
        })
    }
}

impl MemberConfirmed {
    /// The joiner, now authenticated.
    pub fn joiner(&self) -> (&DeviceId, &Certificate) {
        (&self.joiner_id, &self.joiner_cert)
    }

    /// Builds the key confirmation and the sealed welcome, followed by its
    /// continuation parts when the keyring and log are large (PROTOCOL 9.4).
    ///
    /// The welcome and each part are signed by our device key and encrypted
    /// to the joiner's device certificate (the one bound into the
    /// transcript), then sealed under the pairing session key: opening them
    /// needs both the code and the joiner's device key, so someone who
    /// merely learnt the code cannot.
    pub fn finish(
        self,
        rng: &mut (impl RngCore + CryptoRng),
        welcome: &Welcome,
        member_key: &DeviceKey,
    ) -> Result<(PairConfirm, Vec<PairWelcome>), ProtoError> {
        let confirm = PairConfirm {
            attempt: self.attempt.clone(),
            confirm: self
                .keys
                .confirm_tag(PakeRole::Member, &self.transcript)
                .to_vec(),
        };
        let (welcome, parts) = welcome_parts::split(welcome.clone(), welcome_parts::PART_BUDGET)?;
        let mut out = vec![self.seal(rng, member_key, None, &payload::to_json(&welcome))?];
        for part in &parts {
            out.push(self.seal(rng, member_key, Some(part.index), &payload::to_json(part))?);
        }
        Ok((confirm, out))
    }

    /// Seals one welcome message (the welcome, or part `part`).
    fn seal(
        &self,
        rng: &mut (impl RngCore + CryptoRng),
        member_key: &DeviceKey,
        part: Option<u32>,
        json: &[u8],
    ) -> Result<PairWelcome, ProtoError> {
        let inner = sma_crypto::seal_bytes(
            rng,
            member_key,
            &[&self.joiner_cert],
            json,
            sma_crypto::SigContext::Welcome,
        )?;
        Ok(PairWelcome {
            attempt: self.attempt.clone(),
            part,
            sealed: self.keys.seal_welcome(rng, &self.transcript, &inner),
        })
    }
}

/// Joiner side, after replying, waiting for the member's confirmation.
pub struct JoinerPairing {
    attempt: RandomId,
    member_id: DeviceId,
    member_cert: Certificate,
    keys: PairingKeys,
    transcript: Transcript,
}

/// Proof that the member confirmed the session key: needed to open the welcome.
pub struct JoinerConfirmed {
    inner: JoinerPairing,
}

impl JoinerPairing {
    /// Answers a hello with the typed code. The hello must name us and our account.
    pub fn respond(
        rng: &mut (impl RngCore + CryptoRng),
        account: &str,
        joiner_id: &DeviceId,
        joiner_cert: &Certificate,
        hello: &PairHello,
        code: &PairingCode,
    ) -> Result<(JoinerPairing, PairReply), ProtoError> {
        if &hello.joiner_id != joiner_id {
            return Err(PeerMisbehaved::WrongRecipient.into());
        }
        if !hello.account.eq_ignore_ascii_case(account) {
            return Err(PeerMisbehaved::EnvelopeMismatch("account").into());
        }
        let member_cert = Certificate::from_armored(&hello.member_cert)?;
        let (pake, msg) = pake_start(
            rng,
            PakeRole::Joiner,
            code,
            hello.member_id.as_str(),
            joiner_id.as_str(),
        );
        let transcript = Transcript {
            account: account.to_lowercase(),
            attempt: hello.attempt.to_string(),
            member_id: hello.member_id.to_string(),
            joiner_id: joiner_id.to_string(),
            member_fpr: member_cert.fingerprint(),
            joiner_fpr: joiner_cert.fingerprint(),
            msg_member: hello.spake.clone(),
            msg_joiner: msg.clone(),
        };
        let keys = pake
            .finish(&hello.spake, &transcript)
            .map_err(|_| ProtoError::CodeRejected)?;
        let reply = PairReply {
            attempt: hello.attempt.clone(),
            member_id: hello.member_id.clone(),
            joiner_id: joiner_id.clone(),
            joiner_cert: joiner_cert.to_armored(),
            spake: msg,
            confirm: keys.confirm_tag(PakeRole::Joiner, &transcript).to_vec(),
        };
        Ok((
            JoinerPairing {
                attempt: hello.attempt.clone(),
                member_id: hello.member_id.clone(),
                member_cert,
                keys,
                transcript,
            },
            reply,
        ))
    }

    /// The attempt id.
    pub fn attempt(&self) -> &RandomId {
        &self.attempt
    }

    /// The member we are pairing with.
    pub fn member(&self) -> (&DeviceId, &Certificate) {
        (&self.member_id, &self.member_cert)
    }

    /// Checks the member's key confirmation. A wrong tag means the codes differed.
    pub fn on_confirm(self, confirm: &PairConfirm) -> Result<JoinerConfirmed, ProtoError> {
        if confirm.attempt != self.attempt {
            return Err(PeerMisbehaved::EnvelopeMismatch("pairing attempt").into());
        }
        self.keys
            .verify_tag(PakeRole::Member, &self.transcript, &confirm.confirm)
            .map_err(|_| ProtoError::CodeRejected)?;
        Ok(JoinerConfirmed { inner: self })
    }
}

impl JoinerConfirmed {
    /// Opens the welcome: the session-key seal, then the OpenPGP layer
    /// (encrypted to our device key, signed by the member's device key).
    pub fn open_welcome(
        &self,
        welcome: &PairWelcome,
        joiner_key: &DeviceKey,
    ) -> Result<Welcome, ProtoError> {
        if welcome.part.is_some() {
            return Err(PeerMisbehaved::EnvelopeMismatch("welcome part").into());
        }
        Ok(payload::from_json(&self.open(welcome, joiner_key)?)?)
    }

    /// Opens a continuation part of the welcome (PROTOCOL 9.4); its index
    /// must be the one its message names.
    pub fn open_part(
        &self,
        message: &PairWelcome,
        joiner_key: &DeviceKey,
    ) -> Result<WelcomePart, ProtoError> {
        let Some(index) = message.part else {
            return Err(PeerMisbehaved::EnvelopeMismatch("welcome part").into());
        };
        let part: WelcomePart = payload::from_json(&self.open(message, joiner_key)?)?;
        if part.index != index {
            return Err(PeerMisbehaved::EnvelopeMismatch("welcome part index").into());
        }
        Ok(part)
    }

    /// Opens one welcome message: the session-key seal, then the OpenPGP
    /// layer; returns the JSON.
    fn open(&self, welcome: &PairWelcome, joiner_key: &DeviceKey) -> Result<Vec<u8>, ProtoError> {
        if welcome.attempt != self.inner.attempt {
            return Err(PeerMisbehaved::EnvelopeMismatch("pairing attempt").into());
        }
        let plain = self
            .inner
            .keys
            .open_welcome(&self.inner.transcript, &welcome.sealed)
            .map_err(PeerMisbehaved::Crypto)?;
        let json = sma_crypto::open_bytes(
            joiner_key,
            &self.inner.member_cert,
            &plain,
            MAX_WELCOME_PLAINTEXT,
            sma_crypto::SigContext::Welcome,
        )
        .map_err(PeerMisbehaved::Crypto)?;
        Ok(json.to_vec())
    }

    /// The member we paired with.
    pub fn member(&self) -> (&DeviceId, &Certificate) {
        self.inner.member()
    }

    /// The attempt id.
    pub fn attempt(&self) -> &RandomId {
        &self.inner.attempt
    }
}
