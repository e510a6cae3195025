//! Tests of the choice algorithms and of the registry's updates. Time is simulated: every call
//! gets its own clock value, so nothing sleeps and runs repeat exactly (seeded randomness).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::balance::Balancers;
use crate::resilience::clock::Clock;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;

fn addrs(n: u8) -> Vec<SocketAddr> {
    (1..=n)
        .map(|i| SocketAddr::from(([10, 0, 2, i], 9090)))
        .collect()
}

fn config(algorithm: Algorithm) -> Config {
    Config {
        algorithm,
        ..Config::default()
    }
}

fn pick(b: &Balancer, hash: Option<u64>, now: u64) -> Pick {
    b.pick_with(hash, &mut Clock::at(now)).expect("an endpoint")
}

fn success(pick: Pick, latency_ms: u64, now: u64) {
    let latency = Duration::from_millis(latency_ms);
    pick.finish_with(CallOutcome::Success { latency }, &mut Clock::at(now));
}

fn counts(picks: &[Pick]) -> HashMap<SocketAddr, usize> {
    let mut counts = HashMap::new();
    for p in picks {
        *counts.entry(p.addr()).or_default() += 1;
    }
    counts
}

#[test]
fn p2c_ewma_sends_most_requests_away_from_a_slower_endpoint() {
    fastrand::seed(11);
    let eps = addrs(3);
    let slow = eps[2];
    let b = Balancer::new(&eps, &config(Algorithm::P2cEwma), 0);
    let (mut slow_picks, mut late_slow_picks) = (0, 0);
    // One request per millisecond for 30 s; the slow endpoint answers 50 ms later than the others.
    for step in 1..=30_000u64 {
        let now = step * MS;
        let p = pick(&b, None, now);
        let is_slow = p.addr() == slow;
        success(p, if is_slow { 60 } else { 10 }, now);
        if is_slow {
            slow_picks += 1;
            if now > 10 * SEC {
                late_slow_picks += 1;
            }
        }
    }
    assert!(
        slow_picks < 30_000 / 100,
        "{slow_picks} picks of the slow endpoint"
    );
    // Its estimate decays while it is idle, so it is probed again now and then.
    assert!(late_slow_picks >= 1, "never probed again");
}

#[test]
fn requests_in_flight_weigh_on_the_cost() {
    fastrand::seed(12);
    let eps = addrs(2);
    let cfg = Config {
        default_rtt: Duration::from_millis(1),
        ..config(Algorithm::P2cEwma)
    };
    let b = Balancer::new(&eps, &cfg, 0);
    // Equal latency: held requests spread evenly.
    let held: Vec<_> = (0..100).map(|_| pick(&b, None, MS)).collect();
    let c = counts(&held);
    assert!(c[&eps[0]].abs_diff(c[&eps[1]]) <= 1, "{c:?}");
    drop(held);

    // Latencies of 10 ms and 20 ms: the faster endpoint takes twice the load, since
    // cost = latency * (in flight + 1).
    let (fast, slow) = (pick(&b, None, 2 * MS), pick(&b, None, 2 * MS));
    let (fast, slow) = if fast.addr() == eps[0] {
        (fast, slow)
    } else {
        (slow, fast)
    };
    success(fast, 10, 2 * MS);
    success(slow, 20, 2 * MS);
    let held: Vec<_> = (0..90).map(|_| pick(&b, None, 2 * MS)).collect();
    let c = counts(&held);
    assert!((58..=62).contains(&c[&eps[0]]), "{c:?}");
}

#[test]
fn new_endpoints_start_at_the_default_rtt() {
    let eps = addrs(2);
    let balancers = Balancers::new();
    let cfg = config(Algorithm::P2cEwma);
    let b = balancers.get_with("ns/svc:80", &eps[..1], &cfg, &mut Clock::at(0));
    // 2 ms answers for 20 s (two time constants).
    for step in 1..=200 {
        success(pick(&b, None, step * 100 * MS), 2, step * 100 * MS);
    }
    let now = 20 * SEC;
    let b = balancers.get_with("ns/svc:80", &eps, &cfg, &mut Clock::at(now));
    let status = b.endpoints_at(now);
    assert!(status[0].ewma_ms < 7.0, "{status:?}");
    assert_eq!(status[1].ewma_ms, 30.0);
    // The newcomer looks slow until it has answered, so it is not flooded.
    fastrand::seed(13);
    assert!((0..10).all(|_| pick(&b, None, now).addr() == eps[0]));
}

