//! The server refuses and counts bad peers without disturbing good tunnels, bounds its
//! connections, and stops gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::pki::TestCa;
use super::{Mesh, TestServer, bounded, wait_until};
use crate::tunnel::{PoolConfig, PoolKey, Rejection, TunnelError, TunnelPool, TunnelStream};

fn pod() -> SocketAddr {
    SocketAddr::from(([10, 244, 1, 7], 8080))
}

/// Writes `text` and reads the same back (after the echo handler's first line, if `first`).
async fn ping(stream: &mut TunnelStream, text: &str, first: bool) {
    stream.write_all(text.as_bytes()).await.expect("write");
    let expected = if first {
        format!("{} -\n{text}", pod())
    } else {
        text.to_owned()
    };
    let mut back = vec![0; expected.len()];
    stream.read_exact(&mut back).await.expect("read");
    assert_eq!(String::from_utf8_lossy(&back), expected);
}

/// Connects with a fresh pool (so nothing is shared with the good tunnel).
async fn connect_with(key: &PoolKey, tls: Arc<rustls::ClientConfig>) -> Result<(), TunnelError> {
    let pool = TunnelPool::new(PoolConfig::default());
    pool.connect(key, tls, pod(), HeaderMap::new())
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peers_are_refused_and_counted_while_a_good_tunnel_works() {
    bounded(async {
        let mesh = Mesh::new();
        let server = TestServer::start(mesh.server_tls(), |cfg| {
            cfg.handshake_timeout = Duration::from_millis(300);
        })
        .await;
        let key = mesh.key(server.addr);
        let pool = TunnelPool::new(PoolConfig::default());
        let mut good = pool
            .connect(&key, mesh.client_tls(), pod(), HeaderMap::new())
            .await
            .expect("good tunnel");
        ping(&mut good, "before", true).await;

        // Not TLS at all.
        let mut garbage = TcpStream::connect(server.addr).await.expect("tcp");
        garbage
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let _ = garbage.read_to_end(&mut Vec::new()).await;
        // Client certificates the server must not accept.
        let rogue = TestCa::new("rogue CA");
        for (what, leaf) in [
            ("unknown CA", Some(rogue.leaf(&mesh.web))),
            ("expired", Some(mesh.ca.expired_leaf(&mesh.web))),
            ("no certificate", None),
        ] {
            let tls = mesh.ca.client_config(leaf.as_ref());
            match connect_with(&key, tls).await {
                Err(TunnelError::Tls(_)) => {}
                other => panic!("{what}: expected a TLS failure, got {other:?}"),
            }
        }
        // TLS without h2.
        let tcp = TcpStream::connect(server.addr).await.expect("tcp");
        let tls = mesh
            .ca
            .client_config_alpn(Some(&mesh.web_leaf), vec![b"http/1.1".to_vec()]);
        let handshake = TlsConnector::from(tls)
            .connect(mesh.db.server_name(), tcp)
            .await;
        assert!(
            handshake.is_err(),
            "the server must not accept ALPN http/1.1"
        );
        // Connected, then silent.
        let _silent = TcpStream::connect(server.addr).await.expect("tcp");

        let counters = &server.counters;
        wait_until("every refusal is counted", || {
            counters.rejected_total() == 6
        })
        .await;
        assert_eq!(counters.rejected(Rejection::Tls), 1);
        assert_eq!(counters.rejected(Rejection::PeerCertificate), 3);
        assert_eq!(counters.rejected(Rejection::NotH2), 1);
        assert_eq!(counters.rejected(Rejection::HandshakeTimeout), 1);
        assert_eq!(counters.opened(), 1);

        ping(&mut good, "after", false).await;
        good.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        good.read_to_end(&mut rest).await.expect("read to the end");
        assert!(rest.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused_until_one_closes() {
    bounded(async {
        let mesh = Mesh::new();
        let server = TestServer::start(mesh.server_tls(), |cfg| cfg.max_connections = 1).await;
        let key = mesh.key(server.addr);
        let pool = TunnelPool::new(PoolConfig::default());
        let mut first = pool
            .connect(&key, mesh.client_tls(), pod(), HeaderMap::new())
            .await
            .expect("first connection");
        ping(&mut first, "one", true).await;

        let refused = connect_with(&key, mesh.client_tls()).await;
        assert!(refused.is_err(), "a second connection must be refused");
        assert_eq!(server.counters.rejected(Rejection::Overloaded), 1);
        ping(&mut first, "still", false).await;

        drop(first);
        drop(pool);
        wait_until("the first connection closed", || {
            server.counters.open() == 0
        })
        .await;
        connect_with(&key, mesh.client_tls())
            .await
            .expect("a connection after the first closed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_lets_open_streams_finish_and_takes_no_new_connections() {
    bounded(async {
        let mesh = Mesh::new();
        let server = TestServer::start(mesh.server_tls(), |_| {}).await;
        let key = mesh.key(server.addr);
        let pool = TunnelPool::new(PoolConfig::default());
        let mut open = pool
            .connect(&key, mesh.client_tls(), pod(), HeaderMap::new())
            .await
            .expect("tunnel");
        ping(&mut open, "before stop", true).await;

        let addr = server.addr;
        let stopped = server.stop();
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The listener is closed: no new connection. (A stream racing the GOAWAY on the old
        // connection may still be served, as HTTP/2's two-step GOAWAY intends.)
        let late = connect_with(&key, mesh.client_tls()).await;
        assert!(matches!(late, Err(TunnelError::Connect(_))), "{late:?}");
        ping(&mut open, "after stop", false).await;
        assert!(
            !stopped.is_finished(),
            "the server waits for the open stream"
        );
        open.shutdown().await.expect("shutdown");
        open.read_to_end(&mut Vec::new())
            .await
            .expect("read to the end");
        drop(open);
        stopped.await.expect("server task");
    })
    .await;
}
