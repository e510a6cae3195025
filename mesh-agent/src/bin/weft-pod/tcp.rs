//! Plain TCP/UDP peers: `serve` answers every TCP connection (or UDP datagram) with a
//! caller-chosen text plus the peer address it saw, so a test can assert on a unique reply and on
//! the source address that arrived. `connect` dials N times and prints one JSON summary with
//! errors keyed by errno name; `udp` sends one datagram. Every wait is bounded.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::errors::{error_key, is_timeout};

/// Longest request line a server reads, and longest reply a client keeps.
const MAX_LINE: u64 = 4096;
const MAX_REPLY: u64 = 1 << 20;
/// Connections served at once; more are closed at accept, so a flood cannot exhaust threads.
const MAX_CONCURRENT: usize = 1024;

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    reply: String,
    /// Line sent before reading the request (server-speaks-first protocols).
    #[arg(long)]
    banner: Option<String>,
    /// Serve UDP instead of TCP: one reply datagram per datagram.
    #[arg(long)]
    pub udp: bool,
    /// How long to wait for the request line before answering with what arrived.
    #[arg(long, default_value_t = 5000)]
    read_timeout_ms: u64,
}

#[derive(Args)]
pub struct ConnectArgs {
    #[arg(long)]
    to: SocketAddr,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    count: u32,
    /// Source address to bind before connecting (port 0).
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Dial from an AF_INET6 socket to `::ffff:<to>` (and bind `::ffff:<bind>`).
    #[arg(long)]
    v6_mapped: bool,
    #[arg(long, default_value = "hello")]
    send: String,
    /// Limit for the connect, and again for reading the reply.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Idle time between connecting and sending (the server's read limit still applies).
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
    /// Count the replies containing this text as `matched`.
    #[arg(long)]
    expect: Option<String>,
    /// Read the server's first line (a banner) before sending, and report `first_byte_ms`.
    #[arg(long)]
    read_first: bool,
}

#[derive(Args)]
pub struct UdpArgs {
    #[arg(long)]
    to: SocketAddr,
    #[arg(long, default_value = "hello")]
    send: String,
    /// Wait this long for one reply datagram (0: do not wait).
    #[arg(long, default_value_t = 0)]
    wait_ms: u64,
}

pub fn serve_tcp(args: ServeArgs) -> Result<()> {
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    crate::announce("listening", listener.local_addr()?)?;
    let args = Arc::new(args);
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(err) => {
                eprintln!("accept: {err}");
                // Out of descriptors or similar: back off instead of spinning.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONCURRENT {
            active.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let (args, active) = (Arc::clone(&args), Arc::clone(&active));
        thread::spawn(move || {
            if let Err(err) = answer(stream, peer, &args) {
                eprintln!("{peer}: {err}");
            }
            active.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

fn answer(mut stream: TcpStream, peer: SocketAddr, args: &ServeArgs) -> io::Result<()> {
    let limit = Duration::from_millis(args.read_timeout_ms);
    stream.set_write_timeout(Some(limit))?;
    if let Some(banner) = &args.banner {
        stream.write_all(format!("{banner}\n").as_bytes())?;
    }
    let line = read_line(&mut stream, limit)?;
    stream.write_all(format!("{} peer={peer} got={line}\n", args.reply).as_bytes())
}

/// Reads up to the first newline, EOF, [`MAX_LINE`] bytes or the time limit, whichever comes
/// first; a slow or silent client gets an answer with what it sent so far.
fn read_line(stream: &mut TcpStream, limit: Duration) -> io::Result<String> {
    let deadline = Instant::now() + limit;
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    while !line.contains(&b'\n') && (line.len() as u64) < MAX_LINE {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(err) if is_timeout(&err) => break,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    let text = String::from_utf8_lossy(&line);
    Ok(text
        .split('\n')
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r')
        .to_owned())
}

pub fn serve_udp(args: &ServeArgs) -> Result<()> {
    let socket =
        UdpSocket::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    crate::announce("listening", socket.local_addr()?)?;
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(err) => {
                eprintln!("recv: {err}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let got = String::from_utf8_lossy(&buf[..n]);
        let reply = format!("{} peer={peer} got={}\n", args.reply, got.trim_end());
        if let Err(err) = socket.send_to(reply.as_bytes(), peer) {
            eprintln!("{peer}: {err}");
        }
    }
}

#[derive(Default)]
struct Summary {
    ok: u32,
    failed: u32,
    errors: BTreeMap<String, u32>,
    first_reply: Option<String>,
    first_error: Option<String>,
    matched: u32,
    /// Connect to the banner's first byte, on the first successful connection (`--read-first`).
    first_byte: Option<Duration>,
}

pub fn connect(args: &ConnectArgs) -> Result<()> {
    let (to, bind) = endpoints(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut summary = Summary::default();
    for _ in 0..args.count {
        match runtime.block_on(exchange(args, to, bind)) {
            Ok((reply, first_byte)) => {
                summary.ok += 1;
                if summary.first_reply.is_none() {
                    summary.first_byte = first_byte;
                }
                if args
                    .expect
                    .as_ref()
                    .is_some_and(|expect| reply.contains(expect.as_str()))
                {
                    summary.matched += 1;
                }
                summary.first_reply.get_or_insert(reply);
            }
            Err(err) => {
                summary.failed += 1;
                *summary.errors.entry(error_key(&err)).or_default() += 1;
                summary.first_error.get_or_insert_with(|| err.to_string());
            }
        }
    }
    let mut report = json!({
        "ok": summary.ok,
        "failed": summary.failed,
        "errors": summary.errors,
        "first_reply": summary.first_reply,
        "first_error": summary.first_error,
        "matched": args.expect.as_ref().map(|_| summary.matched),
        "elapsed_ms": started.elapsed().as_millis() as u64,
    });
    if args.read_first {
        report["first_byte_ms"] = json!(summary.first_byte.map(|t| t.as_secs_f64() * 1000.0));
    }
    println!("{report}");
    Ok(())
}

/// Destination and optional source, turned into IPv4-mapped IPv6 addresses with `--v6-mapped`.
fn endpoints(args: &ConnectArgs) -> Result<(SocketAddr, Option<SocketAddr>)> {
    let bind = args.bind.map(|ip| SocketAddr::new(ip, 0));
    if !args.v6_mapped {
        return Ok((args.to, bind));
    }
    let mapped = |addr: SocketAddr| match addr.ip() {
        IpAddr::V4(v4) => Ok(SocketAddr::new(
            IpAddr::V6(v4.to_ipv6_mapped()),
            addr.port(),
        )),
        IpAddr::V6(_) => bail!("--v6-mapped needs IPv4 addresses, got {addr}"),
    };
    Ok((mapped(args.to)?, bind.map(mapped).transpose()?))
}

/// One connection: connect, optionally read the banner, optionally idle, send a line,
/// half-close, read the whole reply. Returns the reply (banner included) and, with
/// `--read-first`, how long after the connect the banner's first byte came.
async fn exchange(
    args: &ConnectArgs,
    to: SocketAddr,
    bind: Option<SocketAddr>,
) -> io::Result<(String, Option<Duration>)> {
    let limit = Duration::from_millis(args.timeout_ms);
    let socket = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(bind) = bind {
        socket.bind(bind)?;
    }
    let mut stream = tokio::time::timeout(limit, socket.connect(to))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {to}: timed out"),
            )
        })??;
    let mut reply = Vec::new();
    let first_byte = if args.read_first {
        let banner = read_banner(&mut stream, &mut reply);
        let first_byte = tokio::time::timeout(limit, banner).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("banner from {to}: timed out"),
            )
        })??;
        Some(first_byte)
    } else {
        None
    };
    if args.hold_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.hold_ms)).await;
    }
    stream
        .write_all(format!("{}\n", args.send).as_bytes())
        .await?;
    stream.shutdown().await?;
    tokio::time::timeout(limit, (&mut stream).take(MAX_REPLY).read_to_end(&mut reply))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("reply from {to}: timed out"),
            )
        })??;
    let reply = String::from_utf8_lossy(&reply);
    Ok((
        reply.strip_suffix('\n').unwrap_or(&reply).to_owned(),
        first_byte,
    ))
}

