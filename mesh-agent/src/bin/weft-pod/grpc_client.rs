//! `grpc-call`: K unary or server-streaming calls to `weft.echo.Echo` through tonic over h2c,
//! summarized as status codes (what the peer answered), transport errors (what failed locally),
//! the serving pods, and whether the last call's `grpc-status` arrived as trailing metadata: a
//! proxy that drops HTTP/2 trailers breaks gRPC, and this is how a test sees it.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use clap::Args;
use hyper::body::{Body, Frame, SizeHint};
use serde_json::{Value, json};
use tonic::codegen::Service;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::echo::EchoRequest;
use crate::echo::echo_client::EchoClient;
use crate::errors::chain_key;
use crate::grpc_server::MAX_STREAM;

/// Every run ends within this time, whatever K says.
const OVERALL_CAP: Duration = Duration::from_secs(120);
/// The local timer fires this long after the deadline sent in `grpc-timeout`, so a server or
/// proxy that enforces the deadline is seen answering with its status.
const DEADLINE_GRACE: Duration = Duration::from_millis(250);

#[derive(Args)]
pub struct CallArgs {
    #[arg(long)]
    to: SocketAddr,
    /// Server-streaming call asking for this many replies (default: unary).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_STREAM)))]
    stream: Option<u32>,
    #[arg(long, default_value = "hello")]
    message: String,
    /// Ask the server to answer this gRPC status code.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    status: u32,
    /// Calls, one after the other on one channel.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    count: u32,
    /// Ask the server to wait this long before answering.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    delay_ms: u32,
    /// Deadline of each call, sent as `grpc-timeout`.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=120_000))]
    timeout_ms: u64,
    /// `:authority` of the calls (default: the `--to` address).
    #[arg(long)]
    authority: Option<String>,
}

/// How one call ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The peer answered a status (0 for success).
    Answered {
        code: i32,
        server: Option<String>,
        replies: u64,
    },
    /// No status from the peer: connection failure, reset stream, local timeout.
    Failed { kind: String, replies: u64 },
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    statuses: BTreeMap<i32, u64>,
    replies: u64,
    servers: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Answered {
                code,
                server,
                replies,
            } => {
                self.ok += u64::from(code == 0);
                *self.statuses.entry(code).or_default() += 1;
                self.replies += replies;
                if let Some(server) = server {
                    *self.servers.entry(server).or_default() += 1;
                }
            }
            Outcome::Failed { kind, replies } => {
                self.replies += replies;
                *self.errors.entry(kind).or_default() += 1;
            }
        }
    }

    fn report(&self, trailers_seen: bool, elapsed: Duration, capped: bool) -> Value {
        let statuses: BTreeMap<String, u64> = self
            .statuses
            .iter()
            .map(|(code, count)| (code.to_string(), *count))
            .collect();
        json!({
            "ok": self.ok,
            "statuses": statuses,
            "replies": self.replies,
            "servers": self.servers,
            "trailers_seen": trailers_seen,
            "errors": self.errors,
            "elapsed_ms": elapsed.as_millis() as u64,
            "capped": capped,
        })
    }
}

pub async fn run(args: CallArgs) -> Result<Value> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut endpoint =
        Endpoint::from_shared(format!("http://{}", args.to))?.connect_timeout(timeout);
    if let Some(authority) = &args.authority {
        endpoint = endpoint.origin(format!("http://{authority}").parse()?);
    }
    let probe = TrailerProbe {
        channel: endpoint.connect_lazy(),
        seen: Arc::new(AtomicBool::new(false)),
    };
    let seen = Arc::clone(&probe.seen);
    let mut client = EchoClient::new(probe);
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut capped = false;
    for _ in 0..args.count {
        if started.elapsed() >= OVERALL_CAP {
            capped = true;
            break;
        }
        seen.store(false, Ordering::Relaxed);
        let outcome = tokio::time::timeout(timeout + DEADLINE_GRACE, call(&mut client, &args))
            .await
            .unwrap_or_else(|_| Outcome::Failed {
                kind: "timeout".to_owned(),
                replies: 0,
            });
        tally.record(outcome);
    }
    Ok(tally.report(seen.load(Ordering::Relaxed), started.elapsed(), capped))
}

async fn call(client: &mut EchoClient<TrailerProbe>, args: &CallArgs) -> Outcome {
    let mut request = Request::new(EchoRequest {
        message: args.message.clone(),
        count: args.stream.unwrap_or(0),
        status: args.status,
        delay_ms: args.delay_ms,
    });
    request.set_timeout(Duration::from_millis(args.timeout_ms));
    if args.stream.is_none() {
        return match client.unary(request).await {
            Ok(response) => Outcome::Answered {
                code: 0,
                server: served_by(response.metadata())
                    .or_else(|| Some(response.get_ref().server.clone())),
                replies: 1,
            },
            Err(status) => ended(&status, 0),
        };
    }
    let response = match client.server_stream(request).await {
        Ok(response) => response,
        Err(status) => return ended(&status, 0),
    };
    let mut server = served_by(response.metadata());
    let mut replies = response.into_inner();
    let mut received = 0;
    loop {
        match replies.message().await {
            Ok(Some(reply)) => {
                received += 1;
                server.get_or_insert(reply.server);
            }
            Ok(None) => {
                return Outcome::Answered {
                    code: 0,
                    server,
                    replies: received,
                };
            }
            Err(status) => return ended(&status, received),
        }
    }
}

