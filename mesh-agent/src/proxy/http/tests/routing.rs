//! Routing and resilience end to end: Gateway API rules, redirects, timeouts, the circuit
//! breaker, retries, mirrors and services without endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::*;

/// A backend on `ip` (port chosen by the system) and its service `name` selecting app=`app`.
async fn svc_backend(
    name: &str,
    ip: &str,
    app: &str,
    handler: Handler,
    extra: &str,
) -> anyhow::Result<(Backend, String)> {
    let listener = TcpListener::bind((ip, 0)).await?;
    let port = listener.local_addr()?.port();
    let backend = serve(listener, handler)?;
    // The addressed service has the VIP the fixed origin reports; the others their own.
    let vip = if name == "backend" {
        "127.0.96.10".to_owned()
    } else {
        format!("127.0.97.{}", ip.rsplit('.').next().unwrap_or("1"))
    };
    Ok((backend, service(name, &vip, app, port, Some("http"), extra)))
}

fn http_route(rules: &str) -> String {
    format!(
        r#"  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {{name: backend, namespace: shop}}
    spec:
      parentRefs: [{{group: "", kind: Service, name: backend, port: 80}}]
      rules:
{rules}"#
    )
}

/// Answers `status` after `delay`.
fn answer(status: u16, delay: Duration) -> Handler {
    Arc::new(move |_req: Request<Incoming>| {
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let mut resp = Response::new(full("done"));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            resp
        })
    })
}

#[tokio::test]
async fn rules_pick_backends_and_unmatched_requests_get_404() -> anyhow::Result<()> {
    let (v1, s1) = svc_backend("backend-v1", "127.0.0.3", "v1", echo("v1"), "").await?;
    let (v2, s2) = svc_backend("backend-v2", "127.0.0.4", "v2", echo("v2"), "").await?;
    let (main, s0) = svc_backend("backend", "127.0.0.2", "b1", echo("b1"), "").await?;
    let routes = http_route(
        r#"        - matches: [{path: {type: PathPrefix, value: /v2}}]
          backendRefs: [{name: backend-v2, port: 80}]
          filters:
            - type: ResponseHeaderModifier
              responseHeaderModifier: {set: [{name: x-route, value: v2}]}
        - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-user, value: alice}]}]
          backendRefs: [{name: backend-v1, port: 80}]
"#,
    );
    let workloads = [
        ("b1", "127.0.0.2"),
        ("v1", "127.0.0.3"),
        ("v2", "127.0.0.4"),
    ];
    let proxy = Proxy::start(state(&workloads, &format!("{s0}{s1}{s2}"), &routes)?).await?;
    let mut client = proxy.h1().await?;

    let (status, headers, _) = get(&mut client, "/v2/items", &[]).await?;
    assert_eq!(
        (status, &headers["x-backend"], &headers["x-route"]),
        (200, &"v2".parse()?, &"v2".parse()?)
    );
    let (status, headers, _) = get(&mut client, "/api/x", &[("x-user", "alice")]).await?;
    assert_eq!((status, &headers["x-backend"]), (200, &"v1".parse()?));
    let (status, headers, _) = get(&mut client, "/api/x", &[("x-user", "bob")]).await?;
    assert_eq!(status, 404);
    assert_eq!(headers["x-weft-response"], "no-route");
    assert_eq!((v1.requests(), v2.requests(), main.requests()), (1, 1, 0));
    assert!(proxy.has_metric(
        r#"weft_http_proxy_responses_total{destination_service="shop/backend",mechanism="no-route"} 1"#
    ), "{}", proxy.metrics_text());
    Ok(())
}

#[tokio::test]
async fn redirects_are_answered_without_a_backend() -> anyhow::Result<()> {
    let (main, s0) = svc_backend("backend", "127.0.0.2", "b1", echo("b1"), "").await?;
    let routes = http_route(
        r#"        - matches: [{path: {type: Exact, value: /old}}]
          filters:
            - type: RequestRedirect
              requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}
"#,
    );
    let proxy = Proxy::start(state(&[("b1", "127.0.0.2")], &s0, &routes)?).await?;
    let mut client = proxy.h1().await?;
    let (status, headers, _) = get(&mut client, "/old?q=1", &[]).await?;
    assert_eq!(status, 301);
    assert_eq!(headers["location"], "http://backend.shop/new?q=1");
    assert_eq!(headers["x-weft-response"], "redirect");
    assert_eq!(main.connections(), 0);
    Ok(())
}

