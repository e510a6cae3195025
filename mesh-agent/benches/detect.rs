//! Cost of protocol detection, paid once per captured connection to an HTTP or undeclared port:
//! `sniff()` on typical first bytes, and `detect()` end to end over a loopback socket (one read,
//! the verdict, the consumed prefix).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_agent::proxy::detect::{Declared, DetectLimits, detect, sniff};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const HTTP1: &[u8] = b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: shop.example:80\r\n\r\n";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The first bytes of a TLS ClientHello: opaque at the first byte.
const TLS: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
];
/// A request line cut before its version: the longest undecided case.
const PARTIAL: &[u8] = b"POST /a/rather/long/path/to/a/resource?with=query&and=more HTTP/1";

fn sniffing(c: &mut Criterion) {
    for (name, bytes) in [
        ("http1", HTTP1),
        ("h2_preface", H2_PREFACE),
        ("tls", TLS),
        ("partial_request_line", PARTIAL),
    ] {
        c.bench_function(&format!("sniff/{name}"), |b| {
            b.iter(|| black_box(sniff(black_box(bytes))))
        });
    }
}

/// detect() on a connection whose client already sent its request: the proxy's real entry.
fn detecting(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("listener");
    let addr = listener.local_addr().expect("address");
    let limits = DetectLimits {
        first_bytes: Duration::from_secs(1),
        complete: Duration::from_secs(1),
    };
    for (name, declared) in [
        ("declared_http", Declared::Http),
        ("undeclared", Declared::Unknown),
    ] {
        c.bench_function(&format!("detect/http1_{name}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut client = TcpStream::connect(addr).await.expect("connect");
                    client.write_all(HTTP1).await.expect("write");
                    let (mut accepted, _) = listener.accept().await.expect("accept");
                    black_box(detect(&mut accepted, declared, limits).await)
                })
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(600));
    targets = sniffing, detecting
}
criterion_main!(benches);
