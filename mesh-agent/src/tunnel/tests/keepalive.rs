//! A peer that goes silent without closing (a crashed node, a partition) is dropped by both
//! ends once it stops answering PINGs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Mesh, TestServer, bounded, echo, wait_until};
use crate::tunnel::{PoolConfig, TunnelPool};

const INTERVAL: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_millis(200);

/// Forwards one TCP connection to `to` until `frozen`, then holds it open and silent.
async fn relay(to: SocketAddr, frozen: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let addr = listener.local_addr().expect("relay address");
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.expect("relay accept");
        let server = TcpStream::connect(to).await.expect("relay connect");
        let (client_r, client_w) = client.into_split();
        let (server_r, server_w) = server.into_split();
        tokio::join!(
            forward(client_r, server_w, frozen.clone()),
            forward(server_r, client_w, frozen),
        );
    });
    addr
}

async fn forward(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            // Keep both sockets open and pass nothing on.
            return std::future::pending().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_dropped_by_both_ends() {
    bounded(async {
        let mesh = Mesh::new();
        let server = TestServer::start(mesh.server_tls(), |cfg| {
            cfg.keepalive_interval = Some(INTERVAL);
            cfg.keepalive_timeout = TIMEOUT;
        })
        .await;
        let frozen = Arc::new(AtomicBool::new(false));
        let node = relay(server.addr, frozen.clone()).await;
        let pool = TunnelPool::new(PoolConfig {
            keepalive_interval: Some(INTERVAL),
            keepalive_timeout: TIMEOUT,
            ..PoolConfig::default()
        });
        let pod = SocketAddr::from(([10, 244, 1, 7], 8080));
        let stream = pool
            .connect(&mesh.key(node), mesh.client_tls(), pod, HeaderMap::new())
            .await
            .expect("tunnel through the relay");
        let (_, back) = echo(stream, b"alive".to_vec()).await;
        assert_eq!(back, b"alive");
        // Answered PINGs keep an idle connection open.
        tokio::time::sleep(INTERVAL * 5).await;
        assert_eq!(pool.connections(), 1);
        assert_eq!(server.counters.open(), 1);

        frozen.store(true, Ordering::SeqCst);
        wait_until("the client dropped the connection", || {
            pool.connections() == 0
        })
        .await;
        wait_until("the server dropped the connection", || {
            server.counters.open() == 0
        })
        .await;
    })
    .await;
}
