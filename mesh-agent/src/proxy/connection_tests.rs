//! Connection handling over real loopback sockets, with a fixed origin record standing in for
//! the kernel. Every address is on 127.0.0.0/8, the service VIP included, so a routing bug ends
//! in a local "connection refused", never in traffic leaving the machine.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mesh_common::Origin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::Outcome;
use crate::proxy::origin::{Captured, KernelOrigin, OriginLookup};
use crate::proxy::outbound::{Outbound, OutboundConfig};
use crate::state::{MeshState, Protocol, Service, ServicePort, Workload, WorkloadKey};
use crate::telemetry::Metrics;

const CLIENT_CGROUP: u64 = 42;
const T: Duration = Duration::from_secs(5);

struct FixedOrigin(SocketAddr);

impl OriginLookup for FixedOrigin {
    fn lookup(&self, _: &TcpStream) -> io::Result<Option<Captured>> {
        Ok(Some(Captured {
            original_dst: self.0,
            origin: Origin {
                pod_cgroup_id: CLIENT_CGROUP,
                ..Origin::default()
            },
        }))
    }
}

fn workload(ns: &str, name: &str, ip: &str, cgroup_id: Option<u64>) -> anyhow::Result<Workload> {
    Ok(Workload {
        key: WorkloadKey {
            namespace: ns.into(),
            name: name.into(),
        },
        uid: format!("uid-{name}"),
        service_account: "default".into(),
        node: "node1".into(),
        ips: vec![ip.parse()?],
        labels: BTreeMap::from([("app".to_owned(), name.to_owned())]),
        qos_class: None,
        cgroup: None,
        cgroup_id,
        cgroup_unresolved: None,
        enrolled: true,
    })
}

/// `shop/client` (cgroup 42) and service `shop/backend` at `vip:80` with two endpoints.
fn mesh(vip: IpAddr, target_port: u16, endpoint_ips: [&str; 2]) -> anyhow::Result<MeshState> {
    let mut state = MeshState::default();
    let mut endpoints = Vec::new();
    for (i, ip) in endpoint_ips.iter().enumerate() {
        let w = workload("shop", &format!("backend-{i}"), ip, None)?;
        endpoints.push(w.key.clone());
        state.workloads.insert(w.key.clone(), Arc::new(w));
    }
    let client = workload("shop", "client", "127.0.50.1", Some(CLIENT_CGROUP))?;
    state.workloads.insert(client.key.clone(), Arc::new(client));
    let service = Service {
        namespace: "shop".into(),
        name: "backend".into(),
        vips: vec![vip],
        ports: vec![ServicePort {
            name: None,
            port: 80,
            target_port,
            protocol: Protocol::Tcp,
            app_protocol: None,
        }],
        selector: BTreeMap::new(),
        endpoints,
        traffic_policy: Default::default(),
    };
    state
        .services
        .insert(("shop".into(), "backend".into()), Arc::new(service));
    state.index();
    Ok(state)
}

/// A server on `addr` that reads the whole request, answers `<id>:<request>` and closes.
fn spawn_named_server(listener: TcpListener, id: &'static str) {
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                s.read_to_end(&mut req).await?;
                s.write_all(format!("{id}:").as_bytes()).await?;
                s.write_all(&req).await?;
                s.shutdown().await
            });
        }
    });
}

struct Proxy {
    addr: SocketAddr,
    outbound: Arc<Outbound>,
    metrics: Arc<Metrics>,
    _stop: watch::Sender<bool>,
    _state: watch::Sender<Arc<MeshState>>,
}

async fn start_proxy(state: MeshState, origins: Arc<dyn OriginLookup>) -> anyhow::Result<Proxy> {
    let metrics = Arc::new(Metrics::new()?);
    let (state_tx, state_rx) = watch::channel(Arc::new(state));
    let config = OutboundConfig {
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(30),
        max_connections: 64,
        detect_timeout: Duration::from_millis(100),
        http: crate::proxy::HttpConfig::default(),
    };
    let outbound = Outbound::new(
        config,
        state_rx,
        origins,
        metrics.clone(),
        crate::proxy::dial::Dialer::plain(config.connect_timeout),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(outbound.clone().serve(listener, stop));
    Ok(Proxy {
        addr,
        outbound,
        metrics,
        _stop: stop_tx,
        _state: state_tx,
    })
}

async fn request(proxy: SocketAddr, body: &[u8]) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(proxy).await?;
    s.write_all(body).await?;
    s.shutdown().await?;
    let mut reply = String::new();
    tokio::time::timeout(T, s.read_to_string(&mut reply)).await??;
    Ok(reply)
}

/// Connects without sending and expects the proxy to close: EOF, or a reset.
async fn expect_closed(proxy: SocketAddr) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(proxy).await?;
    let mut reply = Vec::new();
    match tokio::time::timeout(T, s.read_to_end(&mut reply)).await? {
        Ok(_) => assert!(reply.is_empty(), "unexpected reply {reply:?}"),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
    }
    Ok(())
}

