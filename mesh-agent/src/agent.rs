//! `mesh-agent run`: brings the node agent up, keeps it in step with the state file, and takes
//! it down.
//!
//! Start-up order is what makes failures safe: the state file is loaded and validated before
//! the kernel is touched (a broken file exits with nothing attached); the datapath is attached
//! to the node's pods and the outbound listener bound before capture is switched on (a captured
//! connect always finds a listener). Shutdown runs the other way: capture off, listener closed,
//! in-flight connections drained, then the datapath is detached or left pinned for the next
//! agent.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context;
use mesh_common::Counter;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::admin::{self, AdminContext, AdminDatapath};
use crate::config::{self, AgentConfig, Capture, defaults};
use crate::datapath::{self, AttachedProgram, Datapath, DatapathConfig, PodAttachment, SyncReport};
use crate::policy::PeerAuthMode;
use crate::proxy::{
    HttpConfig, KernelOrigin, NetfilterOrigin, OriginLookup, Outbound, OutboundConfig,
};
use crate::state::{MeshState, Workload};
use crate::telemetry::{self, DatapathStats, Metrics, Readiness};

mod mtls;
mod source;
use mtls::MeshInputs;
use source::{PropagationMetrics, StateFeed};

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(cfg: AgentConfig) -> anyhow::Result<()> {
    // Handlers first: a signal during start-up must lead to a clean stop, not a default death.
    let mut signals = Signals::install()?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %serde_json::to_string(&cfg).unwrap_or_default(),
        "agent starting"
    );

    cfg.check_admin_addr()?;
    datapath::probe::require_kernel_features()?;
    let metrics = Arc::new(Metrics::new()?);
    let feed = source::start(&cfg, &metrics).await?;
    if cfg.source() == config::Source::File && !feed.initial.nodes.contains_key(&cfg.node) {
        warn!(node = %cfg.node, "this node is not in the mesh state; none of its pods is captured");
    }
    let proxy_cgroup = cfg.resolve_proxy_cgroup()?;
    if config::is_cgroup_root(&proxy_cgroup) {
        warn!(
            proxy_cgroup = %proxy_cgroup.display(),
            "the proxy cgroup is the cgroup root: the getsockopt hook runs for every process; \
             run the agent in its own cgroup or pass --proxy-cgroup"
        );
    }

    let datapath =
        Datapath::open(datapath_config(&cfg, proxy_cgroup)).context("opening the datapath")?;
    let pin_dir = datapath.pin_dir().to_path_buf();
    let datapath = SharedDatapath::new(datapath);

    let served = serve(&cfg, feed, metrics, &datapath, &pin_dir, &mut signals).await;

    let keep = cfg.keep_datapath;
    match (datapath.close(keep), served) {
        (Ok(()), served) => {
            if keep {
                info!("datapath left pinned at {}", pin_dir.display());
            } else {
                info!("datapath detached");
            }
            served
        }
        (Err(closing), Ok(())) => Err(closing.context("closing the datapath")),
        (Err(closing), Err(served)) => {
            error!(error = %format!("{closing:#}"), "closing the datapath");
            Err(served)
        }
    }
}

