//! Tests of outlier detection with simulated time.

use std::net::SocketAddr;
use std::time::Duration;

use crate::balance::balancer::{Balancer, CallOutcome};
use crate::balance::{Algorithm, Config};
use crate::resilience::OutlierConfig;
use crate::resilience::clock::Clock;

const SEC: u64 = 1_000_000_000;

fn addrs(n: u8) -> Vec<SocketAddr> {
    (1..=n)
        .map(|i| SocketAddr::from(([10, 0, 3, i], 7070)))
        .collect()
}

fn outlier(percent: u8) -> OutlierConfig {
    OutlierConfig {
        consecutive_5xx: 3,
        consecutive_gateway_errors: 0,
        base_ejection_time: Duration::from_secs(10),
        max_ejection_time: Duration::from_secs(35),
        max_ejection_percent: percent,
    }
}

fn balancer(n: u8, algorithm: Algorithm, outlier: Option<OutlierConfig>) -> Balancer {
    let cfg = Config {
        algorithm,
        outlier,
        ..Config::default()
    };
    Balancer::new(&addrs(n), &cfg, 0)
}

/// Reports `n` outcomes of calls to endpoint `index` at `now`.
fn report(b: &Balancer, index: usize, outcome: CallOutcome, n: u32, now: u64) {
    let shared = b.shared();
    for _ in 0..n {
        shared.record(index, outcome, &mut Clock::at(now));
    }
}

fn ejected(b: &Balancer, now: u64) -> Vec<bool> {
    b.endpoints_at(now)
        .iter()
        .map(|s| s.ejected_until.is_some())
        .collect()
}

fn picks_reach(b: &Balancer, index: usize, now: u64) -> bool {
    let addr = addrs(10)[index];
    (0..200).any(|_| {
        b.pick_with(None, &mut Clock::at(now))
            .is_some_and(|p| p.addr() == addr)
    })
}

const OK: CallOutcome = CallOutcome::Success {
    latency: Duration::from_millis(5),
};

#[test]
fn consecutive_failures_eject_and_a_success_resets_the_count() {
    fastrand::seed(21);
    let b = balancer(4, Algorithm::RoundRobin, Some(outlier(50)));
    report(&b, 1, CallOutcome::ServerError, 2, SEC);
    report(&b, 1, OK, 1, SEC);
    report(&b, 1, CallOutcome::GatewayError, 2, SEC);
    assert_eq!(ejected(&b, SEC), [false; 4]);
    report(&b, 1, CallOutcome::ServerError, 1, SEC);
    assert_eq!(ejected(&b, SEC), [false, true, false, false]);
    let status = &b.endpoints_at(SEC)[1];
    assert_eq!(status.times_ejected, 1);
    let until = status.ejected_until.expect("ejected");
    assert_eq!(
        until.duration_since(crate::resilience::clock::instant(SEC)),
        Duration::from_secs(10)
    );
    assert!(!picks_reach(&b, 1, 5 * SEC));
    // Back when the time has passed.
    assert!(picks_reach(&b, 1, 11 * SEC));
    assert_eq!(ejected(&b, 11 * SEC), [false; 4]);
}

#[test]
fn gateway_errors_have_their_own_threshold() {
    let cfg = OutlierConfig {
        consecutive_5xx: 0,
        consecutive_gateway_errors: 2,
        ..outlier(50)
    };
    let b = balancer(4, Algorithm::P2cEwma, Some(cfg));
    // A plain 5xx breaks a run of gateway errors, and does not count with 5xx disabled.
    report(&b, 0, CallOutcome::GatewayError, 1, SEC);
    report(&b, 0, CallOutcome::ServerError, 5, SEC);
    report(&b, 0, CallOutcome::GatewayError, 1, SEC);
    assert_eq!(ejected(&b, SEC), [false; 4]);
    report(&b, 0, CallOutcome::GatewayError, 1, SEC);
    assert_eq!(ejected(&b, SEC), [true, false, false, false]);
}