async fn settle(outbound: &Outbound) -> anyhow::Result<()> {
    tokio::time::timeout(T, async {
        while outbound.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn service_traffic_is_balanced_and_attributed() -> anyhow::Result<()> {
    let a = TcpListener::bind("127.0.0.1:0").await?;
    let port = a.local_addr()?.port();
    let b = TcpListener::bind(("127.0.0.2", port)).await?;
    spawn_named_server(a, "a");
    spawn_named_server(b, "b");
    let vip: SocketAddr = "127.0.96.10:80".parse()?;
    let state = mesh(vip.ip(), port, ["127.0.0.1", "127.0.0.2"])?;
    let proxy = start_proxy(state, Arc::new(FixedOrigin(vip))).await?;

    let mut replies = Vec::new();
    for i in 0..4 {
        replies.push(request(proxy.addr, format!("req{i}").as_bytes()).await?);
    }
    assert_eq!(replies, ["a:req0", "b:req1", "a:req2", "b:req3"]);

    settle(&proxy.outbound).await?;
    let text = proxy.metrics.encode()?;
    // Each backend got two connections: "reqN" in (4 bytes), "a:reqN" back (6 bytes).
    for backend in ["backend-0", "backend-1"] {
        let labels = format!(
            r#"{{connection_security_policy="none",destination_namespace="shop",destination_principal="unknown",destination_service="shop/backend",destination_workload="{backend}",reporter="source",request_protocol="tcp",response_flags="-",source_namespace="shop",source_principal="unknown",source_workload="client"}}"#
        );
        for line in [
            format!("weft_tcp_connections_opened_total{labels} 2"),
            format!("weft_tcp_connections_closed_total{labels} 2"),
            format!("weft_tcp_sent_bytes_total{labels} 8"),
            format!("weft_tcp_received_bytes_total{labels} 12"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn unknown_destinations_pass_through_to_the_original_destination() -> anyhow::Result<()> {
    let direct = TcpListener::bind("127.0.0.1:0").await?;
    let direct_addr = direct.local_addr()?;
    spawn_named_server(direct, "direct");
    let state = mesh("127.0.96.10".parse()?, 1, ["127.0.0.1", "127.0.0.2"])?;
    let proxy = start_proxy(state, Arc::new(FixedOrigin(direct_addr))).await?;

    assert_eq!(request(proxy.addr, b"hello").await?, "direct:hello");
    settle(&proxy.outbound).await?;
    let text = proxy.metrics.encode()?;
    let closed = crate::testbed::AgentProcess::metric_sum(
        &text,
        "weft_tcp_connections_closed_total",
        &[
            ("destination_service", "unknown"),
            ("source_workload", "client"),
        ],
    );
    assert_eq!(closed, 1.0, "{text}");
    Ok(())
}

#[tokio::test]
async fn upstream_failures_are_reported() -> anyhow::Result<()> {
    // A port that was just free: connecting to it is refused.
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let state = mesh(
        "127.0.96.10".parse()?,
        closed.port(),
        ["127.0.0.1", "127.0.0.2"],
    )?;
    let proxy = start_proxy(state, Arc::new(FixedOrigin(closed))).await?;
    let (client, _server) = {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let (c, s) = tokio::join!(TcpStream::connect(l.local_addr()?), l.accept());
        (c?, s?.0)
    };
    let done = proxy
        .outbound
        .forward_tcp(client, Some(closed), Default::default(), None, None)
        .await;
    assert_eq!(done.outcome, Outcome::ConnectError);
    assert!(!done.error.is_empty());

    let (client, _server) = {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let (c, s) = tokio::join!(TcpStream::connect(l.local_addr()?), l.accept());
        (c?, s?.0)
    };
    let done = proxy
        .outbound
        .forward_tcp(client, None, Default::default(), None, None)
        .await;
    assert_eq!(done.outcome, Outcome::ConnectError);
    assert_eq!(done.error, "service has no endpoints");

    // Through the listener the client just sees its connection closed.
    expect_closed(proxy.addr).await?;
    Ok(())
}

#[tokio::test]
async fn sockets_without_an_origin_record_are_refused() -> anyhow::Result<()> {
    let state = mesh("127.0.96.10".parse()?, 1, ["127.0.0.1", "127.0.0.2"])?;
    let proxy = start_proxy(state, Arc::new(KernelOrigin)).await?;
    expect_closed(proxy.addr).await?;
    settle(&proxy.outbound).await?;
    let text = proxy.metrics.encode()?;
    assert!(
        text.contains(r#"weft_proxy_refused_connections_total{reason="no_origin"} 1"#),
        "{text}"
    );
    assert!(
        !text.contains("weft_tcp_connections_opened_total{"),
        "{text}"
    );
    Ok(())
}
