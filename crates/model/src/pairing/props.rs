//! The properties of the pairing model.

use stateright::Property;

use super::{Author, JoinerSide, Kind, MemberSide, PairWorld, Pairing};

/// Every property of the pairing model.
pub(super) fn all() -> Vec<Property<Pairing>> {
    vec![
        Property::always(
            "P admits J only after verifying a reply made with the right code",
            |_: &Pairing, w: &PairWorld| match &w.member {
                MemberSide::Admitted(reply) => reply.author != Author::Guess,
                _ => true,
            },
        ),
        Property::always(
            "P reveals its key confirmation and the welcome only after verifying J's",
            |_: &Pairing, w: &PairWorld| {
                let revealed = w.seen.iter().any(|m| {
                    m.author == Author::Member && matches!(m.kind, Kind::Confirm | Kind::Welcome)
                });
                !revealed || matches!(w.member, MemberSide::Admitted(_))
            },
        ),
        Property::always(
            "J joins only P's group, after verifying P's key confirmation",
            |_: &Pairing, w: &PairWorld| match &w.joiner {
                JoinerSide::Joined(hello) => {
                    hello.author == Author::Member && matches!(w.member, MemberSide::Admitted(_))
                }
                _ => true,
            },
        ),
        Property::always(
            "one code, one try: P verifies one reply, and a wrong one burns the code",
            |_: &Pairing, w: &PairWorld| w.replies_tried <= 1 && burnt_means_nothing_sent(w),
        ),
        Property::always(
            "the attacker never opens a welcome, even with the stolen code",
            |_: &Pairing, w: &PairWorld| w.attacker.opened != Some(true),
        ),
        Property::always(
            "a guess tested against J's answer costs J's attempt",
            |_: &Pairing, w: &PairWorld| {
                w.attacker.tested.is_none() || !matches!(w.joiner, JoinerSide::Joined(_))
            },
        ),
        Property::sometimes("J joins", |_: &Pairing, w: &PairWorld| {
            matches!(w.joiner, JoinerSide::Joined(_))
        }),
        Property::sometimes(
            "an injected guess burns P's code",
            |_: &Pairing, w: &PairWorld| matches!(&w.member, MemberSide::Burnt(r) if r.author == Author::Guess),
        ),
        Property::sometimes(
            "the stolen code admits J's key, and the attacker cannot open the welcome",
            |_: &Pairing, w: &PairWorld| w.attacker.confirmed && w.attacker.opened == Some(false),
        ),
        Property::sometimes(
            "the attacker tests one guess against J's answer",
            |_: &Pairing, w: &PairWorld| w.attacker.tested == Some(false),
        ),
    ]
}

/// A burnt code produced no confirmation and no welcome.
fn burnt_means_nothing_sent(w: &PairWorld) -> bool {
    !matches!(w.member, MemberSide::Burnt(_))
        || !w
            .seen
            .iter()
            .any(|m| m.author == Author::Member && m.kind != Kind::Hello)
}
