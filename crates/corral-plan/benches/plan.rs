//! The planner's figures, printed as tables (run with `cargo bench -p corral-plan --bench
//! plan`; `bench/plan.sh` runs it with the measured ones):
//!
//! 1. SLO attainment (the share of calls answered within twice the model's latency, failed
//!    calls missing it), AlpaServe-style, of the seeds' four FlexEG models on
//!    `sim:inf1.6xlarge`: the optimised layout against the best of 200 random valid layouts
//!    (best at each point) and the seeds' good layout, as the load rises at CV 1 and as the CV
//!    rises at a fixed load; and the same for eight single-core models on 16 cores, replicas
//!    only against the optimised layout with elastic instances.
//! 2. Time to a layout: `optimize` and a 60-second `simulate` of 16 models on 64 cores.

use std::time::Instant;

use corral_dispatch::CoreSpan;
use corral_plan::{
    arrivals::{Rng, schedule},
    optimize::{Demand, optimize},
    simulate::{ModelSpec, Service, Spec, simulate},
};

const SEED: u64 = 0;

struct Model {
    name: &'static str,
    k: usize,
    latency: f64,
    switch: f64,
}

/// One layout: each model's instance starts, and elastic flags.
type Layout = (Vec<Vec<usize>>, Vec<bool>);

fn spec(cores: usize, models: &[Model], layout: &Layout) -> Spec {
    let models = models
        .iter()
        .zip(&layout.0)
        .zip(&layout.1)
        .map(|((m, starts), &elastic)| ModelSpec {
            name: m.name.to_owned(),
            cores_per_instance: m.k,
            instances: starts.iter().map(|&s| CoreSpan::new(s, m.k)).collect(),
            elastic,
            service: Service::Fixed { latency: m.latency, switch: m.switch },
            bounds: None,
            grouped: false,
        })
        .collect();
    Spec { cores, exec_timeout: 30.0, queue_len_max: 1024, run_max: 8, models, autopilot: None }
}

/// The share of calls within twice their model's latency.
fn attainment(cores: usize, models: &[Model], layout: &Layout, rates: &[f64], cv: f64, duration: f64) -> f64 {
    let spec = spec(cores, models, layout);
    let arrivals = schedule(rates, cv, SEED, duration);
    let run = simulate(&spec, &arrivals, SEED);
    let (mut good, mut all) = (0usize, 0usize);
    for (m, calls) in run.calls.iter().enumerate() {
        for call in calls {
            all += 1;
            if call.failure.is_none() && call.end - call.arrival <= 2.0 * models[m].latency + 1e-9 {
                good += 1;
            }
        }
    }
    if all == 0 { 1.0 } else { good as f64 / all as f64 }
}

/// A random layout with every model at least once, no core shared, instances anywhere.
fn random_layout(cores: usize, models: &[Model], rng: &mut Rng) -> Layout {
    loop {
        let mut free = vec![true; cores];
        let mut starts = vec![Vec::new(); models.len()];
        let mut order: Vec<usize> = (0..models.len()).collect();
        // Every model once, in a random order, then random extra instances.
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let extra = rng.next_u64() % 16;
        order.extend((0..extra).map(|_| (rng.next_u64() % models.len() as u64) as usize));
        for &m in &order {
            let k = models[m].k;
            let fits: Vec<usize> = (0..=cores - k).filter(|&s| (s..s + k).all(|c| free[c])).collect();
            if fits.is_empty() {
                continue;
            }
            let s = fits[(rng.next_u64() % fits.len() as u64) as usize];
            (s..s + k).for_each(|c| free[c] = false);
            starts[m].push(s);
        }
        if starts.iter().all(|s| !s.is_empty()) {
            for s in &mut starts {
                s.sort_unstable();
            }
            return (starts, vec![false; models.len()]);
        }
    }
}

fn optimized(cores: usize, models: &[Model], rates: &[f64], elastic: bool) -> Layout {
    let demands: Vec<Demand> = models
        .iter()
        .zip(rates)
        .map(|(m, &rate)| Demand { name: m.name.to_owned(), cores_per_instance: m.k, service: m.latency, rate })
        .collect();
    let plan = optimize(&demands, cores, elastic).expect("fits");
    (plan.models.iter().map(|p| p.starts.clone()).collect(), plan.models.iter().map(|p| p.elastic).collect())
}

fn row(cells: &[String]) {
    println!("| {} |", cells.join(" | "));
}

