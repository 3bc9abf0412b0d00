//! A welcome too large for one message travels as the welcome itself plus
//! continuation parts that carry the keyring and the relay log (PROTOCOL
//! 9.4): a keyring of 100,000 keys is far over the 16 MiB message cap.

use std::collections::BTreeSet;

use crate::error::{PeerMisbehaved, ProtoError};
use crate::ops::SignedOp;
use crate::payload::{Welcome, WelcomePart};
use crate::state::{Change, PeerState};

/// JSON bytes of keyring entries and log ops a welcome or one part carries
/// at most (an entry or op larger than this alone goes alone): sealed,
/// a part stays well under the 16 MiB cap of a welcome message.
pub const PART_BUDGET: usize = 4 << 20;

/// Most parts a joiner accepts (PART_BUDGET × this bounds a welcome).
pub const MAX_PARTS: u32 = 256;

/// Splits `welcome` when its keyring and log exceed `budget` JSON bytes:
/// the welcome keeps members, account keys, settings and bookkeeping, and
/// the keyring entries and log ops go into parts of at most `budget` bytes
/// each. A welcome within the budget comes back whole, with no parts.
pub fn split(
    mut welcome: Welcome,
    budget: usize,
) -> Result<(Welcome, Vec<WelcomePart>), ProtoError> {
    let peer_len = |p: &PeerState| serde_json::to_vec(p).map_or(0, |v| v.len()) + 1;
    let op_len = |op: &SignedOp| op.wire_len() + 1;
    let total: usize = welcome
        .state
        .keyring()
        .values()
        .map(peer_len)
        .sum::<usize>()
        + welcome.log.iter().map(op_len).sum::<usize>();
    if total <= budget {
        return Ok((welcome, Vec::new()));
    }
    let keyring = welcome.state.take_keyring();
    let log = std::mem::take(&mut welcome.log);
    let mut parts: Vec<WelcomePart> = Vec::new();
    let mut used = budget; // forces a first part
    let mut next = |size: usize, parts: &mut Vec<WelcomePart>| {
        if used + size > budget {
            parts.push(WelcomePart {
                joiner_id: welcome.joiner_id.clone(),
                index: parts.len() as u32,
                keyring: Vec::new(),
                log: Vec::new(),
            });
            used = 0;
        }
        used += size;
    };
    for peer in keyring.into_values() {
        next(peer_len(&peer), &mut parts);
        if let Some(p) = parts.last_mut() {
            p.keyring.push(peer);
        }
    }
    for op in log {
        next(op_len(&op), &mut parts);
        if let Some(p) = parts.last_mut() {
            p.log.push(op);
        }
    }
    if parts.len() > MAX_PARTS as usize {
        return Err(ProtoError::ApiMisuse(format!(
            "the group state needs {} welcome parts, more than the {MAX_PARTS} a joiner accepts",
            parts.len()
        )));
    }
    welcome.parts = parts.len() as u32;
    Ok((welcome, parts))
}

/// Puts a welcome back together from its parts: exactly `welcome.parts`
/// parts, indices 0 … n − 1 once each, all for the welcome's joiner.
pub fn assemble(mut welcome: Welcome, parts: Vec<WelcomePart>) -> Result<Welcome, ProtoError> {
    let wrong = |what| ProtoError::Peer(PeerMisbehaved::rule("welcome part", what));
    if welcome.parts > MAX_PARTS {
        return Err(wrong("announces too many parts"));
    }
    if parts.len() != welcome.parts as usize {
        return Err(wrong("count differs from the welcome's"));
    }
    let mut seen = BTreeSet::new();
    for part in parts {
        if part.joiner_id != welcome.joiner_id {
            return Err(wrong("names another joiner"));
        }
        if part.index >= welcome.parts || !seen.insert(part.index) {
            return Err(wrong("index out of range or repeated"));
        }
        for peer in part.keyring {
            welcome.state.apply(&Change::Peer(peer));
        }
        welcome.log.extend(part.log);
    }
    welcome.parts = 0;
    Ok(welcome)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ids::DeviceId;
    use crate::state::GroupState;

    fn peer(i: usize) -> PeerState {
        let mut p = PeerState::new(&format!("peer{i}@example.org"));
        p.last_seen = 1_000 + i as u64;
        p.public_key = Some("A".repeat(200 + i % 50));
        p
    }

    fn welcome(peers: usize) -> Welcome {
        let mut state = GroupState::default();
        for i in 0..peers {
            state.apply(&Change::Peer(peer(i)));
        }
        Welcome {
            account: "a@example.org".into(),
            member_id: DeviceId::parse("00000000000000aa").unwrap(),
            joiner_id: DeviceId::parse("00000000000000bb").unwrap(),
            state,
            received: BTreeMap::new(),
            peer_applied: BTreeMap::new(),
            log: Vec::new(),
            alive: BTreeMap::new(),
            parts: 0,
        }
    }

    #[test]
    fn a_small_welcome_stays_whole() {
        let (w, parts) = split(welcome(10), PART_BUDGET).unwrap();
        assert!(parts.is_empty());
        assert_eq!(w.parts, 0);
        assert_eq!(w.state.keyring().len(), 10);
    }

    #[test]
    fn a_large_keyring_splits_within_the_budget_and_reassembles_equal() {
        let original = welcome(500);
        let budget = 20_000;
        let (w, parts) = split(original.clone(), budget).unwrap();
        assert!(parts.len() > 3, "{} parts", parts.len());
        assert_eq!(w.parts as usize, parts.len());
        assert!(w.state.keyring().is_empty());
        for p in &parts {
            let size: usize = p
                .keyring
                .iter()
                .map(|x| serde_json::to_vec(x).unwrap().len() + 1)
                .sum();
            assert!(size <= budget, "part {} holds {size} bytes", p.index);
        }
        // Any order of arrival.
        let mut shuffled = parts.clone();
        shuffled.reverse();
        let back = assemble(w, shuffled).unwrap();
        assert_eq!(back.state, original.state);
        assert_eq!(back.parts, 0);
    }

    #[test]
    fn missing_repeated_or_foreign_parts_are_refused() {
        let (w, parts) = split(welcome(200), 10_000).unwrap();
        assert!(parts.len() >= 2);
        let mut missing = parts.clone();
        missing.pop();
        assert!(assemble(w.clone(), missing).is_err());
        let mut repeated = parts.clone();
        let last = repeated.len() - 1;
        repeated[last] = repeated[0].clone();
        assert!(assemble(w.clone(), repeated).is_err());
        let mut foreign = parts.clone();
        foreign[0].joiner_id = DeviceId::parse("00000000000000cc").unwrap();
        assert!(assemble(w.clone(), foreign).is_err());
        assert!(assemble(w, parts).is_ok());
    }
}