#[test]
fn round_robin_is_fair_and_in_order() {
    let eps = addrs(4);
    let b = Balancer::new(&eps, &config(Algorithm::RoundRobin), 0);
    let picks: Vec<_> = (0..400).map(|_| pick(&b, None, 0)).collect();
    assert!(counts(&picks).values().all(|&c| c == 100));
    let order: Vec<_> = picks[..8].iter().map(Pick::addr).collect();
    assert_eq!(order, [eps.clone(), eps.clone()].concat());
}

#[test]
fn least_request_fills_the_least_loaded_endpoint() {
    fastrand::seed(14);
    let eps = addrs(2);
    let b = Balancer::new(&eps, &config(Algorithm::LeastRequest), 0);
    let held: Vec<_> = (0..20).map(|_| pick(&b, None, 0)).collect();
    let c = counts(&held);
    assert!(c[&eps[0]].abs_diff(c[&eps[1]]) <= 1, "{c:?}");
    // The requests on eps[0] end: the next picks go there until it catches up.
    let (done, still): (Vec<_>, Vec<_>) = held.into_iter().partition(|p| p.addr() == eps[0]);
    drop(done);
    let next: Vec<_> = (0..still.len() - 1).map(|_| pick(&b, None, 0)).collect();
    assert!(next.iter().all(|p| p.addr() == eps[0]));

    // With more endpoints, held requests stay spread.
    let eps = addrs(5);
    let b = Balancer::new(&eps, &config(Algorithm::LeastRequest), 0);
    let held: Vec<_> = (0..500).map(|_| pick(&b, None, 0)).collect();
    let c = counts(&held);
    let (min, max) = (c.values().min(), c.values().max());
    assert!(
        max.zip(min).is_some_and(|(max, min)| max - min <= 4),
        "{c:?}"
    );
}

#[test]
fn consistent_hash_is_deterministic_and_stable() {
    let eps = addrs(10);
    let cfg = config(Algorithm::ConsistentHash);
    let b = Balancer::new(&eps, &cfg, 0);
    let mut reversed = eps.clone();
    reversed.reverse();
    let other = Balancer::new(&reversed, &cfg, 0);
    let key = |i: u64| crate::balance::hash_key(format!("user-{i}").as_bytes());
    let owners: Vec<_> = (0..10_000)
        .map(|i| pick(&b, Some(key(i)), 0).addr())
        .collect();
    for (i, owner) in owners.iter().enumerate().take(1000) {
        assert_eq!(pick(&b, Some(key(i as u64)), 0).addr(), *owner);
        assert_eq!(pick(&other, Some(key(i as u64)), 0).addr(), *owner);
    }

    let balancers = Balancers::new();
    balancers.get_with("ns/svc:80", &eps, &cfg, &mut Clock::at(0));
    let eleven = addrs(11);
    let b = balancers.get_with("ns/svc:80", &eleven, &cfg, &mut Clock::at(0));
    let moved = (0..10_000)
        .filter(|&i| pick(&b, Some(key(i)), 0).addr() != owners[i as usize])
        .count();
    assert!(
        (650..=1200).contains(&moved),
        "{moved} of 10,000 keys moved"
    );

    // No key: balanced anyway.
    assert!(b.pick_with(None, &mut Clock::at(0)).is_some());
}

#[test]
fn no_endpoints_no_pick_and_one_endpoint_always() {
    for algorithm in [
        Algorithm::P2cEwma,
        Algorithm::RoundRobin,
        Algorithm::LeastRequest,
        Algorithm::ConsistentHash,
    ] {
        let empty = Balancer::new(&[], &config(algorithm), 0);
        assert!(empty.pick_with(Some(1), &mut Clock::at(0)).is_none());
        let one = addrs(1);
        let b = Balancer::new(&one, &config(algorithm), 0);
        for key in 0..10 {
            assert_eq!(pick(&b, Some(key), 0).addr(), one[0]);
        }
    }
}

#[test]
fn a_dropped_pick_is_cancelled() {
    let eps = addrs(1);
    let b = Balancer::new(&eps, &config(Algorithm::P2cEwma), 0);
    let p = pick(&b, None, 0);
    assert_eq!(b.endpoints_at(0)[0].in_flight, 1);
    drop(p);
    let status = &b.endpoints_at(0)[0];
    assert_eq!(status.in_flight, 0);
    assert_eq!(status.ewma_ms, 30.0);
}

