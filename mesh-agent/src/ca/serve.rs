//! `ca serve`: the CA's HTTPS server (TLS 1.3, HTTP/1.1), and the loop that keeps it in step
//! with its directory. The mesh state comes from the state file (hot-reloaded) or, in a
//! cluster, from snapshots another source publishes ([`StateSource::Watch`]).
//!
//! The directory is polled every `reload_interval`: a rotation step or a new node token takes
//! effect within one interval. When the signing root changes, the CA's own serving certificate
//! is re-issued from the new root, so nodes that trust only the current bundle can still reach
//! it after the old root is dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::CaError;
use super::api::{Shared, handle};
use super::authority::{Authority, Settings};
use super::dir::{CaDir, io};
use super::metrics::{CaMetrics, serve_metrics};
use super::nodeauth::NodeAuth;
use super::root::Signer;
use crate::identity::fingerprint;
use crate::kubernetes::{self, KubeMetrics, KubeSourceConfig};
use crate::state::{self, MeshState};

/// The serving certificate lives this long and is re-issued at half life.
const SERVING_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// Which workloads run on which node.
    pub state: StateSource,
    /// How the node behind a request's bearer token is known.
    pub node_auth: NodeAuth,
    pub cert_ttl: Duration,
    pub metrics_addr: Option<SocketAddr>,
    /// How often the directory and the state file are checked for changes.
    pub reload_interval: Duration,
}

/// Where `ca serve` reads the mesh state from.
#[derive(Clone)]
pub enum StateSource {
    /// The state file (`--state`), checked for changes every `reload_interval`: local mode.
    File(PathBuf),
    /// Snapshots published by another source of this process (the Kubernetes source in a
    /// cluster); the CA reads the latest on each request.
    Watch(watch::Receiver<Arc<MeshState>>),
    /// The cluster's API, watched by the CA itself (`--state-source kubernetes`). Until its
    /// first snapshot the CA knows no workload and refuses every request as `not_on_node`.
    Kubernetes(kube::Client),
}

impl std::fmt::Debug for StateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateSource::File(path) => f.debug_tuple("File").field(path).finish(),
            StateSource::Watch(_) => f.write_str("Watch"),
            StateSource::Kubernetes(_) => f.write_str("Kubernetes"),
        }
    }
}

/// A CA serving in this process; dropping it stops it.
pub struct RunningCa {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub metrics: CaMetrics,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RunningCa {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Runs the CA until SIGINT or SIGTERM.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let ca = start(options).await?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    info!(addr = %ca.addr, "CA stopping");
    drop(ca);
    Ok(())
}

/// Loads the directory and the state file, binds, and serves in background tasks.
pub async fn start(options: ServeOptions) -> Result<RunningCa, CaError> {
    let dir = CaDir::new(&options.dir);
    let settings = Settings::load(&dir)?;
    let authority =
        Authority::reload(&dir, None)?.ok_or_else(|| dir.invalid("", "nothing loaded"))?;
    let mut tasks = Vec::new();
    let metrics = CaMetrics::new().map_err(|e| CaError::Usage(format!("metrics: {e}")))?;
    let state_rx = match options.state {
        StateSource::File(path) => {
            let initial = state::load_file(&path).map_err(|e| CaError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let (rx, task) = state::watch_file(
                path,
                options.reload_interval,
                Arc::new(initial),
                |_| {},
                |_| {},
            );
            tasks.push(task);
            rx
        }
        StateSource::Watch(rx) => rx,
        StateSource::Kubernetes(client) => {
            let kube_metrics = KubeMetrics::new(metrics.registry())
                .map_err(|e| CaError::Usage(format!("metrics: {e}")))?;
            let (tx, rx) = watch::channel(Arc::new(MeshState::default()));
            let source = KubeSourceConfig::new("weft-ca");
            tasks.push(tokio::spawn(kubernetes::run(
                client,
                source,
                tx,
                kube_metrics,
            )));
            rx
        }
    };
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| CaError::Usage(format!("--listen {}: {e}", options.listen)))?;
    let addr = listener.local_addr().map_err(|e| io(&options.dir, e))?;
    let ip = (!addr.ip().is_unspecified()).then_some(addr.ip());
    let serving = Arc::new(Serving {
        ip,
        current: RwLock::new(Serving::issue(&authority.signer, ip)?),
    });
    let node_auth = match &options.node_auth {
        NodeAuth::Token => "token",
        NodeAuth::Kubernetes(_) => "kubernetes",
    };
    info!(addr = %addr, root = %authority.signer.fingerprint, trust_domain = %settings.trust_domain,
        ttl = ?options.cert_ttl, node_auth, "CA serving");
    let shared = Arc::new(Shared {
        authority: RwLock::new(Arc::new(authority)),
        state: state_rx,
        node_auth: options.node_auth,
        trust_domain: settings.trust_domain,
        ttl: options.cert_ttl,
        metrics: metrics.clone(),
    });
    tasks.push(tokio::spawn(accept(
        listener,
        tls_config(serving.clone()),
        shared.clone(),
    )));
    tasks.push(tokio::spawn(reload(
        dir,
        options.reload_interval,
        shared,
        serving,
    )));
    let mut metrics_addr = None;
    if let Some(wanted) = options.metrics_addr {
        let listener = TcpListener::bind(wanted)
            .await
            .map_err(|e| CaError::Usage(format!("--metrics-addr {wanted}: {e}")))?;
        metrics_addr = Some(listener.local_addr().map_err(|e| io(&options.dir, e))?);
        tasks.push(tokio::spawn(serve_metrics(listener, metrics.clone())));
    }
    Ok(RunningCa {
        addr,
        metrics_addr,
        metrics,
        tasks,
    })
}

/// The CA's serving certificate, swapped when the root changes or half its life is gone.
#[derive(Debug)]
struct Serving {
    ip: Option<std::net::IpAddr>,
    current: RwLock<(Arc<CertifiedKey>, Instant)>,
}

impl Serving {
    /// A fresh certificate and the time to renew it.
    fn issue(
        signer: &Signer,
        ip: Option<std::net::IpAddr>,
    ) -> Result<(Arc<CertifiedKey>, Instant), CaError> {
        let (cert, key) = signer.serving(ip, SERVING_LIFETIME)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_ecdsa_type(&der)
            .map_err(|e| CaError::Usage(format!("serving key: {e}")))?;
        let renew = Instant::now() + SERVING_LIFETIME / 2;
        Ok((Arc::new(CertifiedKey::new(vec![cert], signing)), renew))
    }