/// Reads until the first newline (or EOF, or [`MAX_LINE`] bytes) into `banner`; returns the
/// time from the call to the first byte.
async fn read_banner(
    stream: &mut tokio::net::TcpStream,
    banner: &mut Vec<u8>,
) -> io::Result<Duration> {
    let started = Instant::now();
    let mut first_byte = None;
    let mut buf = [0u8; 512];
    while !banner.contains(&b'\n') && (banner.len() as u64) < MAX_LINE {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| started.elapsed());
        banner.extend_from_slice(&buf[..n]);
    }
    first_byte.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
}

pub fn udp(args: &UdpArgs) -> Result<()> {
    let result = (|| -> io::Result<Option<String>> {
        let local: SocketAddr = if args.to.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .map_err(io::Error::other)?;
        let socket = UdpSocket::bind(local)?;
        socket.send_to(args.send.as_bytes(), args.to)?;
        if args.wait_ms == 0 {
            return Ok(None);
        }
        socket.set_read_timeout(Some(Duration::from_millis(args.wait_ms)))?;
        let mut buf = vec![0u8; 65_536];
        let (n, _) = socket.recv_from(&mut buf)?;
        Ok(Some(
            String::from_utf8_lossy(&buf[..n]).trim_end().to_owned(),
        ))
    })();
    let report = match result {
        Ok(reply) => json!({ "sent": true, "error": null, "reply": reply }),
        Err(err) => json!({
            "sent": false,
            "error": format!("{}: {err}", error_key(&err)),
            "reply": null,
        }),
    };
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_connect(args: &[&str]) -> ConnectArgs {
        let argv: Vec<&str> = ["connect"].iter().chain(args).copied().collect();
        match crate::tests::parse(&argv) {
            crate::Command::Connect(args) => args,
            _ => panic!("not a connect command"),
        }
    }

    #[test]
    fn v6_mapped_endpoints() {
        let args = parse_connect(&[
            "--to",
            "10.244.1.2:80",
            "--bind",
            "10.244.1.99",
            "--v6-mapped",
        ]);
        let (to, bind) = endpoints(&args).expect("IPv4 endpoints map");
        assert_eq!(to, "[::ffff:10.244.1.2]:80".parse().expect("literal"));
        assert_eq!(
            bind,
            Some("[::ffff:10.244.1.99]:0".parse().expect("literal"))
        );
        let plain = parse_connect(&["--to", "10.244.1.2:80"]);
        assert_eq!(endpoints(&plain).expect("plain").1, None);
        assert!(endpoints(&parse_connect(&["--to", "[::1]:80", "--v6-mapped"])).is_err());
    }
}
