//! Invariants of placement over random layouts and requests: instances of one load never
//! overlap, every instance has exactly K cores, and every instance lies inside the process.

use corral_placement::{Layout, Where};
use proptest::prelude::*;

fn request(cores: usize) -> impl Strategy<Value = Where> {
    prop_oneof![
        Just(Where::Auto),
        Just(Where::Multicore),
        (0..cores + 1, proptest::option::of(1..cores + 2)).prop_map(|(s, c)| Where::Cores { start: Some(s), count: c }),
        (1..cores + 2).prop_map(|c| Where::Cores { start: None, count: Some(c) }),
    ]
}

proptest! {
    #[test]
    fn placements_are_whole_disjoint_and_inside(
        (cores, loads) in (1usize..=16).prop_flat_map(|n| (Just(n), prop::collection::vec((1usize..=4, request(n)), 1..12)))
    ) {
        let mut layout = Layout::new(cores, &[]);
        for (i, (k, at)) in loads.into_iter().enumerate() {
            let Ok(placement) = layout.place(&format!("m{i}"), k, &at) else { continue };
            prop_assert!(!placement.instances.is_empty());
            for (a, span) in placement.instances.iter().enumerate() {
                prop_assert_eq!(span.count, k);
                prop_assert!(span.end() <= cores, "{} outside {} cores", span, cores);
                for other in &placement.instances[a + 1..] {
                    prop_assert!(!span.overlaps(other), "{} overlaps {}", span, other);
                }
            }
            layout.commit(&placement);
        }
    }
}
