//! Forwarding: detection through the proxy, header rules, keep-alive reuse, h2c multiplexing,
//! trailers, upgrades, and server-speaks-first protocols.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// One backend `b1` behind service `shop/backend`, port 80 named `port_name`.
async fn one_backend(
    handler: Handler,
    port_name: Option<&str>,
) -> anyhow::Result<(Backend, Proxy)> {
    let listener = TcpListener::bind("127.0.0.2:0").await?;
    let port = listener.local_addr()?.port();
    let backend = serve(listener, handler)?;
    let svc = service("backend", "127.0.96.10", "b1", port, port_name, "");
    let proxy = Proxy::start(state(&[("b1", "127.0.0.2")], &svc, "")?).await?;
    Ok((backend, proxy))
}

fn header_line<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[tokio::test]
async fn sniffed_http1_gets_proxy_headers_and_keeps_hop_by_hop_fields_local() -> anyhow::Result<()>
{
    let (backend, proxy) = one_backend(echo("b1"), None).await?;
    let mut client = proxy.h1().await?;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (status, headers, body) = get(
        &mut client,
        "/hello?x=1",
        &[
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("traceparent", traceparent),
            ("x-forwarded-for", "192.0.2.7"),
            ("x-custom", "kept"),
        ],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-backend"], "b1");
    assert!(body.starts_with("GET /hello HTTP/1.1"), "{body}");
    for gone in ["connection", "x-hop", "keep-alive", "proxy-connection"] {
        assert_eq!(
            header_line(&body, gone),
            None,
            "{gone} reached the backend:\n{body}"
        );
    }
    assert_eq!(header_line(&body, "te"), Some("trailers"));
    assert_eq!(header_line(&body, "traceparent"), Some(traceparent));
    assert_eq!(header_line(&body, "x-custom"), Some("kept"));
    assert_eq!(header_line(&body, "host"), Some("backend.shop"));
    assert_eq!(
        header_line(&body, "x-forwarded-for"),
        Some("192.0.2.7, 127.0.0.1")
    );
    let id = header_line(&body, "x-request-id").unwrap_or_default();
    assert_eq!(id.len(), 36, "{body}");

    // A request id the client set is kept.
    let (_, _, body) = get(&mut client, "/", &[("x-request-id", "abc-1")]).await?;
    assert_eq!(header_line(&body, "x-request-id"), Some("abc-1"));

    // Keep-alive: more requests on this client connection reuse one upstream connection.
    for _ in 0..3 {
        assert_eq!(get(&mut client, "/again", &[]).await?.0, 200);
    }
    assert_eq!(backend.requests(), 5);
    assert_eq!(
        backend.connections(),
        1,
        "the upstream connection was not reused"
    );
    drop(client);
    proxy.settle().await?;
    assert!(
        proxy.has_metric(r#"weft_protocol_detections_total{protocol="http1",reason="sniffed"} 1"#),
        "{}",
        proxy.metrics_text()
    );
    let text = proxy.metrics_text();
    let labels = [
        ("reporter", "source"),
        ("destination_service", "shop/backend"),
        ("response_code", "200"),
        ("request_protocol", "http"),
        ("response_flags", "-"),
        ("source_workload", "unknown"),
    ];
    let sum = |name| crate::testbed::AgentProcess::metric_sum(&text, name, &labels);
    assert_eq!(sum("weft_requests_total"), 5.0, "{text}");
    assert_eq!(
        sum("weft_request_duration_milliseconds_count"),
        5.0,
        "{text}"
    );
    assert_eq!(sum("weft_response_bytes_count"), 5.0, "{text}");
    Ok(())
}

/// Sleeps, then answers with the version and authority the backend saw.
fn slow_version(delay: Duration) -> Handler {
    Arc::new(move |req: Request<Incoming>| {
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let text = format!(
                "{:?} {}",
                req.version(),
                req.uri().authority().map_or("-", |a| a.as_str())
            );
            Response::new(full(text))
        })
    })
}

#[tokio::test]
async fn h2c_requests_share_one_upstream_connection() -> anyhow::Result<()> {
    let (backend, proxy) =
        one_backend(slow_version(Duration::from_millis(50)), Some("grpc")).await?;
    let client = proxy.h2().await?;
    let calls = (0..20).map(|i| {
        let mut client = client.clone();
        async move {
            let req = Request::post(format!("http://backend.shop:80/svc/M{i}"))
                .header("content-type", "application/grpc")
                .body(full(""))?;
            let resp = tokio::time::timeout(T, client.send_request(req)).await??;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
        }
    });
    let started = Instant::now();
    let results = futures_util::future::try_join_all(calls).await?;
    for (status, body) in &results {
        assert_eq!(*status, StatusCode::OK);
        // HTTP/2 upstream, and the client's authority went along unchanged.
        assert_eq!(body, "HTTP/2.0 backend.shop:80");
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "not concurrent: {:?}",
        started.elapsed()
    );
    assert_eq!(backend.connections(), 1);
    assert!(
        proxy.has_metric(r#"weft_protocol_detections_total{protocol="http2",reason="declared"} 1"#),
        "{}",
        proxy.metrics_text()
    );
    Ok(())
}

/// A gRPC-style answer: a message, then trailers with the status.
fn grpc_like() -> Handler {
    Arc::new(|_req: Request<Incoming>| {
        Box::pin(async move {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            trailers.insert("grpc-message", http::HeaderValue::from_static("fine"));
            let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
                Ok(Frame::data(Bytes::from_static(b"\x00\x00\x00\x00\x02hi"))),
                Ok(Frame::trailers(trailers)),
            ];
            let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
            let mut resp = Response::new(body);
            resp.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/grpc"),
            );
            resp
        })
    })
}

