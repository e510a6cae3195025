//! `raw`: a TCP client for bad input. It sends exactly the bytes a test asks for (a malformed
//! request, a request with huge headers, or a body that stalls), then reads whatever comes back
//! until the peer closes or the time limit, and reports the status line it got, if any.

use std::time::Duration;

use clap::{ArgGroup, Args};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::errors::error_key;

/// Most header bytes `--send-headers-bytes` may ask for.
const MAX_HEADER_BYTES: u64 = 64 << 20;
/// The body `--stall-body` announces, of which it sends only [`STALL_SENT`] bytes.
const STALL_ANNOUNCED: usize = 100_000;
const STALL_SENT: usize = 10;
/// Each filler header line is this long, so the count stays realistic (not one giant line).
const FILLER_LINE: usize = 1000;

#[derive(Args)]
#[command(group(ArgGroup::new("payload").required(true).args(["send", "send_headers_bytes", "stall_body"])))]
pub struct RawArgs {
    #[arg(long)]
    to: std::net::SocketAddr,
    /// Bytes to send; `\r`, `\n`, `\t`, `\0`, `\\` and `\xHH` escapes are decoded.
    #[arg(long, value_parser = unescape)]
    send: Option<Payload>,
    /// A GET whose header block is this many bytes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_HEADER_BYTES))]
    send_headers_bytes: Option<u64>,
    /// A POST announcing a 100000-byte body that sends 10 bytes and then nothing.
    #[arg(long)]
    stall_body: bool,
    /// How long to wait for the peer (from the connect on) before giving up.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=120_000))]
    timeout_ms: u64,
}

impl RawArgs {
    fn payload(&self) -> Vec<u8> {
        if let Some(Payload(bytes)) = &self.send {
            bytes.clone()
        } else if let Some(size) = self.send_headers_bytes {
            large_headers(usize::try_from(size).unwrap_or(usize::MAX))
        } else {
            let mut request = format!(
                "POST / HTTP/1.1\r\nhost: weft-pod\r\ncontent-length: {STALL_ANNOUNCED}\r\n\r\n"
            )
            .into_bytes();
            request.extend(std::iter::repeat_n(b'x', STALL_SENT));
            request
        }
    }
}

/// Bytes from the command line (a newtype, so clap takes one value, not a list of numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload(Vec<u8>);

/// Decodes the escapes a shell cannot pass literally.
fn unescape(text: &str) -> Result<Payload, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        let decoded = match bytes.next() {
            Some(b'r') => b'\r',
            Some(b'n') => b'\n',
            Some(b't') => b'\t',
            Some(b'0') => 0,
            Some(b'\\') => b'\\',
            Some(b'x') => {
                let hex = [bytes.next(), bytes.next()];
                let digits: Option<Vec<u8>> = hex.into_iter().collect();
                digits
                    .and_then(|digits| std::str::from_utf8(&digits).ok().map(str::to_owned))
                    .and_then(|digits| u8::from_str_radix(&digits, 16).ok())
                    .ok_or_else(|| format!("{text:?}: \\x needs two hex digits"))?
            }
            other => {
                let shown = other.map_or("end of text".to_owned(), |b| char::from(b).to_string());
                return Err(format!("{text:?}: unknown escape \\{shown}"));
            }
        };
        out.push(decoded);
    }
    Ok(Payload(out))
}

/// A GET whose header block (request line to the blank line included) is exactly `size` bytes
/// when `size` allows it, padded with `x-fill-N` headers.
fn large_headers(size: usize) -> Vec<u8> {
    let mut request = b"GET / HTTP/1.1\r\nhost: weft-pod\r\n".to_vec();
    let end = b"\r\n";
    let mut index = 0;
    loop {
        let prefix = format!("x-fill-{index}: ");
        let room = size.saturating_sub(request.len() + end.len());
        // A line needs its name, one value byte and its CRLF.
        if room < prefix.len() + 3 {
            break;
        }
        let value = (room - prefix.len() - 2).min(FILLER_LINE);
        request.extend_from_slice(prefix.as_bytes());
        request.extend(std::iter::repeat_n(b'a', value));
        request.extend_from_slice(b"\r\n");
        index += 1;
    }
    request.extend_from_slice(end);
    request
}

