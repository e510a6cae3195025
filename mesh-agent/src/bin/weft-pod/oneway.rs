//! One-way streams, to see flow control: `sink` holds each connection unread for a while, then
//! reads it to EOF, checks the pattern and answers with a one-line JSON summary; `push` writes N
//! pattern bytes without blocking until the first time the path pushes back, finishes them
//! blocking, and reports how much the path took in before pushing back, with the sink's summary.
//! A path with flow control takes in its buffers' worth; one without takes everything.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::bulk::{Digest, pattern};

const CHUNK: u64 = 64 << 10;

#[derive(Args)]
pub struct SinkArgs {
    #[arg(long)]
    listen: SocketAddr,
    /// How long each connection stays unread.
    #[arg(long, default_value_t = 3_000)]
    hold_ms: u64,
    /// A connection silent for this long (after the hold) is given up.
    #[arg(long, default_value_t = 10_000)]
    idle_ms: u64,
}

#[derive(Args)]
pub struct PushArgs {
    #[arg(long)]
    to: SocketAddr,
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..=1 << 31))]
    bytes: u64,
    /// Limit for the connect and for each blocking read or write.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

pub fn sink(args: &SinkArgs) -> Result<()> {
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    crate::announce("listening", listener.local_addr()?)?;
    let (hold, idle) = (
        Duration::from_millis(args.hold_ms),
        Duration::from_millis(args.idle_ms),
    );
    loop {
        let Ok((stream, peer)) = listener.accept() else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        thread::spawn(move || {
            if let Err(err) = drain(stream, hold, idle) {
                eprintln!("{peer}: {err}");
            }
        });
    }
}

fn drain(mut stream: TcpStream, hold: Duration, idle: Duration) -> io::Result<()> {
    thread::sleep(hold);
    stream.set_read_timeout(Some(idle))?;
    let mut buf = vec![0u8; CHUNK as usize];
    let (mut received, mut intact) = (0u64, true);
    loop {
        let asked = Instant::now();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                intact &= buf[..n]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == pattern(received + i as u64));
                received += n as u64;
            }
            // A socket in a sockhash may wake a blocking read without data (see `bulk`).
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && asked.elapsed() < idle / 2 => {}
            Err(e) => return Err(e),
        }
    }
    let summary = json!({"received": received, "intact": intact});
    stream.write_all(format!("{summary}\n").as_bytes())?;
    stream.shutdown(Shutdown::Write)
}

pub fn push(args: &PushArgs) -> Result<serde_json::Value> {
    let limit = Duration::from_millis(args.timeout_ms);
    let mut stream = TcpStream::connect_timeout(&args.to, limit)
        .with_context(|| format!("connecting {}", args.to))?;
    stream.set_write_timeout(Some(limit))?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_nonblocking(true)?;
    let (mut sent, mut before_pushback, mut digest) = (0u64, None, Digest::new());
    let mut write_error = None;
    let mut chunk = Vec::with_capacity(CHUNK as usize);
    while sent < args.bytes {
        let end = (sent + CHUNK).min(args.bytes);
        chunk.clear();
        chunk.extend((sent..end).map(pattern));
        let mut at = 0;
        while at < chunk.len() {
            match stream.write(&chunk[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The first push-back: from here on, wait for room like any writer.
                    before_pushback.get_or_insert(sent + at as u64);
                    stream.set_nonblocking(false)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    write_error = Some(e.to_string());
                    break;
                }
            }
        }
        if write_error.is_some() {
            break;
        }
        digest.update(&chunk);
        sent = end;
    }
    stream.set_nonblocking(false)?;
    stream.shutdown(Shutdown::Write)?;
    let (answer, read_error) = answer(stream, limit);
    Ok(json!({
        "sent": sent,
        "accepted_before_pushback": before_pushback,
        "write_error": write_error,
        "read_error": read_error,
        "sink": serde_json::from_str::<serde_json::Value>(answer.trim()).ok(),
    }))
}

/// The sink's one-line answer, read to EOF. An EAGAIN well before `limit` is the spurious
/// wake-up of a socket in a sockhash (see `bulk`): retried.
fn answer(mut stream: TcpStream, limit: Duration) -> (String, Option<String>) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let asked = Instant::now();
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&answer).into_owned(), None),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && asked.elapsed() < limit / 2 => {}
            Err(e) => {
                return (
                    String::from_utf8_lossy(&answer).into_owned(),
                    Some(e.to_string()),
                );
            }
        }
    }
}
