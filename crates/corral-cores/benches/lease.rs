//! Acquire + release of 1 and of 8 cores through the registry (target: median ≤ 1 ms).
//! Each iteration opens, locks, records and releases real lock files in a temporary folder:
//! `cargo bench -p corral-cores --bench lease`.

use corral_cores::{Device, Registry, Request};
use criterion::{Criterion, criterion_group, criterion_main};

fn acquire_release(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let device = Device::open("sim:8".parse().expect("valid")).expect("opens");
    let registry = Registry::open(device, dir.path()).expect("opens");
    let mut group = c.benchmark_group("acquire+release");
    for cores in [1, 8] {
        group.bench_function(format!("{cores} cores, sim:8"), |b| {
            b.iter(|| drop(registry.acquire(&Request::num(cores)).expect("free")));
        });
    }
    // With 7 cores held by someone else, a 1-core request scans past them.
    let _others = registry.acquire(&Request::num(7)).expect("free");
    group.bench_function("1 core after 7 held, sim:8", |b| {
        b.iter(|| drop(registry.acquire(&Request::num(1)).expect("nc7 free")));
    });
    group.finish();
}

criterion_group!(benches, acquire_release);
criterion_main!(benches);
