//! The inspect commands' side of the admin API: one `GET` over HTTP/1.1 to the agent's admin
//! address, answered with JSON. An agent that cannot be reached is the common case of a
//! mistake (wrong node, agent down), so that error says where it looked and what to try.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// A config dump of a large mesh is a few MiB; anything far beyond is not the admin API.
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Why an inspect command got no answer it can print.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(
        "cannot reach the admin API at {addr}: {reason} (is mesh-agent running on this node? \
         --admin to point elsewhere)"
    )]
    Unreachable { addr: String, reason: String },
    /// The agent answered with an error (`{"error": ...}`).
    #[error("{message}")]
    Refused { status: u16, message: String },
    /// The answer is not what this version of the CLI expects.
    #[error("unexpected answer from {addr}{path}: {reason}")]
    Unexpected {
        addr: String,
        path: String,
        reason: String,
    },
}

/// Opens a connection to the admin API at `addr` and sends `GET <path_and_query>`; the answer
/// with its body still to read. The connection is driven by a task that ends with it.
pub async fn open(
    addr: &str,
    path_and_query: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, InspectError> {
    let unreachable = |reason: String| InspectError::Unreachable {
        addr: addr.to_owned(),
        reason,
    };
    let unexpected = |reason: String| unexpected(addr, path_and_query, reason);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable(format!("no connection within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unexpected(format!("HTTP: {e}")))?;
    tokio::spawn(conn);
    let request = Request::get(path_and_query)
        .header(hyper::header::HOST, addr)
        .body(Empty::<Bytes>::new())
        .map_err(|e| unexpected(format!("building the request: {e}")))?;
    sender
        .send_request(request)
        .await
        .map_err(|e| unexpected(format!("HTTP: {e}")))
}

pub fn unexpected(addr: &str, path: &str, reason: String) -> InspectError {
    InspectError::Unexpected {
        addr: addr.to_owned(),
        path: path.to_owned(),
        reason,
    }
}

/// `GET <path_and_query>` from the admin API at `addr` (`host:port`); the JSON body of a 2xx
/// answer.
pub async fn get(addr: &str, path_and_query: &str) -> Result<serde_json::Value, InspectError> {
    let unexpected = |reason: String| unexpected(addr, path_and_query, reason);
    let exchange = async {
        let response = open(addr, path_and_query).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unexpected(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok::<_, InspectError>((status, body))
    };
    let (status, body) = tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .map_err(|_| unexpected(format!("no answer within {ANSWER_TIMEOUT:?}")))??;
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        unexpected(format!(
            "{status}, not JSON ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })?;
    if status.is_success() {
        return Ok(json);
    }
    let message = json["error"]
        .as_str()
        .map_or_else(|| json.to_string(), str::to_owned);
    Err(InspectError::Refused {
        status: status.as_u16(),
        message,
    })
}
