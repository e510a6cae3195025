//! `http-serve`: an HTTP/1.1 + h2c server that names itself in every answer (`x-served-by` and a
//! JSON description of the request it saw), misbehaves on request ([`crate::control`]), echoes
//! WebSockets on `/ws` ([`crate::ws`]) and optionally serves gRPC ([`crate::grpc_server`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::control::{Control, ControlUpdate, Pod};

/// Connections served at once; more are closed at accept, so a flood cannot exhaust memory.
const MAX_CONNECTIONS: usize = 4096;
/// A client that has not finished its request head by then is dropped (slowloris tests).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a request body; a stalled upload must not hold a task forever.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_CONTROL_BODY: usize = 64 << 10;

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long)]
    listen: SocketAddr,
    /// Name reported in `x-served-by` and in every JSON body and gRPC reply.
    #[arg(long)]
    name: String,
    /// Also serve the gRPC `weft.echo.Echo` service on this address.
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
}

struct Server {
    pod: Arc<Pod>,
    served_by: HeaderValue,
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let served_by = HeaderValue::from_str(&args.name)
        .with_context(|| format!("--name {:?} is not a valid header value", args.name))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let grpc = match args.grpc_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?,
        ),
        None => None,
    };
    let pod = Arc::new(Pod {
        name: args.name,
        control: Control::default(),
    });
    crate::announce("listening", listener.local_addr()?)?;
    let grpc = match grpc {
        Some(grpc) => {
            crate::announce("grpc listening", grpc.local_addr()?)?;
            Some(crate::grpc_server::serve(grpc, Arc::clone(&pod)))
        }
        None => None,
    };
    let http = accept_loop(listener, Arc::new(Server { pod, served_by }));
    match grpc {
        Some(grpc) => tokio::select! {
            result = grpc => result.context("gRPC server"),
            () = http => bail!("HTTP accept loop ended"),
        },
        None => {
            http.await;
            bail!("HTTP accept loop ended")
        }
    }
}

async fn accept_loop(listener: TcpListener, server: Arc<Server>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                eprintln!("accept: {err}");
                // Out of descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            continue;
        };
        let (builder, server) = (Arc::clone(&builder), Arc::clone(&server));
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let service = service_fn(move |req| {
                let server = Arc::clone(&server);
                async move { Ok::<_, Infallible>(handle(req, peer, &server).await) }
            });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                eprintln!("{peer}: {err}");
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    server: &Server,
) -> Response<Full<Bytes>> {
    let pod = &server.pod;
    let mut response = match (req.method(), req.uri().path()) {
        (_, "/ws") => crate::ws::accept(req)
            .unwrap_or_else(|err| json_response(StatusCode::BAD_REQUEST, &error(pod, &err), 0)),
        (&Method::POST, "/control") => update_control(req, pod).await,
        (&Method::GET, "/control") => json_response(StatusCode::OK, &control_state(pod), 0),
        _ => describe(req, peer, pod).await,
    };
    response
        .headers_mut()
        .insert("x-served-by", server.served_by.clone());
    response
}

async fn update_control(req: Request<Incoming>, pod: &Pod) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), MAX_CONTROL_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(err) => {
            return json_response(StatusCode::BAD_REQUEST, &error(pod, &err.to_string()), 0);
        }
    };
    let applied = serde_json::from_slice::<ControlUpdate>(&body)
        .map_err(|err| format!("control body: {err}"))
        .and_then(|update| pod.control.apply(&update));
    match applied {
        Ok(()) => json_response(StatusCode::OK, &control_state(pod), 0),
        Err(err) => json_response(StatusCode::BAD_REQUEST, &error(pod, &err), 0),
    }
}

/// The echo answer: the request as the server saw it, after the requested delay.
async fn describe(req: Request<Incoming>, peer: SocketAddr, pod: &Pod) -> Response<Full<Bytes>> {
    let behaviour = match pod.control.behaviour(req.uri().query()) {
        Ok(behaviour) => behaviour,
        Err(err) => return json_response(StatusCode::BAD_REQUEST, &error(pod, &err), 0),
    };
    let (parts, body) = req.into_parts();
    let body_len = match tokio::time::timeout(BODY_READ_TIMEOUT, body_length(body)).await {
        Ok(Ok(len)) => len,
        Ok(Err(err)) => {
            let message = format!("reading the request body: {err}");
            return json_response(StatusCode::BAD_REQUEST, &error(pod, &message), 0);
        }
        Err(_) => {
            let message = "request body not complete in time";
            return json_response(StatusCode::REQUEST_TIMEOUT, &error(pod, message), 0);
        }
    };
    tokio::time::sleep(behaviour.delay).await;
    let description = json!({
        "server": pod.name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        // h2 carries the host as `:authority`, which is not among the headers.
        "authority": parts.uri.authority().map(|a| a.as_str()).or_else(|| {
            parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok())
        }),
        "version": format!("{:?}", parts.version),
        "headers": header_map(&parts.headers),
        "peer": peer.to_string(),
        "body_len": body_len,
    });
    json_response(behaviour.status, &description, behaviour.size)
}

/// Counts the body without keeping it, so large uploads cost no memory.
async fn body_length(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            len += data.len() as u64;
        }
        if body.is_end_stream() {
            break;
        }
    }
    Ok(len)
}

/// Lowercased names (as hyper gives them); repeated headers joined with `, ` as HTTP allows.
pub fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map = BTreeMap::<String, String>::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        map.entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    map
}

fn control_state(pod: &Pod) -> Value {
    let (status, delay_ms) = pod.control.current();
    json!({ "server": pod.name, "status": status, "delay_ms": delay_ms })
}

fn error(pod: &Pod, message: &str) -> Value {
    json!({ "server": pod.name, "error": message })
}

/// A JSON body padded with trailing spaces to at least `size` bytes (still valid JSON).
fn json_response(status: StatusCode, body: &Value, size: usize) -> Response<Full<Bytes>> {
    let mut bytes = body.to_string().into_bytes();
    if bytes.len() < size {
        bytes.resize(size, b' ');
    }
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_joined_and_padding_keeps_json() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        headers.append("host", HeaderValue::from_static("svc"));
        let map = header_map(&headers);
        assert_eq!(map["x-a"], "1, 2");
        assert_eq!(map["host"], "svc");

        let response = json_response(StatusCode::OK, &json!({"server": "p"}), 100);
        let (parts, body) = response.into_parts();
        assert_eq!(parts.headers["content-type"], "application/json");
        let body = futures_util::FutureExt::now_or_never(body.collect())
            .expect("full body is ready")
            .expect("infallible")
            .to_bytes();
        assert_eq!(body.len(), 100);
        let parsed: Value = serde_json::from_slice(&body).expect("still JSON");
        assert_eq!(parsed["server"], "p");
    }

    #[test]
    fn arguments() {
        match crate::tests::parse(&["http-serve", "--listen", "127.0.0.1:0", "--name", "b1"]) {
            crate::Command::HttpServe(args) => {
                assert_eq!(args.name, "b1");
                assert!(args.grpc_listen.is_none());
            }
            _ => panic!("not http-serve"),
        }
        let err = crate::tests::parse_err(&["http-serve", "--listen", "127.0.0.1:0"]);
        assert!(err.contains("--name"), "{err}");
    }
}
