//! The end-to-end harness: a CA directory and `ca serve` in-process on loopback, identity
//! managers for its nodes, captured logs, and metric scraping.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus::Registry;
use tokio::sync::watch;
use tracing_subscriber::fmt::MakeWriter;

use super::super::{InitOptions, NodeAuth, RunningCa, ServeOptions, StateSource, init, start};
use super::{STATE, Scratch, TD, id};
use crate::identity::{
    CaClientConfig, Identities, IdentityManager, IdentityMetrics, SpiffeId, fingerprint, pem_certs,
};

/// Log lines (JSON, one event per line) written by the code under test on this thread.
#[derive(Clone, Default)]
pub(super) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Every event of the process, from the first call on. A global subscriber, not a scoped one:
/// callsites first hit on another test's thread would otherwise be cached as uninteresting.
/// Tests tell their events apart by root fingerprint, serial or node.
pub(super) fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(logs.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test sets a global subscriber");
        logs
    })
}

impl Logs {
    /// Events whose message is `message` and whose `field` is `value`.
    pub(super) fn events(&self, message: &str, field: &str, value: &str) -> Vec<serde_json::Value> {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["message"] == message && e[field] == value)
            .collect()
    }
}

/// Polls `done` every 50 ms until it holds or `limit` passes.
pub(super) async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

pub(super) const WAIT: Duration = Duration::from_secs(20);

pub(super) struct Mesh {
    _scratch: Scratch,
    pub(super) dir: PathBuf,
    pub(super) ca: RunningCa,
}

pub(super) async fn mesh(name: &str, ttl: Duration) -> Mesh {
    mesh_with(name, ttl, NodeAuth::Token, None).await
}

/// A CA authenticating nodes with `node_auth`, reading its state from `state` when given, else
/// from a state file holding [`STATE`].
pub(super) async fn mesh_with(
    name: &str,
    ttl: Duration,
    node_auth: NodeAuth,
    state: Option<StateSource>,
) -> Mesh {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let scratch = Scratch::new(name);
    let dir = scratch.0.join("ca");
    init(&InitOptions {
        dir: dir.clone(),
        trust_domain: TD.into(),
        nodes: vec!["node-a".into(), "node-b".into()],
        ..InitOptions::default()
    })
    .expect("ca init");
    let state = match state {
        Some(source) => source,
        None => {
            let file = scratch.0.join("mesh.yaml");
            std::fs::write(&file, STATE).expect("state file");
            StateSource::File(file)
        }
    };
    let ca = start(ServeOptions {
        dir: dir.clone(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        state,
        node_auth,
        cert_ttl: ttl,
        metrics_addr: Some("127.0.0.1:0".parse().expect("addr")),
        reload_interval: Duration::from_millis(100),
    })
    .await
    .expect("ca serve");
    Mesh {
        _scratch: scratch,
        dir,
        ca,
    }
}

impl Mesh {
    pub(super) fn client(&self, node: &str, token: &Path) -> CaClientConfig {
        CaClientConfig {
            address: self.ca.addr.to_string(),
            bundle: self.dir.join("bundle.pem"),
            token: token.to_path_buf(),
            node: node.into(),
            trust_domain: TD.into(),
        }
    }

    pub(super) fn token(&self, node: &str) -> PathBuf {
        self.dir.join(format!("nodes/{node}.token"))
    }

    pub(super) fn manager(
        &self,
        node: &str,
        wanted: &[&str],
    ) -> (Identities, watch::Sender<BTreeSet<SpiffeId>>, Registry) {
        let identities = Identities::new(TD);
        let registry = Registry::new();
        let metrics = IdentityMetrics::register(&registry).expect("metrics");
        let (tx, rx) = watch::channel(wanted.iter().map(|sa| id(sa)).collect());
        IdentityManager::spawn(
            identities.clone(),
            self.client(node, &self.token(node)),
            rx,
            Some(metrics),
        );
        (identities, tx, registry)
    }

    pub(super) fn file_roots(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join("bundle.pem")).unwrap_or_default();
        pem_certs(&text)
            .unwrap_or_default()
            .iter()
            .map(|c| fingerprint(c))
            .collect()
    }
}

pub(super) fn roots(identities: &Identities) -> Vec<String> {
    identities.bundle().iter().map(|c| fingerprint(c)).collect()
}

pub(super) fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("metrics connect");
    let _ = stream.write_all(b"GET /metrics HTTP/1.0\r\nhost: ca\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

pub(super) fn counter(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
