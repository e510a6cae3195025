//! A packet capture on the fabric, the "wire" between the bed's nodes: every frame any node
//! sends or receives there, kept as raw bytes so a test can search them (e.g. to show that a
//! reply body never crossed the link in clear).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context, Result, bail};

use super::TestBed;

/// Bytes kept at most; a test's traffic fits well within it.
const MAX_BYTES: usize = 256 << 20;

pub struct Capture {
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<Vec<u8>>>,
}

impl Capture {
    /// Starts capturing every frame on the bed's fabric.
    pub fn fabric(bed: &TestBed) -> Result<Capture> {
        let socket = bed.in_netns(&bed.fabric, open_packet_socket)??;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let worker = std::thread::spawn(move || read_frames(&socket, &flag));
        Ok(Capture {
            stop,
            worker: Some(worker),
        })
    }

    /// Stops and returns every captured frame, concatenated.
    pub fn finish(mut self) -> Vec<u8> {
        self.stop.store(true, Ordering::SeqCst);
        self.worker
            .take()
            .and_then(|w| w.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// An `AF_PACKET` socket for all protocols, with a short receive timeout so the reader can stop.
fn open_packet_socket() -> Result<OwnedFd> {
    let protocol = (libc::ETH_P_ALL as u16).to_be() as i32;
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, protocol) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: the option value points to a live timeval of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_RCVTIMEO");
    }
    Ok(socket)
}

fn read_frames(socket: &OwnedFd, stop: &AtomicBool) -> Vec<u8> {
    let mut captured = Vec::new();
    let mut frame = vec![0u8; 65_536];
    while !stop.load(Ordering::SeqCst) && captured.len() < MAX_BYTES {
        // SAFETY: the buffer is live and its length is passed.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                frame.as_mut_ptr().cast(),
                frame.len(),
                0,
            )
        };
        if let Ok(n @ 1..) = usize::try_from(n) {
            captured.extend_from_slice(&frame[..n]);
        }
    }
    captured
}