fn main() {
    let flexeg = [
        Model { name: "A", k: 2, latency: 0.010, switch: 0.005 },
        Model { name: "B", k: 4, latency: 0.010, switch: 0.005 },
        Model { name: "C", k: 3, latency: 0.010, switch: 0.005 },
        Model { name: "D", k: 4, latency: 0.010, switch: 0.005 },
    ];
    let mut rng = Rng::new(SEED, 99);
    let randoms: Vec<Layout> = (0..200).map(|_| random_layout(16, &flexeg, &mut rng)).collect();
    let seeds_good: Layout = (vec![vec![0], vec![2], vec![6], vec![9]], vec![false; 4]);
    // Skewed demand: A gets half the calls.
    let mix = [0.5, 0.2, 0.15, 0.15];
    let duration = 30.0;
    println!("## SLO attainment (calls within 2x latency), FlexEG A B C D (K 2 4 3 4, 10 ms) on sim:inf1.6xlarge\n");
    println!("Demand split A 50%, B 20%, C 15%, D 15%; {duration} simulated seconds, seed {SEED}.\n");
    println!("### Rising load, CV 1\n");
    row(&["calls/s in all".into(), "optimised".into(), "best of 200 random".into(), "seeds' good layout".into()]);
    row(&["---".into(), "---".into(), "---".into(), "---".into()]);
    for total in [100.0, 200.0, 300.0, 400.0, 500.0, 600.0] {
        let rates: Vec<f64> = mix.iter().map(|f| f * total).collect();
        let opt = attainment(16, &flexeg, &optimized(16, &flexeg, &rates, false), &rates, 1.0, duration);
        let best = randoms.iter().map(|l| attainment(16, &flexeg, l, &rates, 1.0, duration)).fold(0.0, f64::max);
        let good = attainment(16, &flexeg, &seeds_good, &rates, 1.0, duration);
        row(&[format!("{total}"), format!("{:.3}", opt), format!("{:.3}", best), format!("{:.3}", good)]);
    }
    println!("\n### Rising burstiness, 300 calls/s in all\n");
    row(&["CV".into(), "optimised".into(), "best of 200 random".into(), "seeds' good layout".into()]);
    row(&["---".into(), "---".into(), "---".into(), "---".into()]);
    let rates: Vec<f64> = mix.iter().map(|f| f * 300.0).collect();
    let opt_layout = optimized(16, &flexeg, &rates, false);
    for cv in [1.0, 2.0, 4.0, 8.0] {
        let opt = attainment(16, &flexeg, &opt_layout, &rates, cv, duration);
        let best = randoms.iter().map(|l| attainment(16, &flexeg, l, &rates, cv, duration)).fold(0.0, f64::max);
        let good = attainment(16, &flexeg, &seeds_good, &rates, cv, duration);
        row(&[format!("{cv}"), format!("{:.3}", opt), format!("{:.3}", best), format!("{:.3}", good)]);
    }

    let singles: Vec<Model> = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"]
        .into_iter()
        .map(|name| Model { name, k: 1, latency: 0.010, switch: 0.0 })
        .collect();
    println!("\n## Replicas only vs elastic instances: 8 single-core models of 10 ms on 16 cores, CV 1\n");
    println!("(A simulated core runs a wide call at the single-core latency: `sim` models declare no speedup, so");
    println!("elastic instances can only cost here; the figure shows that cost, not a gain.)\n");
    row(&["calls/s per model".into(), "replicas only".into(), "elastic".into()]);
    row(&["---".into(), "---".into(), "---".into()]);
    for per_model in [5.0, 20.0, 50.0, 100.0] {
        let rates = vec![per_model; singles.len()];
        let plain = attainment(16, &singles, &optimized(16, &singles, &rates, false), &rates, 1.0, duration);
        let elastic = attainment(16, &singles, &optimized(16, &singles, &rates, true), &rates, 1.0, duration);
        row(&[format!("{per_model}"), format!("{:.3}", plain), format!("{:.3}", elastic)]);
    }

    println!("\n## Time to a layout: 16 models on 64 cores (sim:inf1.24xlarge)\n");
    let big: Vec<Model> = (0..16)
        .map(|i| Model {
            name: Box::leak(format!("m{i:02}").into_boxed_str()),
            k: 1 + i % 4,
            latency: 0.002 + 0.001 * (i % 5) as f64,
            switch: 0.001,
        })
        .collect();
    let rates: Vec<f64> = (0..16).map(|i| 50.0 + 25.0 * (i % 4) as f64).collect();
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let layout = optimized(64, &big, &rates, false);
        let optimize_s = started.elapsed().as_secs_f64();
        let spec = spec(64, &big, &layout);
        let arrivals = schedule(&rates, 1.0, SEED, 60.0);
        let run = simulate(&spec, &arrivals, SEED);
        let calls: usize = run.calls.iter().map(Vec::len).sum();
        times.push((optimize_s, started.elapsed().as_secs_f64(), calls));
    }
    times.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (optimize_s, total_s, calls) = times[times.len() / 2];
    row(&["step".into(), "median of 5 (s)".into()]);
    row(&["---".into(), "---".into()]);
    row(&["optimize".into(), format!("{optimize_s:.4}")]);
    row(&[format!("optimize + predict (60 s simulated, {calls} calls)"), format!("{total_s:.4}")]);
}
