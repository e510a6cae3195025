//! The mesh side of the agent: workload identities from the CA, the tunnel listener (port
//! 15008) with this node's inbound side behind it, and the dialer the outbound side uses.
//!
//! Without `--ca-address` there are no identities: connections between pods go as plain TCP,
//! which is logged loudly at start.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::AgentConfig;
use crate::identity::{Identities, IdentityManager, IdentityMetrics, SpiffeId};
use crate::proxy::{Dialer, HttpConfig, Inbound, InboundConfig, MeshDial, TunnelHandler};
use crate::state::MeshState;
use crate::telemetry::Metrics;
use crate::tunnel::{self, PoolConfig, ServerConfig, TunnelPool};

/// What runs for mTLS, and how the outbound side dials.
pub struct MeshSide {
    pub dialer: Arc<Dialer>,
    pub identities: Option<Identities>,
    tasks: Vec<JoinHandle<()>>,
}

impl MeshSide {
    /// Stops the identity and tunnel tasks (after `stop` has closed the listener).
    pub fn shutdown(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

pub struct MeshInputs<'a> {
    pub cfg: &'a AgentConfig,
    pub state: watch::Receiver<Arc<MeshState>>,
    pub metrics: Arc<Metrics>,
    pub http: HttpConfig,
    pub stop: watch::Receiver<bool>,
    pub abort: watch::Receiver<bool>,
}

pub async fn start(inputs: MeshInputs<'_>) -> anyhow::Result<MeshSide> {
    let cfg = inputs.cfg;
    let connect_timeout = cfg.connect_timeout.get();
    let Some(ca) = cfg.ca_client() else {
        warn!(
            "no --ca-address: workloads get no identities, and connections between pods are \
             neither encrypted nor authenticated"
        );
        return Ok(MeshSide {
            dialer: Dialer::plain(connect_timeout),
            identities: None,
            tasks: Vec::new(),
        });
    };
    let identities = Identities::new(&cfg.trust_domain);
    let (wanted_tx, wanted) = watch::channel(wanted_ids(&inputs.state.borrow(), cfg));
    let identity_metrics = IdentityMetrics::register(inputs.metrics.registry())?;
    let manager = IdentityManager::spawn(identities.clone(), ca, wanted, Some(identity_metrics));
    let follow = tokio::spawn(follow_workloads(
        inputs.state.clone(),
        cfg.clone(),
        wanted_tx,
    ));

    let inbound = Inbound::new(
        &cfg.node,
        &cfg.trust_domain,
        inputs.state.clone(),
        inputs.metrics.clone(),
        InboundConfig {
            connect_timeout,
            idle_timeout: cfg.idle_timeout.get(),
            http: inputs.http,
        },
        inputs.abort,
    );
    let addr = SocketAddr::from((cfg.tunnel_ip, cfg.tunnel_port));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the tunnel listener on {addr}"))?;
    info!(addr = %addr, trust_domain = %cfg.trust_domain, "tunnel listener bound");
    let server = tokio::spawn(tunnel::serve(
        listener,
        identities.server_config(),
        TunnelHandler::new(inbound.clone()),
        ServerConfig {
            events: inputs.metrics.tunnel_events(),
            ..ServerConfig::default()
        },
        inputs.stop,
    ));
    let dialer = Dialer::mesh(
        connect_timeout,
        MeshDial {
            node: cfg.node.clone(),
            trust_domain: cfg.trust_domain.clone(),
            state: inputs.state,
            identities: identities.clone(),
            pool: TunnelPool::new(PoolConfig::default()),
            inbound,
            tunnel_port: cfg.tunnel_port,
        },
    );
    Ok(MeshSide {
        dialer,
        identities: Some(identities),
        tasks: vec![manager, follow, server],
    })
}

/// The identities of the enrolled pods of this node: the only ones its proxy may hold.
fn wanted_ids(state: &MeshState, cfg: &AgentConfig) -> BTreeSet<SpiffeId> {
    state
        .enrolled_on(&cfg.node)
        .map(|w| SpiffeId::of(&cfg.trust_domain, w))
        .collect()
}

async fn follow_workloads(
    mut state: watch::Receiver<Arc<MeshState>>,
    cfg: AgentConfig,
    wanted: watch::Sender<BTreeSet<SpiffeId>>,
) {
    while state.changed().await.is_ok() {
        let ids = wanted_ids(&state.borrow_and_update(), &cfg);
        wanted.send_if_modified(|current| {
            let changed = *current != ids;
            *current = ids;
            changed
        });
    }
}
