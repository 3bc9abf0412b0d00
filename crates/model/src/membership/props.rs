//! The properties checked on every reachable state of the membership model.

use std::collections::BTreeSet;

use sma_proto::state::MemberStatus;
use stateright::Property;

use super::{Membership, Slot, World};
use crate::keys::Dev;

/// Name of the convergence property (the mutant test looks it up).
pub const CONVERGED: &str =
    "at quiescence with fair delivery, live members hold the same membership and account key";

/// Every property of the membership model.
pub(super) fn all() -> Vec<Property<Membership>> {
    vec![
        Property::always(
            "only devices paired with the right code become members",
            |_: &Membership, w: &World| only_paired(w),
        ),
        Property::always(
            "a removal that a device learnt is never undone",
            |_: &Membership, w: &World| never_undone(w),
        ),
        Property::always(
            "nothing is sealed to a device after the sealer learnt its removal",
            |_: &Membership, w: &World| w.ghost.sealed_to_removed.is_none(),
        ),
        Property::always(
            "no device stops without an authenticated removal",
            |_: &Membership, w: &World| stops_only_when_removed(w),
        ),
        Property::always(CONVERGED, |_: &Membership, w: &World| {
            !w.settled || !fair(w) || converged(w)
        }),
        Property::always(
            "at quiescence with fair delivery, a removed device that knows its remover has stopped",
            |_: &Membership, w: &World| !w.settled || !fair(w) || removed_stopped(w),
        ),
        Property::sometimes(
            "J joins and every live member lists it",
            |_: &Membership, w: &World| {
                w.settled
                    && w.slot(Dev::J).running().is_some()
                    && w.live_members()
                        .iter()
                        .all(|(_, n)| n.status_of(Dev::J) == Some(MemberStatus::Active))
            },
        ),
        Property::sometimes(
            "a removal completes (every member acknowledged it) and C stops",
            |_: &Membership, w: &World| {
                w.ghost.completed.is_some() && matches!(w.slot(Dev::C), Slot::Stopped { .. })
            },
        ),
        Property::sometimes(
            "a removal reaches a member cut off from the remover (relayed)",
            |_: &Membership, w: &World| w.settled && cut_bypassed(w),
        ),
    ]
}

/// Every member record any device holds names a device that paired with
/// the right code (M, whose owner guessed, never appears).
fn only_paired(w: &World) -> bool {
    w.slots.iter().filter_map(Slot::node).all(|n| {
        n.group()
            .members()
            .keys()
            .all(|id| Dev::of(id).is_some_and(|d| w.ghost.paired.contains(&d)))
    })
}

/// A device that learnt of a removal still holds it; once a removal
/// completed, every member that acknowledged it holds it.
fn never_undone(w: &World) -> bool {
    let learnt_kept = Dev::MEMBERS.into_iter().all(|d| {
        w.slot(d)
            .node()
            .is_none_or(|n| w.ghost.learnt[d.index()].is_subset(&n.removed()))
    });
    let completed_kept = w.ghost.completed.as_ref().is_none_or(|acked| {
        acked.iter().all(|d| {
            w.slot(*d)
                .node()
                .is_some_and(|n| w.removed_truth().is_subset(&n.removed()))
        })
    });
    learnt_kept && completed_kept
}

/// A stopped device was removed by the device it names, which committed
/// that removal (or it left).
fn stops_only_when_removed(w: &World) -> bool {
    Dev::MEMBERS.into_iter().all(|d| match w.slot(d) {
        Slot::Stopped { by, .. } => by.is_some_and(|r| w.ghost.removals.contains(&(r, d))),
        _ => true,
    })
}

/// Delivery is fair enough for the convergence claims: no link is cut, or
/// a live member outside the cut link can relay around it: it knows both
/// ends of the link as members (of any status) and both know it.
fn fair(w: &World) -> bool {
    let Some((a, b)) = w.provider.cut else {
        return true;
    };
    let knows = |x: Dev, y: Dev| w.slot(x).node().is_some_and(|n| n.status_of(y).is_some());
    w.live_members().iter().any(|(x, _)| {
        let x = *x;
        x != a && x != b && knows(a, x) && knows(b, x) && knows(x, a) && knows(x, b)
    })
}

/// Live members that are not flagged for having applied ops a removed
/// device wrote after its removal (PROTOCOL 10.5: those keep them, and
/// `status` says so) hold the same membership and account key, and list
/// every removed device as removed.
fn converged(w: &World) -> bool {
    let removed = w.removed_truth();
    let views: BTreeSet<_> = w
        .live_members()
        .iter()
        .filter(|(_, n)| n.core().applied_after_removal().is_empty())
        .map(|(_, n)| {
            let (members, key) = n.view();
            let knows = removed.is_subset(&n.removed());
            (members, key, knows)
        })
        .collect();
    views.len() <= 1 && views.iter().all(|(_, _, knows)| *knows)
}

/// Every removed device that knows its remover as a member has stopped
/// (it left, or a removal notice reached it). A removed device that never
/// learnt of its remover's admission cannot verify the removal ops a notice
/// carries: it keeps running, unheard by the members, which seal nothing to
/// it (SECURITY.md, "Model check").
fn removed_stopped(w: &World) -> bool {
    w.ghost.removals.iter().all(|(remover, d)| {
        let knows_remover = w
            .slot(*d)
            .node()
            .is_some_and(|n| n.status_of(*remover).is_some());
        !knows_remover || !matches!(w.slot(*d), Slot::Running(_))
    })
}

/// A link from a remover to a live member was cut, and that member knows
/// of the removal all the same.
fn cut_bypassed(w: &World) -> bool {
    let Some((a, b)) = w.provider.cut else {
        return false;
    };
    let from_remover = w.ghost.removals.iter().any(|(r, _)| *r == a);
    let knows = w
        .slot(b)
        .running()
        .is_some_and(|n| w.removed_truth().is_subset(&n.removed()));
    from_remover && !w.removed_truth().contains(&b) && knows
}