#[test]
fn the_registry_keeps_endpoint_state_across_updates() {
    let balancers = Balancers::new();
    let rr = config(Algorithm::RoundRobin);
    let eps = addrs(3);
    let b = balancers.get_with("ns/a:80", &eps, &rr, &mut Clock::at(0));
    // Unchanged: the same balancer.
    let same = balancers.get_with("ns/a:80", &eps, &rr, &mut Clock::at(0));
    assert!(Arc::ptr_eq(&b, &same));
    let answered = pick(&b, None, MS);
    assert_eq!(answered.addr(), eps[0]);
    success(answered, 100, MS);
    let held = pick(&b, None, MS);
    assert_eq!(held.addr(), eps[1]);

    // eps[2] leaves, two endpoints join: eps[0] keeps its latency, eps[1] its request in
    // flight, and the balancer is the same object, updated in place.
    let next = [&eps[..2], &addrs(5)[3..]].concat();
    let updated = balancers.get_with("ns/a:80", &next, &rr, &mut Clock::at(2 * MS));
    assert!(Arc::ptr_eq(&b, &updated));
    let status = updated.endpoints_at(2 * MS);
    assert_eq!(status.iter().map(|s| s.addr).collect::<Vec<_>>(), next);
    assert!(status[0].ewma_ms > 99.0, "{status:?}");
    assert_eq!(status[1].in_flight, 1);
    assert_eq!(status[2].ewma_ms, 30.0);
    // A pick made before the update still ends its count.
    drop(held);
    assert_eq!(updated.endpoints_at(2 * MS)[1].in_flight, 0);

    // Another policy applies at once: the slow eps[0] is now avoided.
    let ewma = config(Algorithm::P2cEwma);
    let b = balancers.get_with("ns/a:80", &next, &ewma, &mut Clock::at(3 * MS));
    fastrand::seed(15);
    assert!((0..100).all(|_| pick(&b, None, 3 * MS).addr() != eps[0]));

    balancers.get_with("ns/b:80", &eps, &rr, &mut Clock::at(0));
    assert_eq!(balancers.len(), 2);
    balancers.retain(|key| key == "ns/b:80");
    assert_eq!(balancers.len(), 1);
    let fresh = balancers.get("ns/a:80", &eps, &rr);
    assert!(!Arc::ptr_eq(&b, &fresh));
}

#[test]
fn a_preview_names_the_next_pick_without_taking_it() {
    let rr = config(Algorithm::RoundRobin);
    let eps = addrs(3);
    let b = Balancer::new(&eps, &rr, 0);
    let preview = |b: &Balancer, eps: &[SocketAddr]| b.preview(eps, &rr, None, &mut Clock::at(MS));
    for _ in 0..2 {
        // Previews do not advance the rotation nor count a request.
        assert_eq!(preview(&b, &eps).chosen, Some(eps[0]));
    }
    let p = pick(&b, None, MS);
    assert_eq!(p.addr(), eps[0]);
    let now = preview(&b, &eps);
    assert_eq!(now.chosen, Some(eps[1]));
    assert!(now.active);
    assert_eq!(now.endpoints[0].in_flight, 1);
    drop(p);

    // An ejected endpoint is skipped, as a pick would.
    b.shared().endpoints[1]
        .ejected_until
        .store(10 * SEC, Ordering::Relaxed);
    assert_eq!(preview(&b, &eps).chosen, Some(eps[2]));
    assert!(preview(&b, &eps).endpoints[1].ejected_until.is_some());
    assert_eq!(pick(&b, None, MS).addr(), eps[2]);

    // Another endpoint set is previewed as the next request would see it; the balancer is
    // left as it is.
    let fewer = &eps[..1];
    assert_eq!(preview(&b, fewer).chosen, Some(eps[0]));
    assert_eq!(b.endpoints_at(MS).len(), 3);
}

#[test]
fn previewing_an_unknown_service_creates_no_balancer() {
    let balancers = Balancers::new();
    let eps = addrs(2);
    let preview = balancers.preview("ns/a:80", &eps, &config(Algorithm::P2cEwma), None);
    assert!(!preview.active);
    assert!(preview.chosen.is_some_and(|c| eps.contains(&c)));
    assert_eq!(preview.endpoints.len(), 2);
    assert_eq!(preview.endpoints[0].ewma_ms, 30.0);
    assert!(balancers.is_empty());
    assert_eq!(
        balancers
            .preview("ns/a:80", &[], &config(Algorithm::P2cEwma), None)
            .chosen,
        None
    );
}

#[test]
fn handles_cross_tasks_and_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Balancers>();
    send_sync::<Balancer>();
    send_sync::<Pick>();
}
