//! The pool replaces dead connections, closes idle ones, and waits (then fails clearly) when a
//! key has no stream free.

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Mesh, TestServer, bounded, echo, wait_until};
use crate::tunnel::{PoolConfig, TunnelError, TunnelPool};

fn pod() -> SocketAddr {
    SocketAddr::from(([10, 244, 1, 7], 8080))
}

async fn round_trip(pool: &TunnelPool, mesh: &Mesh, node: SocketAddr, text: &str) {
    let stream = pool
        .connect(&mesh.key(node), mesh.client_tls(), pod(), HeaderMap::new())
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    let (_, back) = echo(stream, text.as_bytes().to_vec()).await;
    assert_eq!(back, text.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_to_a_restarted_server_is_replaced() {
    bounded(async {
        let mesh = Mesh::new();
        let first = TestServer::start(mesh.server_tls(), |_| {}).await;
        let addr = first.addr;
        let pool = TunnelPool::new(PoolConfig::default());
        let key = mesh.key(addr);
        let mut draining = pool
            .connect(&key, mesh.client_tls(), pod(), HeaderMap::new())
            .await
            .expect("first stream");

        // Stopped gracefully (GOAWAY) while a stream keeps its connection open and pooled;
        // a new server takes the port. The next connect must not use the old connection.
        let stopped = first.stop();
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The GOAWAY left with the listener's close; give it time to cross loopback, since a
        // stream sent before it arrives would rightly still be served by the old server.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = TestServer::start_on(addr, mesh.server_tls(), |_| {}).await;
        round_trip(&pool, &mesh, addr, "second server").await;
        assert_eq!(second.counters.opened(), 1);
        assert_eq!(pool.connections(), 2);
        // The old stream finishes on the old server.
        draining.write_all(b"last words").await.expect("write");
        draining.shutdown().await.expect("shutdown");
        let mut back = Vec::new();
        draining.read_to_end(&mut back).await.expect("read");
        assert!(back.ends_with(b"last words"));
        drop(draining);
        stopped.await.expect("first server task");
        wait_until("the old connection is gone", || pool.connections() == 1).await;

        // Crashed (connections dropped without GOAWAY), restarted.
        second.kill().await;
        let third = TestServer::start_on(addr, mesh.server_tls(), |_| {}).await;
        round_trip(&pool, &mesh, addr, "third server").await;
        assert_eq!(third.counters.opened(), 1);
        wait_until("only the live connection is left", || {
            pool.connections() == 1
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close() {
    bounded(async {
        let mesh = Mesh::new();
        let server = TestServer::start(mesh.server_tls(), |_| {}).await;
        let pool = TunnelPool::new(PoolConfig {
            idle_timeout: Duration::from_millis(200),
            ..PoolConfig::default()
        });
        round_trip(&pool, &mesh, server.addr, "soon idle").await;
        wait_until("the client closed the idle connection", || {
            pool.connections() == 0
        })
        .await;
        wait_until("the server saw it close", || server.counters.open() == 0).await;
        round_trip(&pool, &mesh, server.addr, "a new connection").await;
        assert_eq!(server.counters.opened(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_key_waits_for_a_free_stream_then_gives_up() {
    bounded(async {
        let mesh = Mesh::new();
        let server = TestServer::start(mesh.server_tls(), |_| {}).await;
        let pool = TunnelPool::new(PoolConfig {
            max_streams_per_conn: 1,
            max_conns_per_key: 1,
            connect_timeout: Duration::from_millis(300),
            ..PoolConfig::default()
        });
        let key = mesh.key(server.addr);
        let connect = || pool.connect(&key, mesh.client_tls(), pod(), HeaderMap::new());
        let held = connect().await.expect("the only stream");

        match connect().await {
            Err(TunnelError::Connect(why)) => assert!(why.contains("free stream"), "{why}"),
            other => panic!("expected the pool to be full, got {:?}", other.err()),
        }
        // A waiting connect gets the stream as soon as it is released.
        let waiting = connect();
        let release = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(held);
        };
        let (next, ()) = tokio::join!(waiting, release);
        let (_, back) = echo(next.expect("the released stream"), b"next".to_vec()).await;
        assert_eq!(back, b"next");
        assert_eq!(server.counters.opened(), 1);
    })
    .await;
}