/// Everything between "datapath open" and "datapath closed".
async fn serve(
    cfg: &AgentConfig,
    feed: StateFeed,
    metrics: Arc<Metrics>,
    datapath: &SharedDatapath,
    pin_dir: &std::path::Path,
    signals: &mut Signals,
) -> anyhow::Result<()> {
    let report = datapath.sync(
        &attachments(&feed.initial, &cfg.node, cfg.capture),
        &local_pod_addrs(&feed.initial, &cfg.node),
    )?;

    let mut outbound_listeners = vec![
        bind(
            SocketAddr::from((cfg.proxy_ip, cfg.outbound_port)),
            "outbound",
        )
        .await?,
    ];
    if let Some(ip6) = cfg.proxy_ip6 {
        outbound_listeners
            .push(bind(SocketAddr::from((ip6, cfg.outbound_port)), "outbound").await?);
    }
    let metrics_listener = bind(cfg.metrics_addr, "metrics").await?;
    let readiness_listener = bind(cfg.readiness_addr, "readiness").await?;
    let admin_listener = std::net::TcpListener::bind(cfg.admin_addr)
        .with_context(|| format!("binding the admin listener on {}", cfg.admin_addr))?;

    metrics.register_datapath(Arc::new(datapath.clone()))?;
    metrics
        .events()
        .start_access_log(&cfg.access_log, cfg.access_log_sample)
        .await?;
    let events = metrics.events().clone();
    let propagation = PropagationMetrics::register(metrics.registry())?;
    let StateFeed {
        rx: state_rx,
        task: watcher,
        ..
    } = feed;
    let (stop_tx, stop) = watch::channel(false);
    let (abort_tx, abort) = watch::channel(false);
    let http = http_config(cfg);
    let mesh = mtls::start(MeshInputs {
        cfg,
        state: state_rx.clone(),
        metrics: metrics.clone(),
        http,
        stop: stop.clone(),
        abort,
    })
    .await?;
    let outbound = Outbound::new(
        OutboundConfig {
            connect_timeout: cfg.connect_timeout.get(),
            idle_timeout: cfg.idle_timeout.get(),
            max_connections: cfg.max_connections,
            detect_timeout: cfg.detect_timeout.get(),
            http,
        },
        state_rx.clone(),
        origins(cfg.capture, &state_rx),
        metrics.clone(),
        mesh.dialer.clone(),
    );
    let exporter = start_tracing(cfg, &metrics, &outbound)?;

    datapath.set_ready(true)?;
    let ready = Readiness::default();
    ready.set(true);
    info!(
        node = %cfg.node,
        pin_dir = %pin_dir.display(),
        attached = report.attached.len(),
        adopted = report.adopted.len(),
        "datapath ready"
    );

    let accepting: Vec<JoinHandle<()>> = outbound_listeners
        .into_iter()
        .map(|l| tokio::spawn(outbound.clone().serve(l, stop.clone())))
        .collect();
    let metrics_server = tokio::spawn(telemetry::serve(metrics_listener, metrics, stop.clone()));
    let readiness_server = tokio::spawn(telemetry::serve_readiness(
        readiness_listener,
        ready.clone(),
        stop.clone(),
    ));
    let admin_context = AdminContext {
        config: cfg.clone(),
        state: state_rx.clone(),
        identities: mesh.identities.clone(),
        datapath: Arc::new(datapath.clone()),
        ready: ready.clone(),
        started: std::time::Instant::now(),
        events: Some(events),
        outbound: Some(outbound.clone()),
    };
    let admin_server = admin::spawn(admin_listener, admin_context, stop.clone())
        .context("starting the admin API thread")?;
    info!(admin = %cfg.admin_addr, metrics = %cfg.metrics_addr, readiness = %cfg.readiness_addr, "local HTTP endpoints serving");
    let resync = tokio::spawn(resync(
        state_rx,
        datapath.clone(),
        outbound.clone(),
        cfg.node.clone(),
        propagation,
        cfg.capture,
    ));

    let signal = signals.recv().await;
    info!(signal, "shutting down");
    // Capture off before the listener closes, so no new connect is sent to a closed port.
    ready.set(false);
    if let Err(e) = datapath.set_ready(false) {
        error!(error = %format!("{e:#}"), "clearing the datapath ready flag");
    }
    stop_tx.send_replace(true);
    for task in accepting {
        let _ = task.await;
    }
    let cut = outbound.drain(defaults::DRAIN_GRACE).await;
    if cut > 0 {
        warn!(connections = cut, grace = ?defaults::DRAIN_GRACE, "closed connections still open after the grace period");
    }
    // Inbound streams got the same grace period; what is left ends now.
    abort_tx.send_replace(true);
    mesh.shutdown();
    if let Some(exporter) = exporter {
        exporter.abort();
    }
    resync.abort();
    watcher.abort();
    let _ = metrics_server.await;
    let _ = readiness_server.await;
    // The admin thread sees `stop` too; joining it must not block a runtime worker.
    let _ = tokio::task::spawn_blocking(move || admin_server.join()).await;
    Ok(())
}

