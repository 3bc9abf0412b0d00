//! Hooks for benchmarks and tests that need many keyring changes quickly.
//!
//! Mail programs feed the keyring through the Autocrypt observation API;
//! these hooks skip the header parsing and record [`PeerState`]s directly,
//! exactly as a local change: HLC-stamped, merged into the group state,
//! queued in the sync log for every peer, and saved.

use sma_proto::state::{Change, PeerState};

use crate::device::Device;
use crate::error::Result;

impl Device {
    /// Records one correspondent state as a local keyring op and saves the
    /// protocol state (one store transaction per call, like every other
    /// local change). A benchmark and test hook.
    pub fn record_peer_state(&mut self, peer: PeerState) -> Result<()> {
        self.require_member()?;
        let now_ms = self.now_ms();
        self.member.change(now_ms, Change::Peer(peer));
        self.save()
    }

    /// Records many correspondent states as local keyring ops (one op each)
    /// and saves the protocol state once. Returns how many were recorded. A
    /// benchmark and test hook.
    pub fn record_peer_states(
        &mut self,
        peers: impl IntoIterator<Item = PeerState>,
    ) -> Result<usize> {
        self.require_member()?;
        let mut n = 0;
        for peer in peers {
            let now_ms = self.now_ms();
            self.member.change(now_ms, Change::Peer(peer));
            n += 1;
        }
        self.save()?;
        Ok(n)
    }
}
