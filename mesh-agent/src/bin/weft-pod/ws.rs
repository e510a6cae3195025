//! WebSocket both ways: the server side of `http-serve` (`GET /ws` upgrades, then every message is
//! echoed) and the `ws` client, which sends N unique messages alternating text and binary and
//! checks each echo, so a proxy that drops, reorders or corrupts frames is caught.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::errors::{chain_key, error_key};

/// A server-side WebSocket with no message for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the client waits for the server's close after its own.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_MESSAGE_SIZE: usize = 1 << 20;

/// Checks the upgrade request and answers 101; the echo runs on the upgraded connection.
pub fn accept(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, String> {
    let headers = req.headers();
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if req.method() != Method::GET
        || !has_token(UPGRADE, "websocket")
        || !has_token(CONNECTION, "upgrade")
    {
        return Err("websocket upgrade expected (GET with Upgrade: websocket)".to_owned());
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .ok_or("missing sec-websocket-key")?;
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|err| format!("sec-websocket-accept: {err}"))?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => echo(TokioIo::new(upgraded)).await,
            Err(err) => eprintln!("websocket upgrade: {err}"),
        }
    });
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

/// Echoes data messages until the peer closes, fails or idles; tungstenite answers pings and
/// the close handshake itself.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(io: S) {
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    while let Ok(Some(Ok(message))) = tokio::time::timeout(IDLE_TIMEOUT, ws.next()).await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

#[derive(Args)]
pub struct WsArgs {
    /// `ws://host:port/path`.
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    messages: u32,
    /// Bytes per message (at least the unique prefix).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=MAX_MESSAGE_SIZE as i64))]
    size: u32,
    /// Limit for the whole exchange: connect, every echo, close.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=120_000))]
    timeout_ms: u64,
}

/// Counters the writer and reader update as they go, so a timeout still reports progress.
#[derive(Debug, Default)]
struct Tally {
    sent: Cell<u32>,
    received: Cell<u32>,
    mismatches: Cell<u32>,
    error: RefCell<Option<String>>,
}

impl Tally {
    fn fail(&self, error: String) {
        self.error.borrow_mut().get_or_insert(error);
    }

    fn report(&self, elapsed: Duration) -> Value {
        json!({
            "sent": self.sent.get(),
            "received": self.received.get(),
            "mismatches": self.mismatches.get(),
            "error": self.error.borrow().clone(),
            "elapsed_ms": elapsed.as_millis() as u64,
        })
    }
}

pub async fn run(args: WsArgs) -> Value {
    let started = Instant::now();
    let tally = Tally::default();
    let limit = Duration::from_millis(args.timeout_ms);
    if tokio::time::timeout(limit, exchange(&args, &tally))
        .await
        .is_err()
    {
        tally.fail("timeout".to_owned());
    }
    tally.report(started.elapsed())
}

async fn exchange(args: &WsArgs, tally: &Tally) {
    let ws = match connect(&args.url).await {
        Ok(ws) => ws,
        Err(err) => return tally.fail(err),
    };
    let (mut sink, mut stream) = ws.split();
    let size = args.size as usize;
    // Writer and reader run together so neither side's buffers can fill up and stall the other.
    let send = async {
        for index in 0..args.messages {
            sink.send(message(index, size)).await?;
            tally.sent.set(index + 1);
        }
        Ok::<_, tungstenite::Error>(())
    };
    let receive = async {
        while tally.received.get() < args.messages {
            match stream.next().await {
                Some(Ok(got)) if got.is_text() || got.is_binary() => {
                    if got != message(tally.received.get(), size) {
                        tally.mismatches.set(tally.mismatches.get() + 1);
                    }
                    tally.received.set(tally.received.get() + 1);
                }
                Some(Ok(Message::Close(_))) | None => return Err("closed by peer".to_owned()),
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(ws_error_key(&err)),
            }
        }
        Ok(())
    };
    let (sent, received) = tokio::join!(send, receive);
    if let Err(err) = sent {
        tally.fail(ws_error_key(&err));
    }
    if let Err(err) = received {
        tally.fail(err);
    }
    if tally.error.borrow().is_none() {
        // A clean close; the summary does not depend on the server's answer to it.
        let _ = sink.send(Message::Close(None)).await;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await;
    }
}

async fn connect(url: &str) -> Result<WebSocketStream<TcpStream>, String> {
    let request = url
        .into_client_request()
        .map_err(|err| format!("--url {url:?}: {err}"))?;
    let uri = request.uri();
    if uri.scheme_str() != Some("ws") {
        return Err(format!("--url {url:?}: only ws:// is supported"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("--url {url:?}: no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|err| error_key(&err))?;
    let _ = stream.set_nodelay(true);
    let (ws, _response) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|err| ws_error_key(&err))?;
    Ok(ws)
}

fn ws_error_key(err: &tungstenite::Error) -> String {
    match err {
        tungstenite::Error::Io(io_err) => error_key(io_err),
        tungstenite::Error::Http(response) => format!("http {}", response.status().as_u16()),
        other => chain_key(other),
    }
}

/// Message `index`: even ones are text, odd ones binary (covering every byte value); the index
/// leads, so every message is unique and a reorder shows as a mismatch.
fn message(index: u32, size: usize) -> Message {
    if index.is_multiple_of(2) {
        let mut text = format!("{index:010}:");
        let fill = size.saturating_sub(text.len());
        text.extend((0..fill).map(|i| char::from(b'a' + ((i + index as usize) % 26) as u8)));
        Message::text(text)
    } else {
        let mut bytes = index.to_be_bytes().to_vec();
        let fill = size.saturating_sub(bytes.len());
        bytes.extend((0..fill).map(|i| (i as u32).wrapping_mul(31).wrapping_add(index) as u8));
        Message::binary(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_alternate_and_are_unique() {
        let first = message(0, 64);
        let second = message(1, 64);
        assert!(first.is_text() && second.is_binary());
        assert_eq!(first.len(), 64);
        assert_eq!(second.len(), 64);
        assert_ne!(message(2, 64), message(4, 64));
        assert_ne!(message(3, 64), message(5, 64));
        // The unique prefix survives a size smaller than itself.
        assert_eq!(message(7, 0).len(), 4);
        assert_eq!(message(8, 0).len(), 11);
    }

    #[test]
    fn report_shape() {
        let tally = Tally::default();
        tally.sent.set(3);
        tally.received.set(2);
        tally.mismatches.set(1);
        tally.fail("ECONNRESET".to_owned());
        tally.fail("later".to_owned());
        let report = tally.report(Duration::from_millis(5));
        assert_eq!(report["sent"], 3);
        assert_eq!(report["received"], 2);
        assert_eq!(report["mismatches"], 1);
        assert_eq!(report["error"], "ECONNRESET");
        assert!(Tally::default().report(Duration::ZERO)["error"].is_null());
    }

    #[test]
    fn arguments() {
        match crate::tests::parse(&["ws", "--url", "ws://127.0.0.1:1/ws", "--messages", "5"]) {
            crate::Command::Ws(args) => {
                assert_eq!(args.messages, 5);
                assert_eq!(args.size, 64);
            }
            _ => panic!("not ws"),
        }
        crate::tests::parse_err(&["ws", "--url", "ws://x/ws", "--messages", "0"]);
    }
}
