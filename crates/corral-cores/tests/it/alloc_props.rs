//! Property tests of the allocator against a model of which cores are held: no core is in
//! two leases, a count request succeeds exactly when a long enough free run exists (and takes
//! the lowest one), an explicit request (consecutive or not) succeeds exactly when its cores
//! are free, and readers see what the model says.

use corral_cores::{CoreRange, CoreSet, Lease, Request};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Num(usize),
    Visible(Vec<usize>),
    All,
    Release(usize),
}

fn op(cores: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..=cores).prop_map(Op::Num),
        2 => (0..cores, 1..=cores).prop_map(move |(first, count)| Op::Visible((first..cores).take(count).collect())),
        1 => prop::collection::vec(0..cores, 1..=cores).prop_map(Op::Visible),
        1 => Just(Op::All),
        3 => any::<usize>().prop_map(Op::Release),
    ]
}

fn first_free_run(held: &[bool], count: usize) -> Option<usize> {
    (0..=held.len().saturating_sub(count))
        .find(|&start| start + count <= held.len() && held[start..start + count].iter().all(|h| !h))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn allocator_matches_model((cores, ops) in (1usize..=10).prop_flat_map(|n| (Just(n), prop::collection::vec(op(n), 1..24)))) {
        let (_dir, registry) = super::registry(&format!("sim:{cores}"));
        let mut held = vec![false; cores];
        let mut leases: Vec<Lease> = Vec::new();
        for op in ops {
            let (request, expected) = match op {
                Op::Num(n) => (Request::num(n), first_free_run(&held, n).map(|s| CoreSet::from(CoreRange::new(s, n)))),
                Op::Visible(indices) => {
                    let set = CoreSet::from_indices(indices).expect("never empty");
                    let free = set.iter().all(|i| !held[i]);
                    (Request::visible(set.clone()), free.then_some(set))
                }
                Op::All => (Request::all(), held.iter().all(|h| !h).then(|| CoreSet::from(CoreRange::new(0, cores)))),
                Op::Release(i) => {
                    if !leases.is_empty() {
                        let lease = leases.swap_remove(i % leases.len());
                        for core in lease.cores().iter() {
                            held[core] = false;
                        }
                    }
                    continue;
                }
            };
            match registry.acquire(&request) {
                Ok(lease) => {
                    prop_assert_eq!(Some(lease.cores()), expected.clone(), "granted {:?}", request);
                    for core in lease.cores().iter() {
                        prop_assert!(!held[core], "nc{} granted twice", core);
                        held[core] = true;
                    }
                    leases.push(lease);
                }
                Err(err) => prop_assert_eq!(expected, None, "refused {:?}: {}", request, err),
            }
            let status = registry.status().expect("status");
            let seen: Vec<bool> = status.iter().map(|c| !c.is_free()).collect();
            prop_assert_eq!(&seen, &held);
        }
    }
}
