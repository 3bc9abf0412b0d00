//! Hooks for benchmarks and tests that need many keyring changes quickly.
//!
//! Mail programs feed the keyring through the Autocrypt observation API
//! (`Device::observe_all` and friends in `keys`); this hook skips the
//! Level 1 update and records whole [`PeerState`]s directly, exactly as a
//! local change: HLC-stamped, merged into the group state, queued in the
//! sync log for every peer, and saved once.

use sma_proto::state::{Change, PeerState};

use crate::device::Device;
use crate::error::Result;

impl Device {
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
            let now = self.timestamp();
            self.engine.commit(Change::Peer(peer), now)?;
            n += 1;
        }
        self.save()?;
        Ok(n)
    }
}
