//! One rule, one implementation: the autopilot's view of a model (its bounds, pinned or not,
//! its instances, its demand) is the same whichever driver builds it. The same models are
//! loaded into a runtime and given to the planner's simulator as `corral plan --predict`
//! gives them (a model placed by group with its count as its bounds), and each driver's view
//! (`Model::autopilot_view`, `simulate::first_views`) must be the other's: default bounds,
//! bounds cut to what fits, `min = max`, and groups, each pinned or not alike.

use corral_plan::simulate::{ModelSpec, Service, Spec, first_views};
use corral_runtime::{CoreSpan, Demand, ModelDef, Where, group_context};

use super::{runtime, sim};

/// (name, K, placement, the bounds asked)
type Row = (&'static str, usize, Where, Option<(usize, usize)>);

fn rows() -> Vec<Row> {
    vec![
        ("a-default", 1, Where::Starts(vec![0, 1]), None),
        ("b-gang", 2, Where::Starts(vec![2]), Some((1, 2))),
        ("c-only-min", 1, Where::Starts(vec![4]), Some((2, usize::MAX))),
        ("d-min-is-max", 1, Where::Starts(vec![5]), Some((1, 1))),
        ("e-cut", 2, Where::Starts(vec![6]), Some((3, 9))),
        ("f-group", 1, Where::Group(0), None),
        ("g-group-with-bounds", 1, Where::Group(1), Some((1, 8))),
    ]
}

#[test]
fn the_runtime_and_the_simulator_see_the_same_models_the_same_way() {
    let (_dir, runtime) = runtime("sim:8", None, Some("4,4"));
    let rows = rows();
    let models: Vec<_> = rows
        .iter()
        .map(|(name, k, at, bounds)| {
            let mut def = ModelDef::sim(*name, sim(10, 0)).cores(*k);
            def.autopilot = *bounds;
            // A group is named by the thread's context, as a Neuron program names it.
            let _ctx = match at {
                Where::Group(group) => Some(group_context(*group)),
                _ => None,
            };
            if !matches!(at, Where::Group(_)) {
                def = def.at(at.clone());
            }
            runtime.load(def).expect("loads")
        })
        .collect();
    // As `corral plan --predict` gives them (corral-cli's `planning::model_spec`).
    let spec = Spec {
        cores: runtime.cores(),
        exec_timeout: 30.0,
        queue_len_max: 1024,
        run_max: 8,
        models: rows
            .iter()
            .zip(&models)
            .map(|((name, k, at, bounds), model)| {
                let instances = model.instances();
                ModelSpec {
                    name: (*name).to_owned(),
                    cores_per_instance: *k,
                    bounds: *bounds,
                    grouped: matches!(at, Where::Group(_)),
                    instances,
                    elastic: false,
                    service: Service::Fixed { latency: 0.010, switch: 0.0 },
                }
            })
            .collect(),
        autopilot: Some(0.5),
    };
    let demands: Vec<Demand> =
        (0..rows.len()).map(|m| Demand { now: 0.3 * m as f64, peak: 0.3 * m as f64 + 0.1 }).collect();
    let simulated = first_views(&spec, &demands);
    for (m, model) in models.iter().enumerate() {
        let view = model.autopilot_view(Some(demands[m]));
        assert_eq!(view, simulated[m], "{}: the runtime's view, then the simulator's", rows[m].0);
    }
    let pinned: Vec<&str> =
        models.iter().filter(|m| m.autopilot_view(Some(demands[0])).pinned()).map(|m| m.name()).collect();
    assert_eq!(pinned, ["d-min-is-max", "f-group", "g-group-with-bounds"], "min = max, and groups");
    let bounds: Vec<(usize, usize)> = models.iter().map(|m| (m.bounds().min, m.bounds().max)).collect();
    assert_eq!(bounds, [(1, 8), (1, 2), (2, 8), (1, 1), (3, 4), (1, 1), (1, 1)], "defaults, cuts and groups");
    // Without the autopilot's turn (cores that left force moves) every model keeps its count.
    let kept = models[0].autopilot_view(None);
    assert_eq!((kept.min, kept.max, kept.pinned()), (2, 2, true));
    assert_eq!(kept.instances, simulated[0].instances);
    assert_eq!(kept.instances.iter().map(|i| i.span).collect::<Vec<_>>(), [CoreSpan::new(0, 1), CoreSpan::new(1, 1)]);
}