#[tokio::test]
async fn grpc_trailers_reach_the_client() -> anyhow::Result<()> {
    // Undeclared port: the h2 preface is sniffed.
    let (_backend, proxy) = one_backend(grpc_like(), None).await?;
    let mut client = proxy.h2().await?;
    let req = Request::post("http://backend.shop/echo.Echo/Say")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full(Bytes::from_static(b"\x00\x00\x00\x00\x00")))?;
    let resp = tokio::time::timeout(T, client.send_request(req)).await??;
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = tokio::time::timeout(T, resp.into_body().collect()).await??;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    assert_eq!(
        trailers.get("grpc-message").map(|v| v.as_bytes()),
        Some(&b"fine"[..])
    );
    assert_eq!(&collected.to_bytes()[..], b"\x00\x00\x00\x00\x02hi");
    assert!(
        proxy.has_metric(r#"weft_protocol_detections_total{protocol="http2",reason="sniffed"} 1"#)
    );
    Ok(())
}

/// Grants `Upgrade: echo` and echoes bytes on the upgraded connection.
fn upgrade_echo() -> Handler {
    Arc::new(|mut req: Request<Incoming>| {
        Box::pin(async move {
            if req.headers().get("upgrade").is_none() {
                return Response::new(full("no upgrade"));
            }
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = io.read(&mut buf).await {
                        if io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut resp = Response::new(full(""));
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            resp.headers_mut()
                .insert("upgrade", http::HeaderValue::from_static("echo"));
            resp.headers_mut()
                .insert("connection", http::HeaderValue::from_static("upgrade"));
            resp
        })
    })
}

#[tokio::test]
async fn upgrades_are_tunnelled() -> anyhow::Result<()> {
    let (_backend, proxy) = one_backend(upgrade_echo(), Some("http")).await?;
    let mut client = proxy.h1().await?;
    let req = Request::get("/ws")
        .header("host", "backend.shop")
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(full(""))?;
    let resp = tokio::time::timeout(T, client.send_request(req)).await??;
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["upgrade"], "echo");
    let upgraded = tokio::time::timeout(T, hyper::upgrade::on(resp)).await??;
    let mut io = TokioIo::new(upgraded);
    for word in [&b"ping"[..], b"pong!", b"x"] {
        io.write_all(word).await?;
        let mut back = vec![0u8; word.len()];
        tokio::time::timeout(T, io.read_exact(&mut back)).await??;
        assert_eq!(back, word);
    }
    io.shutdown().await?;
    drop(io);
    proxy.settle().await?;
    let text = proxy.metrics_text();
    assert!(text.contains("weft_tcp_sent_bytes_total"), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_banner_first_server_is_not_held_up() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.2:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                s.write_all(b"220 ready\r\n").await?;
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await?;
                s.write_all(&buf[..n]).await
            });
        }
    });
    let svc = service("backend", "127.0.96.10", "b1", port, None, "");
    let proxy = Proxy::start(state(&[("b1", "127.0.0.2")], &svc, "")?).await?;
    let started = Instant::now();
    let mut s = TcpStream::connect(proxy.addr).await?;
    let mut banner = [0u8; 11];
    tokio::time::timeout(T, s.read_exact(&mut banner)).await??;
    let waited = started.elapsed();
    assert_eq!(&banner, b"220 ready\r\n");
    // The detection window (100 ms) plus a margin for a loaded machine.
    assert!(
        waited < Duration::from_millis(400),
        "banner after {waited:?}"
    );
    s.write_all(b"QUIT\r\n").await?;
    let mut echo = [0u8; 6];
    tokio::time::timeout(T, s.read_exact(&mut echo)).await??;
    assert_eq!(&echo, b"QUIT\r\n");
    assert!(
        proxy.has_metric(r#"weft_protocol_detections_total{protocol="tcp",reason="timeout"} 1"#)
    );
    Ok(())
}

#[tokio::test]
async fn draining_closes_idle_keep_alive_connections_at_once() -> anyhow::Result<()> {
    let (_backend, proxy) = one_backend(echo("b1"), Some("http")).await?;
    let mut client = proxy.h1().await?;
    assert_eq!(get(&mut client, "/", &[]).await?.0, 200);
    assert_eq!(proxy.outbound.in_flight(), 1);
    let started = Instant::now();
    let cut = proxy.outbound.drain(Duration::from_secs(3)).await;
    assert_eq!(cut, 0, "an idle keep-alive connection had to be cut");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    tokio::time::timeout(T, async {
        while !client.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    Ok(())
}