#[tokio::test]
async fn slow_backends_time_out_with_504() -> anyhow::Result<()> {
    let (_slow, s0) = svc_backend(
        "backend",
        "127.0.0.2",
        "b1",
        answer(200, Duration::from_secs(3)),
        "",
    )
    .await?;
    let routes = http_route(
        r#"        - matches: [{path: {type: PathPrefix, value: /request}}]
          backendRefs: [{name: backend, port: 80}]
          timeouts: {request: 200ms}
        - backendRefs: [{name: backend, port: 80}]
          timeouts: {request: 5s, backendRequest: 150ms}
"#,
    );
    let proxy = Proxy::start(state(&[("b1", "127.0.0.2")], &s0, &routes)?).await?;
    let mut client = proxy.h1().await?;
    for path in ["/request", "/attempt"] {
        let started = Instant::now();
        let (status, headers, _) = get(&mut client, path, &[]).await?;
        assert_eq!(status, 504, "{path}");
        assert_eq!(headers["x-weft-response"], "timeout");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path}: {:?}",
            started.elapsed()
        );
    }
    Ok(())
}

#[tokio::test]
async fn breaker_overflow_is_refused_at_once() -> anyhow::Result<()> {
    let policy = "    trafficPolicy: {circuitBreaker: {maxRequests: 1}}\n";
    let (backend, s0) = svc_backend(
        "backend",
        "127.0.0.2",
        "b1",
        answer(200, Duration::from_millis(400)),
        policy,
    )
    .await?;
    let proxy = Proxy::start(state(&[("b1", "127.0.0.2")], &s0, "")?).await?;
    let mut first = proxy.h1().await?;
    let mut second = proxy.h1().await?;
    let slow = tokio::spawn(async move { get(&mut first, "/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let (status, headers, _) = get(&mut second, "/fast", &[]).await?;
    assert_eq!(status, 503);
    assert_eq!(headers["x-weft-response"], "circuit-open");
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(slow.await??.0, 200);
    // The slot is free again once the first response is done.
    assert_eq!(get(&mut second, "/again", &[]).await?.0, 200);
    assert_eq!(backend.requests(), 2);
    Ok(())
}

/// Fails every other request with 503, echoing the body otherwise.
fn flaky() -> Handler {
    let n = Arc::new(AtomicUsize::new(0));
    Arc::new(move |req: Request<Incoming>| {
        let n = n.clone();
        Box::pin(async move {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut resp = Response::new(full(body));
            if n.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            resp
        })
    })
}

#[tokio::test]
async fn retries_turn_a_flaky_503_into_success() -> anyhow::Result<()> {
    let policy = "    trafficPolicy: {retry: {attempts: 2, on: [gateway-error], backoff: {base: 5ms, max: 20ms}}}\n";
    let (backend, s0) = svc_backend("backend", "127.0.0.2", "b1", flaky(), policy).await?;
    let proxy = Proxy::start(state(&[("b1", "127.0.0.2")], &s0, "")?).await?;
    let mut client = proxy.h1().await?;
    for _ in 0..4 {
        assert_eq!(get(&mut client, "/", &[]).await?.0, 200);
    }
    assert_eq!(backend.requests(), 8);
    // A POST is not idempotent: the service's policy does not retry it.
    let req = Request::post("/")
        .header("host", "backend.shop")
        .body(full("data"))?;
    let resp = tokio::time::timeout(T, client.send_request(req)).await??;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(resp);
    assert!(
        proxy.has_metric(r#"weft_retries_total{result="success",service="shop/backend"} 4"#),
        "{}",
        proxy.metrics_text()
    );
    Ok(())
}

#[tokio::test]
async fn a_route_retry_replays_the_request_body() -> anyhow::Result<()> {
    let (backend, s0) = svc_backend("backend", "127.0.0.2", "b1", flaky(), "").await?;
    let routes = http_route(
        r#"        - backendRefs: [{name: backend, port: 80}]
          retry: {codes: [503], attempts: 2, backoff: 5ms}
"#,
    );
    let proxy = Proxy::start(state(&[("b1", "127.0.0.2")], &s0, &routes)?).await?;
    let mut client = proxy.h1().await?;
    let req = Request::post("/")
        .header("host", "backend.shop")
        .body(full("payload-123"))?;
    let resp = tokio::time::timeout(T, client.send_request(req)).await??;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await?.to_bytes();
    assert_eq!(&body[..], b"payload-123");
    assert_eq!(backend.requests(), 2);
    Ok(())
}

#[tokio::test]
async fn mirrors_get_a_copy_and_the_main_request_does_not_wait() -> anyhow::Result<()> {
    let (main, s0) = svc_backend("backend", "127.0.0.2", "b1", echo("b1"), "").await?;
    let (shadow, s1) = svc_backend(
        "shadow",
        "127.0.0.3",
        "shadow",
        answer(200, Duration::from_secs(1)),
        "",
    )
    .await?;
    let routes = http_route(
        r#"        - backendRefs: [{name: backend, port: 80}]
          filters:
            - type: RequestMirror
              requestMirror: {backendRef: {name: shadow, port: 80}}
"#,
    );
    let workloads = [("b1", "127.0.0.2"), ("shadow", "127.0.0.3")];
    let proxy = Proxy::start(state(&workloads, &format!("{s0}{s1}"), &routes)?).await?;
    let mut client = proxy.h1().await?;
    let started = Instant::now();
    let req = Request::post("/m")
        .header("host", "backend.shop")
        .body(full("copy me"))?;
    let resp = tokio::time::timeout(T, client.send_request(req)).await??;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "waited for the mirror"
    );
    tokio::time::timeout(T, async {
        while shadow.requests() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    assert_eq!(main.requests(), 1);
    Ok(())
}

#[tokio::test]
async fn a_service_without_endpoints_gets_503() -> anyhow::Result<()> {
    let svc = service("backend", "127.0.96.10", "nobody", 8080, Some("http"), "");
    let proxy = Proxy::start(state(&[], &svc, "")?).await?;
    let mut client = proxy.h1().await?;
    let (status, headers, _) = get(&mut client, "/", &[]).await?;
    assert_eq!(status, 503);
    assert_eq!(headers["x-weft-response"], "no-healthy-upstream");
    Ok(())
}

#[tokio::test]
async fn consistent_hashing_sticks_and_round_robin_spreads() -> anyhow::Result<()> {
    let ips = ["127.0.0.5", "127.0.0.6", "127.0.0.7"];
    let listeners = listeners(&ips).await?;
    let port = listeners[0].local_addr()?.port();
    let names = ["e5", "e6", "e7"];
    let backends: Vec<Backend> = listeners
        .into_iter()
        .zip(names)
        .map(|(l, name)| serve(l, echo(name)))
        .collect::<Result<_, _>>()?;
    let workloads = [
        ("pool-5", ips[0], "pool"),
        ("pool-6", ips[1], "pool"),
        ("pool-7", ips[2], "pool"),
    ];
    let hashed =
        "    trafficPolicy: {loadBalancer: {policy: ConsistentHash, hash: {header: x-user}}}\n";
    let svc = service("backend", "127.0.96.10", "pool", port, Some("http"), hashed);
    let mesh = state_apps(&workloads, &svc, "")?;
    let proxy = Proxy::start(mesh).await?;
    let mut client = proxy.h1().await?;
    for user in ["alice", "bob", "carol"] {
        let first = get(&mut client, "/", &[("x-user", user)]).await?.1["x-backend"].clone();
        for _ in 0..5 {
            let again = get(&mut client, "/", &[("x-user", user)]).await?.1["x-backend"].clone();
            assert_eq!(again, first, "{user} moved");
        }
    }
    assert_eq!(backends.iter().map(Backend::requests).sum::<usize>(), 18);

    let round_robin = "    trafficPolicy: {loadBalancer: {policy: RoundRobin}}\n";
    let svc = service(
        "backend",
        "127.0.96.10",
        "pool",
        port,
        Some("http"),
        round_robin,
    );
    let mesh = state_apps(&workloads, &svc, "")?;
    let proxy = Proxy::start(mesh).await?;
    let mut client = proxy.h1().await?;
    let before: Vec<usize> = backends.iter().map(Backend::requests).collect();
    for _ in 0..6 {
        assert_eq!(get(&mut client, "/", &[]).await?.0, 200);
    }
    for (b, n) in backends.iter().zip(before) {
        assert_eq!(
            b.requests() - n,
            2,
            "round robin gives each endpoint its turn"
        );
    }
    Ok(())
}
