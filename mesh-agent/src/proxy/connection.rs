//! One captured connection, from accept to close: who is calling (the kernel's origin record,
//! never the source address), where it goes (a service's endpoint, or the original destination
//! itself), the upstream connect, the byte copy, and the one log event and metrics at the end.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::TcpStream;
use tracing::{Instrument, info, info_span, warn};

use super::copy::{CopyEnd, copy_bidirectional};
use super::outbound::Outbound;
use crate::state::{MeshState, Workload};
use crate::telemetry::{RefuseReason, TcpLabels};

/// How a connection ended: the `outcome` field of the `outbound connection` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    ConnectError,
    ConnectTimeout,
    IdleTimeout,
    IoError,
    /// Still open when the agent's shutdown grace period ended.
    Shutdown,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ConnectError => "connect_error",
            Outcome::ConnectTimeout => "connect_timeout",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::IoError => "io_error",
            Outcome::Shutdown => "shutdown",
        }
    }
}

/// Where a connection goes.
struct Route {
    /// `namespace/name` of the service addressed; empty for passthrough.
    service: String,
    /// `None` when the service has no endpoints.
    upstream: Option<SocketAddr>,
}

/// What happened after routing.
struct Finished {
    outcome: Outcome,
    sent: u64,
    received: u64,
    error: String,
}

impl Outbound {
    pub(super) async fn handle(&self, client: TcpStream, peer: SocketAddr) {
        let started = Instant::now();
        let captured = match self.origins.lookup(&client) {
            Ok(Some(c)) => c,
            Ok(None) => return self.refuse_without_origin(peer, "no origin record"),
            Err(e) => return self.refuse_without_origin(peer, &e.to_string()),
        };
        let original_dst = captured.original_dst;
        let (source, route) = {
            let state = self.state.borrow().clone();
            let source = state
                .workload_by_cgroup(captured.origin.pod_cgroup_id)
                .cloned();
            (source, self.route(&state, original_dst))
        };
        let src_workload = source
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |w| w.key.to_string());
        let labels = tcp_labels(source.as_deref(), &route.service);
        let span =
            info_span!("outbound", src_workload = %src_workload, original_dst = %original_dst);
        async move {
            self.metrics.connection_opened(&labels);
            let done = self.forward(client, route.upstream).await;
            self.metrics
                .connection_closed(&labels, done.sent, done.received);
            info!(
                src_workload = %src_workload,
                src_addr = %peer,
                original_dst = %original_dst,
                service = %route.service,
                upstream = %route.upstream.map(|u| u.to_string()).unwrap_or_default(),
                outcome = done.outcome.as_str(),
                bytes_sent = done.sent,
                bytes_received = done.received,
                duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                error = %done.error,
                "outbound connection"
            );
        }
        .instrument(span)
        .await
    }

    fn refuse_without_origin(&self, peer: SocketAddr, reason: &str) {
        warn!(
            peer = %peer,
            reason,
            "refused outbound connection: the datapath did not capture it"
        );
        self.metrics.refused(RefuseReason::NoOrigin);
    }

    fn route(&self, state: &MeshState, original_dst: SocketAddr) -> Route {
        match state.service_for(original_dst) {
            Some(target) => {
                let service = target.service.display_name();
                let upstream = self.lb.pick(&service, &target.endpoints);
                Route { service, upstream }
            }
            None => Route {
                service: String::new(),
                upstream: Some(original_dst),
            },
        }
    }

    async fn forward(&self, mut client: TcpStream, upstream: Option<SocketAddr>) -> Finished {
        let failed = |outcome, error: String| Finished {
            outcome,
            sent: 0,
            received: 0,
            error,
        };
        let Some(upstream) = upstream else {
            return failed(Outcome::ConnectError, "service has no endpoints".into());
        };
        let connect =
            tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(upstream));
        let mut server = tokio::select! {
            res = connect => match res {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return failed(Outcome::ConnectError, e.to_string()),
                Err(_) => return failed(Outcome::ConnectTimeout, "connect timed out".into()),
            },
            _ = self.aborted() => return failed(Outcome::Shutdown, String::new()),
        };
        // Proxied protocols are often request/response: do not let Nagle hold small writes.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let copied = copy_bidirectional(
            &mut client,
            &mut server,
            self.config.idle_timeout,
            self.aborted(),
        )
        .await;
        let (outcome, error) = match copied.end {
            CopyEnd::Done => (Outcome::Ok, String::new()),
            CopyEnd::Idle => (Outcome::IdleTimeout, String::new()),
            CopyEnd::Io(e) => (Outcome::IoError, e.to_string()),
            CopyEnd::Aborted => (Outcome::Shutdown, String::new()),
        };
        Finished {
            outcome,
            sent: copied.sent,
            received: copied.received,
            error,
        }
    }

    /// Resolves when the shutdown grace period is over.
    async fn aborted(&self) {
        let mut abort = self.abort.subscribe();
        if abort.wait_for(|aborted| *aborted).await.is_err() {
            // The sender lives as long as `self`; if it is gone, no abort can come.
            std::future::pending::<()>().await;
        }
    }
}

fn tcp_labels(source: Option<&Workload>, service: &str) -> TcpLabels {
    let (name, namespace) = source.map_or(("unknown", "unknown"), |w| {
        (w.key.name.as_str(), w.key.namespace.as_str())
    });
    TcpLabels {
        source_workload: name.to_owned(),
        source_namespace: namespace.to_owned(),
        destination_service: service.to_owned(),
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