#[derive(Debug, Default)]
struct Received {
    bytes: Vec<u8>,
    closed: bool,
    error: Option<String>,
}

impl Received {
    fn report(&self) -> Value {
        json!({
            "response_line": response_line(&self.bytes),
            "closed": self.closed,
            "bytes_received": self.bytes.len(),
            "error": self.error,
        })
    }
}

/// The first line of what came back, when something did.
fn response_line(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some(String::from_utf8_lossy(line).into_owned())
}

pub async fn run(args: RawArgs) -> Value {
    let limit = Duration::from_millis(args.timeout_ms);
    let mut received = Received::default();
    let stream = match tokio::time::timeout(limit, TcpStream::connect(args.to)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            received.error = Some(error_key(&err));
            return received.report();
        }
        Err(_) => {
            received.error = Some("timeout".to_owned());
            return received.report();
        }
    };
    let payload = args.payload();
    let (mut reader, mut writer) = stream.into_split();
    // Send and read at once: a server may answer (and close) before it has read everything.
    let send = async {
        // The write side stays open afterwards: a half-close would tell the server we are done.
        writer.write_all(&payload).await
    };
    let receive = async {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => {
                    received.closed = true;
                    return;
                }
                Ok(n) => received.bytes.extend_from_slice(&buf[..n]),
                Err(err) => {
                    // A reset also ends the exchange: the server closed with data unread.
                    received.closed = true;
                    received.error = Some(error_key(&err));
                    return;
                }
            }
        }
    };
    let exchange = async {
        let (sent, ()) = tokio::join!(send, receive);
        sent
    };
    // Running out of time is the normal end when the server keeps the connection open.
    if let Ok(Err(err)) = tokio::time::timeout(limit, exchange).await {
        let key = error_key(&err);
        received.error.get_or_insert(key);
    }
    received.report()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(
            unescape(r"GET / HTTP/1.1\r\nx: \x41\t\\\0").expect("valid"),
            Payload(b"GET / HTTP/1.1\r\nx: A\t\\\0".to_vec())
        );
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\x4").is_err());
        assert!(unescape("trailing\\").is_err());
    }

    #[test]
    fn header_block_has_the_requested_size() {
        for size in [200, 1000, 4096, 1 << 20] {
            let request = large_headers(size);
            assert_eq!(request.len(), size, "size {size}");
            assert!(request.ends_with(b"\r\n\r\n"));
            assert!(request.starts_with(b"GET / HTTP/1.1\r\n"));
        }
    }

    #[test]
    fn report_shape() {
        let received = Received {
            bytes: b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n".to_vec(),
            closed: true,
            error: None,
        };
        let report = received.report();
        assert_eq!(report["response_line"], "HTTP/1.1 400 Bad Request");
        assert_eq!(report["closed"], true);
        assert_eq!(report["bytes_received"], 47);
        assert!(Received::default().report()["response_line"].is_null());
    }

    #[test]
    fn exactly_one_payload() {
        crate::tests::parse_err(&["raw", "--to", "127.0.0.1:1"]);
        crate::tests::parse_err(&["raw", "--to", "127.0.0.1:1", "--stall-body", "--send", "x"]);
        match crate::tests::parse(&["raw", "--to", "127.0.0.1:1", "--stall-body"]) {
            crate::Command::Raw(args) => {
                let payload = args.payload();
                assert!(payload.starts_with(b"POST / HTTP/1.1\r\n"));
                assert!(payload.ends_with(b"\r\n\r\nxxxxxxxxxx"));
            }
            _ => panic!("not raw"),
        }
        match crate::tests::parse(&["raw", "--to", "127.0.0.1:1", "--send", r"a\r\n"]) {
            crate::Command::Raw(args) => assert_eq!(args.payload(), b"a\r\n"),
            _ => panic!("not raw"),
        }
    }
}