fn http_config(cfg: &AgentConfig) -> HttpConfig {
    HttpConfig {
        header_read_timeout: cfg.http_header_read_timeout.get(),
        max_header_bytes: cfg.http_max_header_bytes as usize,
        pool_idle_timeout: cfg.http_pool_idle_timeout.get(),
        max_mirrors: cfg.http_max_mirrors as usize,
        body_idle_timeout: Some(cfg.http_body_idle_timeout.get()).filter(|d| !d.is_zero()),
    }
}

fn datapath_config(cfg: &AgentConfig, proxy_cgroup: PathBuf) -> DatapathConfig {
    DatapathConfig {
        node: cfg.node.clone(),
        bpffs: cfg.bpffs.clone(),
        proxy_ip4: cfg.proxy_ip,
        proxy_ip6: cfg.proxy_ip6,
        outbound_port: cfg.outbound_port,
        fail_closed: cfg.fail_closed,
        exclude_cidrs: cfg
            .exclude_cidrs
            .iter()
            .map(|c| (c.addr, c.prefix))
            .collect(),
        exclude_ports: cfg.exclude_ports.clone(),
        proxy_cgroup,
        sockmap: cfg.sockmap,
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener on {addr}"))
}

/// Re-syncs the datapath to every new snapshot. The proxy reads the same channel, so it knows a
/// new pod before the datapath starts capturing it.
async fn resync(
    mut snapshots: watch::Receiver<Arc<MeshState>>,
    datapath: SharedDatapath,
    outbound: Arc<Outbound>,
    node: String,
    propagation: PropagationMetrics,
    capture: Capture,
) {
    while snapshots.changed().await.is_ok() {
        let snapshot = snapshots.borrow_and_update().clone();
        outbound.forget_removed_services(&snapshot);
        let pods = attachments(&snapshot, &node, capture);
        let addrs = local_pod_addrs(&snapshot, &node);
        let dp = datapath.clone();
        match tokio::task::spawn_blocking(move || dp.sync(&pods, &addrs)).await {
            Ok(Ok(report)) => {
                log_sync(&report);
                propagation.applied(&snapshot);
            }
            Ok(Err(e)) => {
                error!(error = %format!("{e:#}"), "datapath sync failed; retrying on the next change")
            }
            Err(e) => error!(error = %e, "datapath sync task failed"),
        }
    }
}

/// Where the proxy learns a connection's destination and source pod.
fn origins(capture: Capture, state: &watch::Receiver<Arc<MeshState>>) -> Arc<dyn OriginLookup> {
    match capture {
        Capture::Ebpf => Arc::new(KernelOrigin),
        Capture::Iptables => Arc::new(NetfilterOrigin::new(state.clone())),
    }
}

/// The enrolled pods of `node` whose cgroup is known: what the datapath must capture, and
/// whether it must refuse plaintext into them. None under iptables capture: netfilter rules
/// redirect instead, and no weft program runs in any pod.
fn attachments(state: &MeshState, node: &str, capture: Capture) -> Vec<PodAttachment> {
    if capture == Capture::Iptables {
        return Vec::new();
    }
    state
        .enrolled_on(node)
        .filter_map(|w| {
            Some(PodAttachment {
                uid: w.uid.clone(),
                cgroup: w.cgroup.clone()?,
                cgroup_id: w.cgroup_id?,
                strict: strict_mode(state, w),
            })
        })
        .collect()
}

/// Addresses of the enrolled pods of `node`: the proxy's connections to them are accelerated.
fn local_pod_addrs(state: &MeshState, node: &str) -> Vec<IpAddr> {
    state
        .enrolled_on(node)
        .flat_map(|w| w.ips.iter().copied())
        .collect()
}

/// Whether the workload's peer authentication mode is STRICT (plaintext into it is dropped in
/// the kernel).
fn strict_mode(state: &MeshState, w: &Workload) -> bool {
    state.peer_authentication(w) == PeerAuthMode::Strict
}

fn log_sync(report: &SyncReport) {
    if !report.attached.is_empty() || !report.released.is_empty() {
        info!(attached = ?report.attached, adopted = report.adopted.len(), released = ?report.released, "datapath synced");
    }
}

/// The datapath shared by the reload task, the metrics scrape and shutdown. Calls are short
/// blocking syscalls, so a plain mutex serializes them; `close` takes the datapath out.
#[derive(Clone)]
struct SharedDatapath(Arc<Mutex<Option<Datapath>>>);

impl SharedDatapath {
    fn new(datapath: Datapath) -> Self {
        SharedDatapath(Arc::new(Mutex::new(Some(datapath))))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Datapath>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Datapath) -> anyhow::Result<T>) -> anyhow::Result<T> {
        match self.lock().as_mut() {
            Some(dp) => f(dp),
            None => anyhow::bail!("the datapath is closed"),
        }
    }

    /// Refreshes the node's own addresses (the sources STRICT pods accept) and its pods'
    /// addresses before every sync, the first one right after open included.
    fn sync(&self, pods: &[PodAttachment], pod_addrs: &[IpAddr]) -> anyhow::Result<SyncReport> {
        self.with(|dp| {
            let local =
                datapath::local_addresses().context("listing the node's addresses (getifaddrs)")?;
            dp.set_inbound_allow(&local)?;
            dp.set_local_pods(pod_addrs)?;
            dp.sync(pods)
        })
    }

    fn set_ready(&self, ready: bool) -> anyhow::Result<()> {
        self.with(|dp| dp.set_ready(ready))
    }

    fn close(&self, keep: bool) -> anyhow::Result<()> {
        match self.lock().take() {
            Some(dp) => dp.close(keep),
            None => Ok(()),
        }
    }
}

