//! Detection verdicts on byte strings, declarations of service ports, and the time limits over
//! real loopback sockets.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::state::Protocol;

fn port(name: Option<&str>, app: Option<&str>) -> ServicePort {
    ServicePort {
        name: name.map(str::to_owned),
        port: 80,
        target_port: 8080,
        protocol: Protocol::Tcp,
        app_protocol: app.map(str::to_owned),
    }
}

#[test]
fn request_lines_and_prefaces_are_recognised() {
    let cases: &[(&[u8], Sniff)] = &[
        (b"", Sniff::NeedMore),
        (b"G", Sniff::NeedMore),
        (b"GET", Sniff::NeedMore),
        (b"GET ", Sniff::NeedMore),
        (b"GET /a?b=c HTT", Sniff::NeedMore),
        (b"GET / HTTP/1.1", Sniff::NeedMore),
        (b"GET / HTTP/1.1\r", Sniff::NeedMore),
        (b"GET / HTTP/1.1\r\n", Sniff::Http1),
        (b"POST /x HTTP/1.0\r\nHost: a\r\n\r\n", Sniff::Http1),
        (b"OPTIONS * HTTP/1.1\n", Sniff::Http1),
        (b"PRI * HTTP/2.0\r\n", Sniff::NeedMore),
        (H2_PREFACE, Sniff::Http2),
        (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04",
            Sniff::Http2,
        ),
        // Opaque: not a method, lowercase, a banner-less binary protocol, a wrong version.
        (b"hello\n", Sniff::Opaque),
        (b"get / HTTP/1.1\r\n", Sniff::Opaque),
        (b"\x16\x03\x01\x02\x00", Sniff::Opaque),
        (b"GETX / HTTP/1.1\r\n", Sniff::Opaque),
        (b"GET key\r\n", Sniff::Opaque),
        (b"GET / HTTP/2.0\r\n", Sniff::Opaque),
        (b"GET  / HTTP/1.1\r\n", Sniff::Opaque),
        (b"GET / HTTP/1.1x", Sniff::Opaque),
        (b"PRI * HTTP/2.1", Sniff::Opaque),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            sniff(bytes),
            *expected,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn declarations_follow_app_protocol_then_port_name() {
    assert_eq!(declared(&port(None, None)), Declared::Unknown);
    assert_eq!(declared(&port(Some("http"), None)), Declared::Http);
    assert_eq!(declared(&port(Some("http-web"), None)), Declared::Http);
    assert_eq!(declared(&port(Some("HTTP2-api"), None)), Declared::Http2);
    assert_eq!(declared(&port(Some("grpc"), None)), Declared::Http2);
    assert_eq!(declared(&port(Some("tcp-db"), None)), Declared::Tcp);
    assert_eq!(declared(&port(Some("web"), None)), Declared::Unknown);
    assert_eq!(declared(&port(Some("httpx"), None)), Declared::Unknown);
    assert_eq!(
        declared(&port(Some("tcp"), Some("kubernetes.io/h2c"))),
        Declared::Http2
    );
    assert_eq!(declared(&port(Some("grpc"), Some("tcp"))), Declared::Tcp);
    // An unknown appProtocol leaves the decision to the name.
    assert_eq!(
        declared(&port(Some("http"), Some("example.com/custom"))),
        Declared::Http
    );
    assert!(Declared::Http2.upstream_h2() && !Declared::Http.upstream_h2());
}

/// A connected pair: (client side, proxy side).
async fn pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let (a, b) = tokio::join!(
        TcpStream::connect(listener.local_addr()?),
        listener.accept()
    );
    Ok((a?, b?.0))
}

const LIMITS: DetectLimits = DetectLimits {
    first_bytes: Duration::from_millis(100),
    complete: Duration::from_secs(2),
};

#[tokio::test]
async fn sniffing_reads_only_what_it_needs() -> anyhow::Result<()> {
    let (mut client, mut proxy) = pair().await?;
    client
        .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await?;
    let d = detect(&mut proxy, Declared::Unknown, LIMITS).await;
    assert_eq!(
        (d.protocol, d.reason),
        (AppProtocol::Http1, DetectReason::Sniffed)
    );
    assert!(d.prefix.starts_with(b"GET /x HTTP/1.1\r\n"));

    let (mut client, mut proxy) = pair().await?;
    // The preface in two writes: detection waits for the rest.
    client.write_all(&H2_PREFACE[..10]).await?;
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        client.write_all(&H2_PREFACE[10..]).await?;
        std::io::Result::Ok(client)
    });
    let d = detect(&mut proxy, Declared::Unknown, LIMITS).await;
    assert_eq!(
        (d.protocol, d.reason),
        (AppProtocol::Http2, DetectReason::Sniffed)
    );
    assert_eq!(&d.prefix[..], &H2_PREFACE[..]);
    let _client = writer.await??;
    Ok(())
}

#[tokio::test]
async fn a_silent_client_is_opaque_after_the_window() -> anyhow::Result<()> {
    let (_client, mut proxy) = pair().await?;
    let started = Instant::now();
    let d = detect(&mut proxy, Declared::Unknown, LIMITS).await;
    let waited = started.elapsed();
    assert_eq!(
        (d.protocol, d.reason),
        (AppProtocol::Tcp, DetectReason::Timeout)
    );
    assert!(d.prefix.is_empty());
    assert!(waited >= Duration::from_millis(95), "{waited:?}");
    assert!(waited < Duration::from_millis(400), "{waited:?}");
    Ok(())
}

#[tokio::test]
async fn declared_ports_skip_or_shorten_sniffing() -> anyhow::Result<()> {
    // Declared TCP: no read at all, no wait.
    let (_client, mut proxy) = pair().await?;
    let started = Instant::now();
    let d = detect(&mut proxy, Declared::Tcp, LIMITS).await;
    assert_eq!(
        (d.protocol, d.reason),
        (AppProtocol::Tcp, DetectReason::Declared)
    );
    assert!(started.elapsed() < Duration::from_millis(50));

    // Declared HTTP: the first non-preface byte settles HTTP/1.
    let (mut client, mut proxy) = pair().await?;
    client.write_all(b"CUSTOM /x HTTP/1.1\r\n").await?;
    let d = detect(&mut proxy, Declared::Http, LIMITS).await;
    assert_eq!(
        (d.protocol, d.reason),
        (AppProtocol::Http1, DetectReason::Declared)
    );

    // A closed client on an undeclared port: opaque, with what it sent.
    let (mut client, mut proxy) = pair().await?;
    client.write_all(b"GE").await?;
    client.shutdown().await?;
    let d = detect(&mut proxy, Declared::Unknown, LIMITS).await;
    assert_eq!(
        (d.protocol, d.reason),
        (AppProtocol::Tcp, DetectReason::Closed)
    );
    assert_eq!(&d.prefix[..], b"GE");
    Ok(())
}