    fn renew(&self, signer: &Signer) {
        match Serving::issue(signer, self.ip) {
            Ok(fresh) => *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh,
            Err(e) => warn!(error = %e, "CA serving certificate not renewed"),
        }
    }

    fn due(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            <= Instant::now()
    }
}

impl ResolvesServerCert for Serving {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .0
                .clone(),
        )
    }
}

fn tls_config(serving: Arc<Serving>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .with_no_client_auth()
        .with_cert_resolver(serving);
    Arc::new(config)
}

async fn accept(listener: TcpListener, tls: Arc<ServerConfig>, shared: Arc<Shared>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "CA accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return debug!(peer = %peer, error = %e, "CA TLS handshake failed"),
                Err(_) => return debug!(peer = %peer, "CA TLS handshake timed out"),
            };
            let service = service_fn(move |req| handle(shared.clone(), req));
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(peer = %peer, error = %e, "CA connection ended with an error");
            }
        });
    }
}

/// Polls the directory; a changed, consistent directory replaces the authority in force.
async fn reload(dir: CaDir, interval: Duration, shared: Arc<Shared>, serving: Arc<Serving>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_problem: Option<String> = None;
    loop {
        ticker.tick().await;
        let current = shared.authority();
        let (dir_again, current_again) = (dir.clone(), current.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            Authority::reload(&dir_again, Some(&current_again))
        })
        .await
        .unwrap_or_else(|e| Err(CaError::Usage(format!("reload panicked: {e}"))));
        match loaded {
            Ok(Some(fresh)) => {
                last_problem = None;
                adopt(&shared, &serving, &current, fresh);
            }
            Ok(None) => last_problem = None,
            Err(e) => {
                let problem = e.to_string();
                if last_problem.as_ref() != Some(&problem) {
                    warn!(error = %problem, "CA directory not reloaded; the current root stays in force");
                    last_problem = Some(problem);
                }
            }
        }
        if serving.due() {
            serving.renew(&shared.authority().signer);
        }
    }
}

fn adopt(shared: &Shared, serving: &Serving, current: &Authority, fresh: Authority) {
    let roots: Vec<String> = fresh.bundle.iter().map(|r| fingerprint(r)).collect();
    let root_changed = fresh.signer.fingerprint != current.signer.fingerprint;
    if root_changed {
        serving.renew(&fresh.signer);
    }
    info!(root = %fresh.signer.fingerprint, bundle = ?roots, nodes = fresh.tokens.nodes.len(),
        root_changed, "CA reloaded");
    *shared
        .authority
        .write()
        .unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
}
