//! Streams carry bytes both ways, share connections, and get the server's answer.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_rustls::TlsConnector;

use super::{DROP_RESPONDER, Mesh, REFUSE_403, TestServer, bounded, echo, payload, wait_until};
use crate::tunnel::{PoolConfig, TunnelError, TunnelPool};

const STREAMS: usize = 200;
const MAX_STREAMS: usize = 100;

fn pod(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 244, 1, 7], port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_echo_both_ways_on_few_connections() {
    bounded(async {
        let mesh = Mesh::new();
        let server = TestServer::start(mesh.server_tls(), |_| {}).await;
        let pool = TunnelPool::new(PoolConfig {
            max_streams_per_conn: MAX_STREAMS,
            ..PoolConfig::default()
        });
        let key = mesh.key(server.addr);
        let tls = mesh.client_tls();
        // Every stream is open before any transfers, so all STREAMS are concurrent.
        let all_open = Arc::new(Barrier::new(STREAMS));
        let mut tasks = Vec::new();
        for i in 0..STREAMS {
            let (pool, key, tls, all_open) =
                (pool.clone(), key.clone(), tls.clone(), all_open.clone());
            tasks.push(tokio::spawn(async move {
                let mut headers = HeaderMap::new();
                headers.insert("x-tag", HeaderValue::from(i));
                let authority = pod(10_000 + i as u16);
                let stream = pool.connect(&key, tls, authority, headers).await;
                let stream = stream.unwrap_or_else(|e| panic!("stream {i}: {e}"));
                all_open.wait().await;
                let sent = payload(i, if i == 0 { 1024 * 1024 } else { 4096 + i });
                let (first, back) = echo(stream, sent.clone()).await;
                assert_eq!(first, format!("{authority} {i}"), "stream {i}");
                assert!(back == sent, "stream {i}: echoed bytes differ");
            }));
        }
        for task in tasks {
            task.await.expect("stream task");
        }
        assert_eq!(pool.connections(), STREAMS.div_ceil(MAX_STREAMS));
        assert_eq!(
            server.counters.opened(),
            STREAMS.div_ceil(MAX_STREAMS) as u64
        );
        assert_eq!(server.counters.rejected_total(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_reach_the_client_and_leave_the_connection_usable() {
    bounded(async {
        let mesh = Mesh::new();
        let server = TestServer::start(mesh.server_tls(), |_| {}).await;
        let pool = TunnelPool::new(PoolConfig::default());
        let key = mesh.key(server.addr);
        let connect = |port| pool.connect(&key, mesh.client_tls(), pod(port), HeaderMap::new());

        let refused = connect(REFUSE_403).await.err();
        assert_eq!(refused, Some(TunnelError::Refused(StatusCode::FORBIDDEN)));
        // A handler that forgets to answer still answers.
        let dropped = connect(DROP_RESPONDER).await.err();
        assert_eq!(
            dropped,
            Some(TunnelError::Refused(StatusCode::INTERNAL_SERVER_ERROR))
        );
        let stream = connect(8080).await.expect("accepted stream");
        let (first, back) = echo(stream, b"after the refusals".to_vec()).await;
        assert_eq!(first, format!("{} -", pod(8080)));
        assert_eq!(back, b"after the refusals");
        assert_eq!(pool.connections(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_other_than_connect_to_ip_port_get_400() {
    bounded(async {
        let mesh = Mesh::new();
        let server = TestServer::start(mesh.server_tls(), |_| {}).await;
        let tcp = TcpStream::connect(server.addr).await.expect("tcp");
        let tls = TlsConnector::from(mesh.client_tls())
            .connect(mesh.db.server_name(), tcp)
            .await
            .expect("tls");
        let (sender, conn) = h2::client::handshake(tls).await.expect("h2");
        tokio::spawn(conn);
        for (method, uri) in [
            (Method::GET, "https://10.244.1.7:80/"),
            (Method::CONNECT, "db.shop:80"),
        ] {
            let mut request = Request::new(());
            *request.method_mut() = method.clone();
            *request.uri_mut() = uri.parse().expect("uri");
            let mut sender = sender.clone().ready().await.expect("ready");
            let (response, _body) = sender.send_request(request, false).expect("send");
            let response = response.await.expect("response");
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{method} {uri}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_showing_another_identity_fails_at_the_client() {
    bounded(async {
        let mesh = Mesh::new();
        // Asked for db's name, the server shows web's certificate.
        let server_tls = mesh.ca.server_config(vec![(&mesh.db, &mesh.web_leaf)]);
        let server = TestServer::start(server_tls, |_| {}).await;
        let pool = TunnelPool::new(PoolConfig::default());
        let result = pool
            .connect(
                &mesh.key(server.addr),
                mesh.client_tls(),
                pod(80),
                HeaderMap::new(),
            )
            .await;
        match result {
            Err(TunnelError::Tls(why)) => assert!(why.contains("certificate"), "{why}"),
            other => panic!("expected a TLS failure, got {:?}", other.err()),
        }
        wait_until("the failed connection is gone", || pool.connections() == 0).await;
    })
    .await;
}
