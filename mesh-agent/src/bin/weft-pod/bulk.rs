//! Bulk transfer: `echo` sends back every byte it receives; `bulk` sends N bytes of a
//! pseudo-random pattern through such an echo while reading the echo back, and reports whether
//! every byte came back in order (with a digest of each side), so a test can prove a large
//! upload and download crossed a path intact. Every wait is bounded.
//!
//! A blocking read that fails with EAGAIN before its time limit is retried and counted
//! (`spurious_eagain`): on Linux 6.18 a socket in a sockhash returns EAGAIN from a blocking
//! `recv()` when it is woken without data (e.g. by the ACK of its own FIN).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

#[derive(Args)]
pub struct EchoArgs {
    #[arg(long)]
    listen: SocketAddr,
    /// A connection silent for this long is closed.
    #[arg(long, default_value_t = 10_000)]
    idle_ms: u64,
}

#[derive(Args)]
pub struct BulkArgs {
    #[arg(long)]
    to: SocketAddr,
    /// Bytes to send (and expect back).
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    bytes: u64,
    /// Limit for the connect and for each read or write.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

pub fn echo(args: &EchoArgs) -> Result<()> {
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    crate::announce("listening", listener.local_addr()?)?;
    let idle = Duration::from_millis(args.idle_ms);
    loop {
        let Ok((stream, peer)) = listener.accept() else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        thread::spawn(move || {
            if let Err(err) = echo_one(stream, idle) {
                eprintln!("{peer}: {err}");
            }
        });
    }
}

fn echo_one(mut stream: TcpStream, idle: Duration) -> io::Result<()> {
    stream.set_read_timeout(Some(idle))?;
    stream.set_write_timeout(Some(idle))?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return stream.shutdown(Shutdown::Write);
        }
        stream.write_all(&buf[..n])?;
    }
}

/// The byte at `offset` of the pattern: xorshift of the offset's 8-byte block, so no two blocks
/// repeat and a misplaced chunk cannot match by chance.
pub fn pattern(offset: u64) -> u8 {
    let mut x = (offset / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x.to_le_bytes()[(offset % 8) as usize]
}

/// FNV-1a, 64 bits.
pub struct Digest(pub u64);

impl Digest {
    pub fn new() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

pub fn bulk(args: &BulkArgs) -> Result<serde_json::Value> {
    let limit = Duration::from_millis(args.timeout_ms);
    let start = Instant::now();
    let stream = TcpStream::connect_timeout(&args.to, limit)
        .with_context(|| format!("connecting {}", args.to))?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    let mut writer = stream.try_clone()?;
    let total = args.bytes;
    let sending = thread::spawn(move || -> io::Result<u64> {
        let mut digest = Digest::new();
        let mut chunk = Vec::with_capacity(64 << 10);
        let mut offset = 0;
        while offset < total {
            let end = (offset + (64 << 10)).min(total);
            chunk.clear();
            chunk.extend((offset..end).map(pattern));
            writer.write_all(&chunk)?;
            digest.update(&chunk);
            offset = end;
        }
        writer.shutdown(Shutdown::Write)?;
        Ok(digest.0)
    });

    let (received, matched, received_digest, spurious, read_error) = receive(stream, limit);
    let sent_digest = sending
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))?;
    let (sent_digest, write_error) = match sent_digest {
        Ok(d) => (Some(d), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(json!({
        "sent": if write_error.is_none() { total } else { 0 },
        "received": received,
        "matched": matched && received == total,
        "sent_digest": sent_digest.map(|d| format!("{d:016x}")),
        "received_digest": format!("{received_digest:016x}"),
        "write_error": write_error,
        "read_error": read_error,
        "spurious_eagain": spurious,
        "elapsed_ms": start.elapsed().as_millis() as u64,
    }))
}

/// Reads the echo to EOF, comparing it with the pattern as it arrives. Each read may take
/// `limit`; an EAGAIN well before that is a spurious wake-up, retried and counted.
fn receive(mut stream: TcpStream, limit: Duration) -> (u64, bool, u64, u64, Option<String>) {
    let mut digest = Digest::new();
    let mut buf = vec![0u8; 64 << 10];
    let (mut received, mut matched, mut spurious) = (0u64, true, 0u64);
    loop {
        let asked = Instant::now();
        match stream.read(&mut buf) {
            Ok(0) => return (received, matched, digest.0, spurious, None),
            Ok(n) => {
                let got = &buf[..n];
                matched &= got
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == pattern(received + i as u64));
                digest.update(got);
                received += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && asked.elapsed() < limit / 2 => {
                spurious += 1;
            }
            Err(e) => return (received, false, digest.0, spurious, Some(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_does_not_repeat_across_blocks() {
        let a: Vec<u8> = (0..8).map(pattern).collect();
        let b: Vec<u8> = (8..16).map(pattern).collect();
        assert_ne!(a, b);
        let mut d1 = Digest::new();
        d1.update(&a);
        let mut d2 = Digest::new();
        d2.update(&b);
        assert_ne!(d1.0, d2.0);
    }
}
