//! `maxConnections` and `maxPendingRequests` end to end: requests beyond the connection slots
//! wait, one more than the pending places is refused at once, h2c requests share their
//! connection's slot, and new limits apply to the running proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;
use crate::resilience::BreakerLoad;

const DELAY: Duration = Duration::from_millis(300);

/// Requests the backend is answering now, and the most it ever answered at once.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Concurrency {
    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

/// Answers 200 after `delay`, counting concurrent requests.
fn measured(delay: Duration, seen: Arc<Concurrency>) -> Handler {
    Arc::new(move |_req: Request<Incoming>| {
        let seen = seen.clone();
        Box::pin(async move {
            let now = seen.now.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            seen.now.fetch_sub(1, Ordering::SeqCst);
            Response::new(full("done"))
        })
    })
}

fn limited(connections: u32, pending: u32) -> String {
    format!(
        "    trafficPolicy: {{circuitBreaker: {{maxConnections: {connections}, maxPendingRequests: {pending}}}}}\n"
    )
}

struct Bed {
    proxy: Proxy,
    backend: Backend,
    seen: Arc<Concurrency>,
    port: u16,
}

impl Bed {
    async fn start(policy: &str, port_name: &str) -> anyhow::Result<Bed> {
        let listener = TcpListener::bind("127.0.0.2:0").await?;
        let port = listener.local_addr()?.port();
        let seen = Arc::new(Concurrency::default());
        let backend = serve(listener, measured(DELAY, seen.clone()))?;
        let proxy = Proxy::start(Self::state(port, port_name, policy)?).await?;
        Ok(Bed {
            proxy,
            backend,
            seen,
            port,
        })
    }

    fn state(port: u16, port_name: &str, policy: &str) -> anyhow::Result<MeshState> {
        let svc = service(
            "backend",
            "127.0.96.10",
            "b1",
            port,
            Some(port_name),
            policy,
        );
        state(&[("b1", "127.0.0.2")], &svc, "")
    }

    fn load(&self) -> BreakerLoad {
        let state = self.proxy.outbound.state.borrow().clone();
        let service = ("shop".to_owned(), "backend".to_owned());
        let policy = state
            .services
            .get(&service)
            .map(|s| s.traffic_policy.clone())
            .unwrap_or_default();
        self.proxy
            .outbound
            .http
            .guards
            .get(&service, &policy)
            .breaker()
            .load()
    }

    /// A GET on a connection of its own, in the background.
    async fn spawn_get(&self, path: &'static str) -> anyhow::Result<JoinHandle<GetResult>> {
        let mut client = self.proxy.h1().await?;
        Ok(tokio::spawn(async move {
            let started = Instant::now();
            let (status, headers, _) = get(&mut client, path, &[]).await?;
            let mechanism = headers
                .get("x-weft-response")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            Ok((status, mechanism, started.elapsed()))
        }))
    }

