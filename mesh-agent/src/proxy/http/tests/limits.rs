//! Misbehaving clients: malformed requests, oversized headers, bodies that stop halfway. Each
//! gets an error answer or a clean close, and the proxy keeps serving everyone else.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

async fn echo_proxy() -> anyhow::Result<(Backend, Proxy)> {
    let listener = TcpListener::bind("127.0.0.2:0").await?;
    let port = listener.local_addr()?.port();
    let backend = serve(listener, echo("b1"))?;
    let svc = service("backend", "127.0.96.10", "b1", port, Some("http"), "");
    let proxy = Proxy::start(state(&[("b1", "127.0.0.2")], &svc, "")?).await?;
    Ok((backend, proxy))
}

/// Sends `request` raw and reads whatever comes back until the proxy closes.
async fn raw(proxy: &Proxy, request: &[u8]) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(proxy.addr).await?;
    s.write_all(request).await?;
    let mut reply = Vec::new();
    // A reset after the answer is a clean enough close for a client that sent garbage.
    let _ = tokio::time::timeout(T, s.read_to_end(&mut reply)).await?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

#[tokio::test]
async fn malformed_requests_get_400_and_others_are_still_served() -> anyhow::Result<()> {
    let (backend, proxy) = echo_proxy().await?;
    let reply = raw(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n",
    )
    .await?;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");
    let reply = raw(&proxy, b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n").await?;
    assert!(
        reply.starts_with("HTTP/1.1 400") || reply.is_empty(),
        "{reply:?}"
    );
    assert_eq!(backend.requests(), 0);

    let mut client = proxy.h1().await?;
    assert_eq!(get(&mut client, "/ok", &[]).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn huge_headers_are_refused_while_a_good_client_is_served() -> anyhow::Result<()> {
    let (backend, proxy) = echo_proxy().await?;
    let mut good = proxy.h1().await?;
    let huge = tokio::spawn({
        let addr = proxy.addr;
        async move {
            let mut s = TcpStream::connect(addr).await?;
            let mut request = b"GET / HTTP/1.1\r\nHost: a\r\nx-big: ".to_vec();
            request.resize(request.len() + (1 << 20), b'a');
            request.extend_from_slice(b"\r\n\r\n");
            // The proxy may close before everything is written.
            let _ = s.write_all(&request).await;
            let mut reply = Vec::new();
            let _ = tokio::time::timeout(T, s.read_to_end(&mut reply)).await;
            anyhow::Ok(String::from_utf8_lossy(&reply).into_owned())
        }
    });
    for _ in 0..5 {
        assert_eq!(get(&mut good, "/ok", &[]).await?.0, 200);
    }
    let reply = tokio::time::timeout(T, huge).await???;
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "{reply:?}"
    );
    assert_eq!(backend.requests(), 5);
    Ok(())
}

#[tokio::test]
async fn a_client_that_stops_mid_body_is_closed_cleanly() -> anyhow::Result<()> {
    let (_backend, proxy) = echo_proxy().await?;
    let mut s = TcpStream::connect(proxy.addr).await?;
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(s);
    proxy.settle().await?;
    let text = proxy.metrics_text();
    assert!(text.contains("weft_tcp_connections_closed_total"), "{text}");
    let mut client = proxy.h1().await?;
    assert_eq!(get(&mut client, "/after", &[]).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn a_slow_header_is_cut_at_the_header_read_timeout() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.2:0").await?;
    let port = listener.local_addr()?.port();
    let _backend = serve(listener, echo("b1"))?;
    let svc = service("backend", "127.0.96.10", "b1", port, Some("http"), "");
    let config = HttpConfig {
        header_read_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let proxy = Proxy::with_config(state(&[("b1", "127.0.0.2")], &svc, "")?, config).await?;
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(proxy.addr).await?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nx-slow: ")
        .await?;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut reply)).await?;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    proxy.settle().await?;
    Ok(())
}

#[tokio::test]
async fn a_stalled_upload_gets_408_and_a_close() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.2:0").await?;
    let port = listener.local_addr()?.port();
    let _backend = serve(listener, echo("b1"))?;
    let svc = service("backend", "127.0.96.10", "b1", port, Some("http"), "");
    let config = HttpConfig {
        body_idle_timeout: Some(Duration::from_millis(300)),
        ..HttpConfig::default()
    };
    let proxy = Proxy::with_config(state(&[("b1", "127.0.0.2")], &svc, "")?, config).await?;
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(proxy.addr).await?;
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n0123456789")
        .await?;
    // The write side stays open: the client is slow, not gone.
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut reply)).await?;
    let waited = started.elapsed();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    assert!(
        reply.contains("x-weft-response: request-timeout"),
        "{reply:?}"
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    proxy.settle().await?;
    Ok(())
}
