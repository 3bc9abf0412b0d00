//! Which members the final checks leave out of the convergence comparison
//! because they applied ops a removed device wrote after its removal.

use std::collections::{BTreeMap, BTreeSet};

use sma::DeviceId;
use sma_proto::state::MemberStatus;

use crate::world::World;

/// Members that applied ops a removed device wrote after its removal
/// (before they learnt of it): their state keeps those ops, which every
/// other member refuses, and `status` tells them to pair anew. They are
/// left out of the convergence comparison.
///
/// Also those whose record of a removed device carries a higher
/// `final_seq` than another live member's and that hold its ops above the
/// lower one: a second removal, by a member that held more of its ops,
/// raised the removers' max register after they applied those ops, and
/// that removal cannot reach the others (its author was admitted by those
/// very ops), so the engine does not flag them (docs/RELIABILITY.md, open
/// issues: *a second removal's final_seq*). The device's own leave is not
/// excused: it goes into `left_seq` and no longer raises the removers'
/// bound, so the engine must report the members it used to mask.
///
/// Devices in `gone` (removed or departed) are neither judged nor used as
/// the reference: a removed device's own record of another removal is
/// evidence of nothing the live members must agree on.
pub fn tainted(w: &World, gone: &BTreeSet<DeviceId>) -> BTreeSet<DeviceId> {
    let members: Vec<&sma::Device> = w
        .slots
        .iter()
        .filter(|s| s.is_member())
        .filter_map(|s| s.dev.as_ref())
        .filter(|d| !gone.contains(d.id()))
        .collect();
    let mut lowest: BTreeMap<DeviceId, u64> = BTreeMap::new();
    for d in &members {
        for m in d.core().group().members().values() {
            if let (MemberStatus::Removed, Some(f)) = (m.status, m.final_seq) {
                let lo = lowest.entry(m.id.clone()).or_insert(f);
                *lo = (*lo).min(f);
            }
        }
    }
    let masked = |d: &sma::Device| {
        lowest.iter().any(|(x, &lo)| {
            x != d.id()
                && d.core()
                    .group()
                    .member(x)
                    .is_some_and(|m| m.final_seq.is_some_and(|f| f > lo))
                && d.core().book().highest_held(x) > lo
        })
    };
    members
        .iter()
        .filter(|d| !d.core().applied_after_removal().is_empty() || masked(d))
        .map(|d| d.id().clone())
        .collect()
}