    /// Waits until the breaker shows `connections` slots taken and `pending` requests waiting.
    async fn load_is(&self, connections: u32, pending: u32) -> anyhow::Result<()> {
        tokio::time::timeout(T, async {
            loop {
                let load = self.load();
                if (load.connections, load.pending_requests) == (connections, pending) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .map_err(|_| anyhow::anyhow!("breaker load stays {:?}", self.load()))
    }
}

type GetResult = anyhow::Result<(u16, String, Duration)>;

async fn done(task: JoinHandle<GetResult>) -> anyhow::Result<(u16, String, Duration)> {
    tokio::time::timeout(T, task).await??
}

#[tokio::test]
async fn pending_requests_wait_for_a_slot_and_then_succeed() -> anyhow::Result<()> {
    let bed = Bed::start(&limited(1, 2), "http").await?;
    let first = bed.spawn_get("/1").await?;
    bed.load_is(1, 0).await?;
    let second = bed.spawn_get("/2").await?;
    let third = bed.spawn_get("/3").await?;
    bed.load_is(1, 2).await?;
    for task in [first, second, third] {
        let (status, mechanism, _) = done(task).await?;
        assert_eq!((status, mechanism.as_str()), (200, ""));
    }
    assert_eq!(
        bed.seen.most(),
        1,
        "one connection slot: one request at a time"
    );
    assert_eq!(bed.backend.requests(), 3);
    bed.load_is(0, 0).await?;
    Ok(())
}

#[tokio::test]
async fn one_more_than_the_pending_places_is_refused_at_once() -> anyhow::Result<()> {
    let bed = Bed::start(&limited(1, 1), "http").await?;
    let first = bed.spawn_get("/1").await?;
    bed.load_is(1, 0).await?;
    let second = bed.spawn_get("/2").await?;
    bed.load_is(1, 1).await?;
    let (status, mechanism, took) = done(bed.spawn_get("/3").await?).await?;
    assert_eq!((status, mechanism.as_str()), (503, "circuit-open"));
    assert!(took < DELAY / 2, "refused after {took:?}");
    for task in [first, second] {
        assert_eq!(done(task).await?.0, 200);
    }
    assert_eq!(bed.backend.requests(), 2);
    assert!(
        bed.proxy.has_metric(
            r#"weft_http_proxy_responses_total{destination_service="shop/backend",mechanism="circuit-open"} 1"#
        ),
        "{}",
        bed.proxy.metrics_text()
    );
    Ok(())
}

#[tokio::test]
async fn new_limits_apply_to_the_running_proxy() -> anyhow::Result<()> {
    let bed = Bed::start(&limited(1, 1), "http").await?;
    let first = bed.spawn_get("/1").await?;
    bed.load_is(1, 0).await?;
    let second = bed.spawn_get("/2").await?;
    bed.load_is(1, 1).await?;

    // Two slots now: the waiting request goes at once, and so does one more.
    let raised = Arc::new(Bed::state(bed.port, "http", &limited(2, 1))?);
    bed.proxy._state.send_replace(raised.clone());
    bed.proxy.outbound.forget_removed_services(&raised);
    let (status, _, took) = done(second).await?;
    assert_eq!(status, 200);
    assert!(
        took < DELAY * 3 / 2,
        "waited for the first request: {took:?}"
    );
    assert_eq!(done(first).await?.0, 200);
    assert_eq!(bed.seen.most(), 2);
    let calls: Vec<_> = futures_util::future::try_join_all([
        bed.spawn_get("/a"),
        bed.spawn_get("/b"),
        bed.spawn_get("/c"),
        bed.spawn_get("/d"),
    ])
    .await?;
    let mut statuses = Vec::new();
    for task in calls {
        statuses.push(done(task).await?.0);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 503], "2 slots, 1 pending place");

    // With more slots than requests nobody waits, though nothing told the guards this time:
    // the next request finds the policy changed.
    let roomy = Bed::state(bed.port, "http", &limited(100, 1))?;
    bed.proxy._state.send_replace(Arc::new(roomy));
    let calls = futures_util::future::try_join_all((0..4).map(|_| bed.spawn_get("/e"))).await?;
    for task in calls {
        assert_eq!(done(task).await?.0, 200);
    }
    assert_eq!(bed.seen.most(), 4);
    Ok(())
}

#[tokio::test]
async fn h2c_requests_share_the_slot_of_their_connection() -> anyhow::Result<()> {
    let bed = Bed::start(&limited(1, 1), "grpc").await?;
    let client = bed.proxy.h2().await?;
    let calls = (0..10).map(|i| {
        let mut client = client.clone();
        async move {
            let req = Request::post(format!("http://backend.shop:80/svc/M{i}"))
                .header("content-type", "application/grpc")
                .body(full(""))?;
            let resp = tokio::time::timeout(T, client.send_request(req)).await??;
            let status = resp.status();
            resp.into_body().collect().await?;
            anyhow::Ok(status)
        }
    });
    let statuses = futures_util::future::try_join_all(calls).await?;
    // The connection keeps its slot while it is open; the requests held none of their own.
    bed.load_is(1, 0).await?;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(bed.backend.connections(), 1);
    assert_eq!(bed.seen.most(), 10, "multiplexed over the one connection");
    Ok(())
}
