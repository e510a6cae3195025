use std::path::Path;
use std::time::Duration;

use crate::state::{GrpcCode, HashKey, LoadBalancer, MeshState, RetryOn, TrafficPolicy, parse_str};

const HEADER: &str = "namespaces: [{name: shop}]\n";

fn service(policy: &str) -> String {
    format!("{HEADER}services:\n  - name: s\n    namespace: shop\n    trafficPolicy:\n{policy}")
}

fn policy_of(yaml: &str) -> TrafficPolicy {
    let state: MeshState = match parse_str(Path::new("mesh.yaml"), yaml) {
        Ok(state) => state,
        Err(e) => panic!("rejected:\n{e}"),
    };
    let svc = &state.services[&("shop".to_string(), "s".to_string())];
    svc.traffic_policy.clone()
}

/// Exactly one problem, at `services[0].trafficPolicy.<path>`, containing `reason`.
#[track_caller]
fn one(policy: &str, path: &str, reason: &str) {
    let problems = match parse_str(Path::new("mesh.yaml"), &service(policy)) {
        Ok(_) => panic!("accepted:\n{policy}"),
        Err(e) => e.problems,
    };
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let expected = format!("services[0].trafficPolicy.{path}: ");
    assert!(problems[0].starts_with(&expected), "{problems:#?}");
    assert!(problems[0].contains(reason), "{problems:#?}");
}

#[test]
fn the_documented_example_reads_in_full() {
    let p = policy_of(&service(
        "      loadBalancer: {policy: ConsistentHash, hash: {header: X-User}}
      circuitBreaker: {maxConnections: 100, maxPendingRequests: 10, maxRequests: 200}
      outlierDetection: {consecutive5xx: 3, consecutiveGatewayErrors: 0, baseEjectionTime: 10s, maxEjectionTime: 1m, maxEjectionPercent: 30}
      retry: {attempts: 4, on: [gateway-error, connect-failure, reset], grpcStatuses: [UNAVAILABLE, RESOURCE_EXHAUSTED], perTryTimeout: 1s, backoff: {base: 25ms, max: 250ms}, maxReplayBytes: 1024}
      retryBudget: {ratio: 0.5, minRetriesPerSecond: 3}
",
    ));
    let LoadBalancer::ConsistentHash {
        hash: HashKey::Header(name),
    } = &p.load_balancer
    else {
        panic!("{:?}", p.load_balancer)
    };
    assert_eq!(name.as_str(), "x-user");
    assert_eq!(p.circuit_breaker.max_pending_requests, 10);
    let od = p.outlier_detection.expect("enabled");
    assert_eq!((od.consecutive_5xx, od.consecutive_gateway_errors), (3, 0));
    assert_eq!(od.max_ejection_time, Duration::from_secs(60));
    assert_eq!(od.max_ejection_percent, 30);
    assert_eq!(p.retry.attempts, 4);
    let on = [
        RetryOn::ConnectFailure,
        RetryOn::GatewayError,
        RetryOn::Reset,
    ];
    assert_eq!(p.retry.on, on, "sorted");
    assert_eq!(p.retry.grpc_statuses, [GrpcCode(8), GrpcCode::UNAVAILABLE]);
    assert_eq!(p.retry.per_try_timeout, Some(Duration::from_secs(1)));
    assert_eq!(p.retry.max_replay_bytes, 1024);
    assert_eq!(p.retry_budget.ratio, 0.5);
    assert_eq!(p.retry_budget.min_retries_per_second, 3);
}

#[test]
fn omitted_parts_take_the_defaults() {
    let none = format!("{HEADER}services: [{{name: s, namespace: shop}}]\n");
    assert_eq!(policy_of(&none), TrafficPolicy::default());
    let p = policy_of(&service(
        "      loadBalancer: {policy: RoundRobin}\n      outlierDetection: {}\n      retry: {attempts: 0}\n",
    ));
    assert_eq!(p.load_balancer, LoadBalancer::RoundRobin);
    assert_eq!(
        p.outlier_detection,
        Some(Default::default()),
        "given empty: enabled with defaults"
    );
    assert_eq!(p.retry.attempts, 0);
    assert_eq!(p.retry.on, [RetryOn::ConnectFailure]);
    assert_eq!(p.circuit_breaker.max_connections, 1024);
    let d = TrafficPolicy::default();
    assert!(d.outlier_detection.is_none(), "off unless given");
    assert_eq!((d.retry.attempts, d.retry_budget.ratio), (2, 0.2));
    assert_eq!(d.retry_budget.min_retries_per_second, 10);
    assert_eq!(d.load_balancer, LoadBalancer::P2cEwma);
    let cookie = policy_of(&service(
        "      loadBalancer: {policy: ConsistentHash, hash: {cookie: session}}\n",
    ));
    let hashed = |hash| LoadBalancer::ConsistentHash { hash };
    assert_eq!(
        cookie.load_balancer,
        hashed(HashKey::Cookie("session".into()))
    );
    let source = policy_of(&service(
        "      loadBalancer: {policy: ConsistentHash, hash: {sourceWorkload: true}}\n",
    ));
    assert_eq!(source.load_balancer, hashed(HashKey::SourceWorkload));
}