impl DatapathStats for SharedDatapath {
    fn counters(&self) -> anyhow::Result<Vec<(Counter, u64)>> {
        self.with(|dp| dp.counters())
    }

    fn map_entries(&self) -> anyhow::Result<Vec<(&'static str, usize)>> {
        self.with(|dp| dp.map_entries())
    }

    fn program_runs(&self) -> anyhow::Result<Vec<datapath::ProgramRuns>> {
        self.with(|dp| dp.program_runs())
    }
}

impl AdminDatapath for SharedDatapath {
    /// Reads the cgroup directly: attachments are the kernel's to report, no lock needed.
    fn attached(&self, cgroup: &std::path::Path) -> anyhow::Result<Vec<AttachedProgram>> {
        datapath::attached_programs(cgroup)
    }
}

/// Starts the span exporter and turns tracing on in the proxy, when `--otlp-endpoint` is set.
fn start_tracing(
    cfg: &AgentConfig,
    metrics: &Metrics,
    outbound: &Outbound,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(url) = &cfg.otlp_endpoint else {
        return Ok(None);
    };
    let trace_cfg = telemetry::trace::TraceConfig {
        endpoint: telemetry::trace::Endpoint::parse(url)?,
        sampling: cfg.trace_sampling,
        node: cfg.node.clone(),
    };
    let (tracer, task) = telemetry::trace::Tracer::start(trace_cfg, metrics.registry())?;
    outbound.set_tracer(tracer);
    info!(endpoint = %url, sampling = cfg.trace_sampling, "exporting spans over OTLP/HTTP");
    Ok(Some(task))
}

/// SIGTERM and SIGINT, installed once.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
