//! Running code inside a bed: threads that enter a network namespace, and processes that join a
//! cgroup and then enter a namespace.
//!
//! Nothing here uses `ip netns exec`: it remounts /sys in a private mount namespace, which hides
//! both the cgroup tree and bpffs from the process. Joining the cgroup comes first because a
//! socket's cgroup is fixed when the socket is created.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

pub(crate) fn netns_path(netns: &str) -> PathBuf {
    Path::new("/run/netns").join(netns)
}

fn open_netns(netns: &str) -> Result<OwnedFd> {
    let path = netns_path(netns);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    Ok(file.into())
}

fn enter(netns: &OwnedFd) -> io::Result<()> {
    // SAFETY: setns only reads the descriptor, which `netns` keeps open for the call.
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a new thread inside `netns`. The network namespace is per thread, so the caller's
/// own threads are untouched; a panic in `f` is passed on to the caller.
pub(crate) fn on_thread_in<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let fd = open_netns(netns)?;
    thread::scope(|scope| {
        let worker = scope.spawn(move || enter(&fd).map(|()| f()));
        match worker.join() {
            Ok(result) => result.with_context(|| format!("entering netns {netns}")),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Writes `/proc/sys/net/...` settings of `netns` (procfs shows the reading thread's namespace).
pub(crate) fn set_sysctls(netns: &str, settings: &[(&str, &str)]) -> Result<()> {
    on_thread_in(netns, || {
        for (key, value) in settings {
            let path = Path::new("/proc/sys/net").join(key.replace('.', "/"));
            std::fs::write(&path, value)
                .with_context(|| format!("netns {netns}: setting net.{key}={value}"))?;
        }
        Ok(())
    })?
}

/// Starts `cmd` in the cgroup at `cgroup` and the network namespace `netns`. Both are opened
/// here, before the fork, so the child only has to write and `setns` between fork and exec.
pub(crate) fn spawn_in(cgroup: &Path, netns: &str, mut cmd: Command) -> Result<Child> {
    let procs_path = cgroup.join("cgroup.procs");
    let procs: OwnedFd = OpenOptions::new()
        .write(true)
        .open(&procs_path)
        .with_context(|| format!("opening {}", procs_path.display()))?
        .into();
    let ns = open_netns(netns)?;
    let (procs_fd, ns_fd) = (procs.as_raw_fd(), ns.as_raw_fd());
    // SAFETY: the hook runs between fork and exec, so it may only use async-signal-safe calls:
    // it makes two system calls and allocates nothing. Both descriptors stay open until `spawn`
    // returns because `procs` and `ns` live to the end of this function; they are close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            // "0" means the writing process itself.
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(io::Error::last_os_error());
            }
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.spawn().with_context(|| {
        format!(
            "starting {program} in netns {netns}, cgroup {}",
            cgroup.display()
        )
    })
}

/// Like `Command::output` for a started child, with a time limit: on timeout the child is killed
/// and an error returned. Output pipes are read on threads, so a chatty child cannot block.
pub(crate) fn wait_with_timeout(mut child: Child, what: &str, limit: Duration) -> Result<Output> {
    let deadline = Instant::now() + limit;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {what}"))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            // The child may have exited just now; killing a zombie is harmless.
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what}: still running after {limit:?}, killed");
        }
        thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(10));
    };
    // A grandchild holding the pipes open must not stall us past the deadline either.
    let collect = |rx: mpsc::Receiver<io::Result<Vec<u8>>>, stream: &str| -> Result<Vec<u8>> {
        let left = deadline.saturating_duration_since(Instant::now());
        let bytes = rx
            .recv_timeout(left)
            .map_err(|_| anyhow!("{what}: {stream} still open after {limit:?}"))?;
        bytes.with_context(|| format!("{what}: reading {stream}"))
    };
    let stdout = collect(stdout, "stdout")?;
    let stderr = collect(stderr, "stderr")?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Reads a pipe to its end on a thread of its own; the result arrives on the returned channel.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    match pipe {
        Some(mut pipe) => {
            thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = tx.send(pipe.read_to_end(&mut bytes).map(|_| bytes));
            });
        }
        None => {
            let _ = tx.send(Ok(Vec::new()));
        }
    }
    rx
}

/// Sets the stdio the way `Command::output` does, for [`wait_with_timeout`].
pub(crate) fn capture_output(cmd: &mut Command) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
}