#[test]
fn load_balancer_problems() {
    let lb = |v: &str| format!("      loadBalancer: {v}\n");
    one(
        &lb("{policy: Random}"),
        "loadBalancer.policy",
        "`Random` is not one of P2CEWMA",
    );
    one(
        &lb("{policy: ConsistentHash}"),
        "loadBalancer",
        "policy ConsistentHash needs `hash`",
    );
    one(
        &lb("{policy: RoundRobin, hash: {cookie: a}}"),
        "loadBalancer.hash",
        "only policy ConsistentHash",
    );
    let two = lb("{policy: ConsistentHash, hash: {cookie: a, header: b}}");
    one(
        &two,
        "loadBalancer.hash",
        "exactly one of `header`, `cookie`, `sourceWorkload`",
    );
    let header = lb(r#"{policy: ConsistentHash, hash: {header: "x y"}}"#);
    one(
        &header,
        "loadBalancer.hash.header",
        "is not an HTTP header name",
    );
    let cookie = lb(r#"{policy: ConsistentHash, hash: {cookie: "a;b"}}"#);
    one(&cookie, "loadBalancer.hash.cookie", "is not a cookie name");
    let off = lb("{policy: ConsistentHash, hash: {sourceWorkload: false}}");
    one(&off, "loadBalancer.hash.sourceWorkload", "hashes nothing");
}

#[test]
fn limit_and_ejection_problems() {
    one(
        "      circuitBreaker: {maxRequests: 0}\n",
        "circuitBreaker.maxRequests",
        "0 is not a count from 1",
    );
    one(
        "      circuitBreaker: {maxConnections: -5}\n",
        "circuitBreaker.maxConnections",
        "-5 is not a count",
    );
    let od = |v: &str| format!("      outlierDetection: {v}\n");
    one(
        &od("{consecutive5xx: 0, consecutiveGatewayErrors: 0}"),
        "outlierDetection",
        "both triggers are 0",
    );
    one(
        &od("{baseEjectionTime: soon}"),
        "outlierDetection.baseEjectionTime",
        "is not a positive duration",
    );
    one(
        &od("{baseEjectionTime: 0s}"),
        "outlierDetection.baseEjectionTime",
        "is not a positive duration",
    );
    let shorter = od("{baseEjectionTime: 1m, maxEjectionTime: 30s}");
    one(
        &shorter,
        "outlierDetection.maxEjectionTime",
        "must not be shorter than baseEjectionTime",
    );
    one(
        &od("{maxEjectionPercent: 101}"),
        "outlierDetection.maxEjectionPercent",
        "101 is not 0-100",
    );
}

#[test]
fn retry_problems() {
    let retry = |v: &str| format!("      retry: {v}\n");
    one(&retry("{attempts: 11}"), "retry.attempts", "11 is not 0-10");
    one(
        &retry("{on: [5xx, timeout]}"),
        "retry.on[1]",
        "`timeout` is not one of connect-failure",
    );
    one(
        &retry("{on: [reset, reset]}"),
        "retry.on[1]",
        "`reset` is listed twice",
    );
    one(
        &retry("{grpcStatuses: [Unavailable]}"),
        "retry.grpcStatuses[0]",
        "is not a gRPC error status",
    );
    one(
        &retry("{grpcStatuses: [OK]}"),
        "retry.grpcStatuses[0]",
        "is not a gRPC error status",
    );
    one(
        &retry("{grpcStatuses: [UNAVAILABLE, UNAVAILABLE]}"),
        "retry.grpcStatuses[1]",
        "listed twice",
    );
    one(
        &retry("{perTryTimeout: 1.5s}"),
        "retry.perTryTimeout",
        "is not a positive duration",
    );
    one(
        &retry("{backoff: {base: 1s, max: 10ms}}"),
        "retry.backoff.max",
        "must not be shorter than base",
    );
    one(
        &retry("{maxReplayBytes: -1}"),
        "retry.maxReplayBytes",
        "-1 is not 0-16777216",
    );
    let budget = "      retryBudget: {ratio: 1.5}\n";
    one(budget, "retryBudget.ratio", "1.5 is not between 0 and 1");
    let min = "      retryBudget: {minRetriesPerSecond: -1}\n";
    one(min, "retryBudget.minRetriesPerSecond", "-1 is not a count");
}

#[test]
fn unknown_policy_fields_are_refused_when_parsing() {
    let yaml = service("      retry: {attemps: 3}\n");
    let err = parse_str(Path::new("mesh.yaml"), &yaml).expect_err("typo");
    assert_eq!(err.problems.len(), 1);
    assert!(
        err.problems[0].starts_with("services[0].trafficPolicy.retry: unknown field `attemps`"),
        "{err}"
    );
}
