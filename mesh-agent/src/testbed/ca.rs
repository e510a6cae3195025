//! The mesh CA as its own process on a node of the bed (`mesh-agent ca init` then `ca serve`),
//! and the flags that point an agent at it.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::TestBed;

/// The CA's port (Istio's istiod uses 15012 for certificate requests).
pub const CA_PORT: u16 = 15012;
pub const TRUST_DOMAIN: &str = "cluster.local";

pub struct MeshCa {
    /// The CA's directory: root key, bundle, node credentials.
    pub dir: PathBuf,
    pub addr: SocketAddr,
    bin: PathBuf,
    child: Option<Child>,
    pub log: PathBuf,
}

impl MeshCa {
    /// `ca init` with a credential for every node of the bed, then `ca serve` on `host` (a bed
    /// node without pods) reading the mesh state file `state`; `extra` goes to `ca serve`.
    pub fn start(
        bed: &TestBed,
        host: &str,
        bin_dir: &Path,
        state: &Path,
        extra: &[&str],
    ) -> Result<MeshCa> {
        let dir = bed.work_dir().join("ca");
        let bin = bin_dir.join("mesh-agent");
        let mut init = Command::new(&bin);
        init.args(["ca", "init", "--trust-domain", TRUST_DOMAIN, "--dir"])
            .arg(&dir);
        for node in bed.nodes() {
            init.args(["--node", &node.name]);
        }
        let out = init.output().context("running ca init")?;
        if !out.status.success() {
            bail!("ca init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let addr = SocketAddr::from((bed.node(host).ip, CA_PORT));
        let mut ca = MeshCa {
            dir,
            addr,
            bin,
            child: None,
            log: bed.work_dir().join("ca.log"),
        };
        ca.spawn(bed, host, state, extra)?;
        Ok(ca)
    }

    fn spawn(&mut self, bed: &TestBed, host: &str, state: &Path, extra: &[&str]) -> Result<()> {
        let out = std::fs::File::create(&self.log)?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(["ca", "serve", "--log-format", "json", "--dir"])
            .arg(&self.dir)
            .args(["--listen", &self.addr.to_string(), "--state"])
            .arg(state)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        self.child = Some(bed.spawn_on_node(host, cmd)?);
        let addr = self.addr;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let up = bed.in_netns(host, move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            })?;
            if up {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("ca serve exited with {status}: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("ca serve did not listen on {addr}: {}", self.log_text())
    }

    /// The agent flags for a node (its full name, as the agent knows it).
    pub fn agent_flags(&self, node: &str) -> Vec<String> {
        vec![
            "--ca-address".into(),
            self.addr.to_string(),
            "--ca-bundle".into(),
            self.dir.join("bundle.pem").display().to_string(),
            "--ca-token".into(),
            self.dir
                .join("nodes")
                .join(format!("{node}.token"))
                .display()
                .to_string(),
            "--trust-domain".into(),
            TRUST_DOMAIN.into(),
        ]
    }

    /// Runs `mesh-agent ca <args> --dir <dir>` (e.g. `rotate begin`) to completion.
    pub fn command(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .arg("ca")
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .with_context(|| format!("running ca {args:?}"))?;
        if !out.status.success() {
            bail!("ca {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MeshCa {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