/// tonic reports both a peer's status and a local failure as a `Status`; only the local ones
/// carry a source error (connect, h2 reset, decode).
fn ended(status: &Status, replies: u64) -> Outcome {
    let mut layer = std::error::Error::source(status);
    if layer.is_some() {
        let mut kind = None;
        while let Some(err) = layer {
            // tonic enforces the deadline it sends; that is our own time limit.
            if err.is::<tonic::TimeoutExpired>() {
                kind = Some("timeout".to_owned());
            }
            layer = err.source();
        }
        return Outcome::Failed {
            kind: kind.unwrap_or_else(|| chain_key(status)),
            replies,
        };
    }
    Outcome::Answered {
        code: i32::from(status.code()),
        server: served_by(status.metadata()),
        replies,
    }
}

fn served_by(metadata: &MetadataMap) -> Option<String> {
    metadata
        .get("x-served-by")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The channel, watching each response for `grpc-status` in trailing metadata: a trailers frame,
/// or the headers of a trailers-only response.
#[derive(Clone)]
struct TrailerProbe {
    channel: Channel,
    seen: Arc<AtomicBool>,
}

type ProbeFuture = Pin<
    Box<dyn Future<Output = Result<http::Response<ProbedBody>, tonic::transport::Error>> + Send>,
>;

impl Service<http::Request<tonic::body::Body>> for TrailerProbe {
    type Response = http::Response<ProbedBody>;
    type Error = tonic::transport::Error;
    type Future = ProbeFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let response = self.channel.call(request);
        let seen = Arc::clone(&self.seen);
        Box::pin(async move {
            let response = response.await?;
            if response.headers().contains_key("grpc-status") {
                seen.store(true, Ordering::Relaxed);
            }
            Ok(response.map(|inner| ProbedBody { inner, seen }))
        })
    }
}

struct ProbedBody {
    inner: tonic::body::Body,
    seen: Arc<AtomicBool>,
}

impl Body for ProbedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && frame
                .trailers_ref()
                .is_some_and(|trailers| trailers.contains_key("grpc-status"))
        {
            self.seen.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_tallied() {
        let mut tally = Tally::default();
        tally.record(Outcome::Answered {
            code: 0,
            server: Some("b1".to_owned()),
            replies: 3,
        });
        tally.record(Outcome::Answered {
            code: 14,
            server: Some("b2".to_owned()),
            replies: 0,
        });
        tally.record(Outcome::Failed {
            kind: "ECONNREFUSED".to_owned(),
            replies: 1,
        });
        let report = tally.report(true, Duration::from_millis(3), false);
        assert_eq!(report["ok"], 1);
        assert_eq!(report["statuses"], json!({"0": 1, "14": 1}));
        assert_eq!(report["replies"], 4);
        assert_eq!(report["servers"], json!({"b1": 1, "b2": 1}));
        assert_eq!(report["errors"], json!({"ECONNREFUSED": 1}));
        assert_eq!(report["trailers_seen"], true);
    }

    #[test]
    fn peer_statuses_and_local_failures_are_told_apart() {
        let mut metadata = MetadataMap::new();
        metadata.insert("x-served-by", "b1".parse().expect("ascii"));
        let answered = Status::with_metadata(tonic::Code::Unavailable, "down", metadata);
        assert_eq!(
            ended(&answered, 0),
            Outcome::Answered {
                code: 14,
                server: Some("b1".to_owned()),
                replies: 0
            }
        );
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let local = Status::from_error(Box::new(refused));
        assert_eq!(
            ended(&local, 2),
            Outcome::Failed {
                kind: "ECONNREFUSED".to_owned(),
                replies: 2
            }
        );
        let expired = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert!(matches!(ended(&expired, 0), Outcome::Failed { kind, .. } if kind == "timeout"));
    }

    #[test]
    fn arguments() {
        let argv = [
            "grpc-call",
            "--to",
            "127.0.0.1:1",
            "--stream",
            "5",
            "--status",
            "14",
        ];
        match crate::tests::parse(&argv) {
            crate::Command::GrpcCall(args) => {
                assert_eq!(args.stream, Some(5));
                assert_eq!(args.status, 14);
                assert_eq!(args.count, 1);
            }
            _ => panic!("not grpc-call"),
        }
        crate::tests::parse_err(&["grpc-call", "--to", "127.0.0.1:1", "--status", "17"]);
        crate::tests::parse_err(&["grpc-call", "--to", "127.0.0.1:1", "--count", "0"]);
    }
}
