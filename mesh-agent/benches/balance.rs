//! Cost of choosing an endpoint and reporting the call: `pick()` + `finish()`, the work the
//! proxy adds to every request. Small sample sizes keep the whole run to a few seconds.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_agent::balance::{Algorithm, Balancers, CallOutcome, Config, hash_key};

fn endpoints(n: u16) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 8080)))
        .collect()
}

fn pick_and_finish(c: &mut Criterion) {
    let balancers = Balancers::new();
    let ok = CallOutcome::Success {
        latency: Duration::from_millis(3),
    };
    for n in [3, 100] {
        let eps = endpoints(n);
        let balancer = balancers.get(&format!("bench/p2c-{n}:80"), &eps, &Config::default());
        c.bench_function(&format!("p2c_ewma/{n}_endpoints"), |b| {
            b.iter(|| {
                let pick = balancer.pick(None).expect("endpoints");
                black_box(pick.addr());
                pick.finish(ok);
            })
        });
    }

    let eps = endpoints(100);
    let config = Config {
        algorithm: Algorithm::ConsistentHash,
        ..Config::default()
    };
    let balancer = balancers.get("bench/hash:80", &eps, &config);
    let keys: Vec<u64> = (0..1024u32).map(|i| hash_key(&i.to_le_bytes())).collect();
    let mut next = 0;
    c.bench_function("consistent_hash/100_endpoints", |b| {
        b.iter(|| {
            next = (next + 1) % keys.len();
            let pick = balancer.pick(Some(keys[next])).expect("endpoints");
            black_box(pick.addr());
            pick.finish(ok);
        })
    });

    // The registry lookup the proxy does per request when nothing changed.
    c.bench_function("balancers_get/100_endpoints", |b| {
        b.iter(|| black_box(balancers.get("bench/hash:80", &eps, &config)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(600));
    targets = pick_and_finish
}
criterion_main!(benches);