#[test]
fn ejections_double_up_to_the_maximum_and_are_forgiven_over_time() {
    let b = balancer(2, Algorithm::P2cEwma, Some(outlier(100)));
    let mut now = SEC;
    let mut lengths = Vec::new();
    for _ in 0..4 {
        report(&b, 0, CallOutcome::ServerError, 3, now);
        let until = b.endpoints_at(now)[0].ejected_until.expect("ejected");
        let length = until.duration_since(crate::resilience::clock::instant(now));
        lengths.push(length.as_secs());
        // Fails again right after coming back.
        now += length.as_nanos() as u64;
    }
    assert_eq!(lengths, [10, 20, 35, 35]);
    assert_eq!(b.endpoints_at(now)[0].times_ejected, 4);

    // Healthy for a long time: the next ejection is short again.
    now += 1000 * SEC;
    report(&b, 0, CallOutcome::ServerError, 3, now);
    let status = &b.endpoints_at(now)[0];
    assert_eq!(status.times_ejected, 1);
    let until = status.ejected_until.expect("ejected");
    assert_eq!(
        until.duration_since(crate::resilience::clock::instant(now)),
        Duration::from_secs(10)
    );
}

#[test]
fn at_most_the_maximum_share_is_ejected() {
    let b = balancer(10, Algorithm::LeastRequest, Some(outlier(20)));
    for i in 0..10 {
        report(&b, i, CallOutcome::ServerError, 3, SEC);
    }
    let count = ejected(&b, SEC).iter().filter(|e| **e).count();
    assert_eq!(count, 2);
    // When an ejection ends, the next failure of a waiting endpoint takes its place.
    assert_eq!(ejected(&b, 12 * SEC).iter().filter(|e| **e).count(), 0);
    report(&b, 9, CallOutcome::ServerError, 1, 12 * SEC);
    assert_eq!(
        ejected(&b, 12 * SEC),
        [[false; 9].as_slice(), &[true]].concat()
    );
}

#[test]
fn one_endpoint_always_stays() {
    let b = balancer(2, Algorithm::RoundRobin, Some(outlier(100)));
    report(&b, 0, CallOutcome::ServerError, 3, SEC);
    report(&b, 1, CallOutcome::ServerError, 30, SEC);
    assert_eq!(ejected(&b, SEC), [true, false]);
    let single = balancer(1, Algorithm::RoundRobin, Some(outlier(100)));
    report(&single, 0, CallOutcome::GatewayError, 30, SEC);
    assert_eq!(ejected(&single, SEC), [false]);
}

#[test]
fn without_outlier_detection_nothing_is_ejected() {
    let b = balancer(3, Algorithm::P2cEwma, None);
    report(&b, 0, CallOutcome::GatewayError, 100, SEC);
    assert_eq!(ejected(&b, SEC), [false; 3]);
}

#[test]
fn failures_of_calls_to_an_ejected_endpoint_do_not_count() {
    let b = balancer(2, Algorithm::RoundRobin, Some(outlier(100)));
    report(&b, 0, CallOutcome::ServerError, 3, SEC);
    // Late answers of requests sent before the ejection.
    report(&b, 0, CallOutcome::ServerError, 2, 2 * SEC);
    // Back at 11 s with a clean slate: one more failure does not eject it again.
    report(&b, 0, CallOutcome::ServerError, 1, 11 * SEC);
    assert_eq!(ejected(&b, 11 * SEC), [false, false]);
}

#[test]
fn consistent_hash_keys_of_an_ejected_endpoint_move_and_return() {
    let b = balancer(5, Algorithm::ConsistentHash, Some(outlier(40)));
    let owner = |key: u64, now: u64| {
        b.pick_with(Some(key), &mut Clock::at(now))
            .map(|p| p.addr())
            .expect("an endpoint")
    };
    let before: Vec<_> = (0..1000).map(|k| owner(k, SEC)).collect();
    let victim = before[0];
    let index = addrs(5)
        .iter()
        .position(|a| *a == victim)
        .expect("endpoint");
    report(&b, index, CallOutcome::GatewayError, 3, SEC);
    for (key, old) in before.iter().enumerate() {
        let now = owner(key as u64, 2 * SEC);
        if *old == victim {
            assert_ne!(now, victim);
        } else {
            assert_eq!(now, *old, "only the ejected endpoint's keys move");
        }
    }
    let after: Vec<_> = (0..1000).map(|k| owner(k, 20 * SEC)).collect();
    assert_eq!(after, before);
}
