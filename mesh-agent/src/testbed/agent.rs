//! A `mesh-agent run` process on a test-bed node: start it, wait until its datapath is ready,
//! read its JSON logs and scrape its metrics from inside the node's network namespace.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::TestBed;

/// Where the agent serves metrics inside its node's netns (the agent's default).
pub const METRICS_ADDR: &str = "127.0.0.1:15020";

pub struct AgentProcess {
    pub node: String,
    pub netns: String,
    child: Option<Child>,
    log: PathBuf,
}

impl AgentProcess {
    /// Starts `<bin_dir>/mesh-agent run --config <config> --node <node> --log-format json <extra>` in
    /// the node's netns and agent cgroup, logging to `<log_dir>/<node>-<n>.log`.
    pub fn start(
        bed: &TestBed,
        node: &str,
        bin_dir: &Path,
        config: &Path,
        extra: &[&str],
    ) -> Result<AgentProcess> {
        let mut cmd = Command::new(bin_dir.join("mesh-agent"));
        cmd.arg("--config").arg(config).args(extra);
        AgentProcess::spawn(bed, node, cmd)
    }

    /// Starts `<bin_dir>/mesh-agent run --source kubernetes --node <node> --log-format json
    /// <extra>` with `KUBECONFIG=<kubeconfig>`, as [`AgentProcess::start`] does.
    pub fn start_kubernetes(
        bed: &TestBed,
        node: &str,
        bin_dir: &Path,
        kubeconfig: &Path,
        extra: &[&str],
    ) -> Result<AgentProcess> {
        let mut cmd = Command::new(bin_dir.join("mesh-agent"));
        cmd.args(["--source", "kubernetes"])
            .args(extra)
            .env("KUBECONFIG", kubeconfig);
        AgentProcess::spawn(bed, node, cmd)
    }

    /// `cmd` holds the flags after `run --node <node> --log-format json`.
    fn spawn(bed: &TestBed, node: &str, flags: Command) -> Result<AgentProcess> {
        let n = bed.node(node);
        let log = unique_log_path(bed.work_dir(), &n.name);
        let out = std::fs::File::create(&log).with_context(|| format!("creating {log:?}"))?;
        let mut cmd = Command::new(flags.get_program());
        cmd.args(["run", "--node", &n.name, "--log-format", "json"])
            .args(flags.get_args())
            .envs(
                flags
                    .get_envs()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
            )
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = bed.spawn_on_node(node, cmd)?;
        Ok(AgentProcess {
            node: n.name.clone(),
            netns: n.netns.clone(),
            child: Some(child),
            log,
        })
    }

    /// Waits for the `datapath ready` event; fails early with the log if the agent exits.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Value> {
        self.wait_for_log(timeout, |e| message(e) == "datapath ready")
    }

    /// Waits until a log event satisfies `pred` and returns it.
    pub fn wait_for_log(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return Ok(e);
            }
            if let Some(status) = self.try_status()? {
                bail!(
                    "agent on {} exited ({status}) before the awaited event; log:\n{}",
                    self.node,
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "agent on {}: awaited event not seen within {timeout:?}; log:\n{}",
                    self.node,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every JSON event logged so far (non-JSON lines are skipped).
    pub fn events(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /metrics` from inside the node's netns.
    pub fn metrics(&self, bed: &TestBed) -> Result<String> {
        let body = bed.in_netns(&self.netns, || http_get(METRICS_ADDR, "/metrics"))??;
        Ok(body)
    }

    /// The value of one sample, e.g. `metric(&text, "weft_datapath_connects_total", &[("decision", "captured")])`.
    pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .find(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// The sum of every sample of `name` that has these labels (among others): a total over
    /// the labels not named, e.g. all destinations of one source.
    pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The agent's process id while it runs (to read its CPU time and memory from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let child = self.child.as_mut().context("agent already stopped")?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        // SAFETY: plain kill(2) on a child we own and have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.wait_exit(timeout)
    }

    /// Waits for the agent to exit by itself (e.g. after refusing its configuration).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.kill();
                bail!("agent on {} still running after {timeout:?}", self.node);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the agent gets no chance to clean up (what a crash or OOM kill looks like).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn try_status(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => Ok(None),
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where the agent of bed node `node` pins its datapath (see `mesh-agent run --bpffs`).
pub fn node_pin_dir(bed: &TestBed, node: &str) -> PathBuf {
    crate::datapath::node_pin_dir(Path::new("/sys/fs/bpf"), &bed.node(node).name)
}

/// The `message` field of a tracing JSON event.
pub fn message(event: &Value) -> &str {
    raw_field(event, "message")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A field of a tracing JSON event, as text (numbers and strings alike).
pub fn field(event: &Value, name: &str) -> Option<String> {
    let v = raw_field(event, name)?;
    Some(match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// tracing-subscriber nests fields under `fields` unless events are flattened; accept both.
fn raw_field<'a>(event: &'a Value, name: &str) -> Option<&'a Value> {
    event
        .get("fields")
        .and_then(|f| f.get(name))
        .or_else(|| event.get(name))
}

fn unique_log_path(dir: &Path, node: &str) -> PathBuf {
    (0..)
        .map(|i| dir.join(format!("{node}-agent-{i}.log")))
        .find(|p| !p.exists())
        .expect("an unused log name")
}

/// Minimal HTTP/1.1 GET for test scrapes (Connection: close, whole body).
pub fn http_get(addr: &str, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// Where the agent and weft-pod binaries are for an example (demo, benchmarks):
/// `WEFT_BIN_DIR`, else next to the example's directory (`target/<profile>/`).
pub fn example_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WEFT_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("example location")?;
    Ok(dir.to_path_buf())
}
