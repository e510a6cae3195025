//! The live part of `explain`: which endpoint the source's proxy would choose now and what
//! its balancers know about each endpoint (latency estimate, requests in flight, ejection).
//! Only the source's node balances its connections, so only that node's agent can say.

use std::time::Instant;

use super::AdminContext;
use super::destination::Destination;
use super::views::{EndpointHealth, ExplainEndpoint};
use crate::balance::{Algorithm, EndpointStatus, Preview};
use crate::state::{MeshState, Workload};

/// What the source's connection is balanced by.
pub struct Balanced<'a> {
    pub state: &'a MeshState,
    pub dst: &'a Destination,
    pub src: &'a Workload,
    /// Not captured: not proxied, so not balanced.
    pub captured: bool,
}

impl Balanced<'_> {
    /// Marks the endpoints the balancers would choose, fills in their health and says how
    /// each balancer chose in `notes`.
    pub fn apply(
        &self,
        ctx: &AdminContext,
        endpoints: &mut [ExplainEndpoint],
        notes: &mut Vec<String>,
    ) {
        if self.dst.balanced.is_empty() || !self.captured {
            return;
        }
        if self.src.node != ctx.config.node {
            notes.push(format!(
                "which endpoint is chosen is known to node {}'s agent only",
                self.src.node
            ));
            return;
        }
        let Some(outbound) = &ctx.outbound else {
            return;
        };
        for (service, port) in &self.dst.balanced {
            let Some(target) = self.state.service_port(service, *port) else {
                continue;
            };
            let preview = outbound.preview(target, self.dst.http, Some(self.src));
            let name = target.service.display_name();
            for ep in endpoints
                .iter_mut()
                .filter(|e| e.service.as_deref() == Some(name.as_str()))
            {
                ep.chosen = preview.chosen == Some(ep.address);
                ep.health = preview
                    .endpoints
                    .iter()
                    .find(|s| s.addr == ep.address)
                    .map(health);
            }
            if let Some(note) = self.note(&name, *port, &preview) {
                notes.push(note);
            }
        }
    }

    fn note(&self, name: &str, port: u16, preview: &Preview) -> Option<String> {
        let chosen = preview.chosen?;
        let unit = if self.dst.http {
            "request"
        } else {
            "connection"
        };
        let how = match preview.algorithm {
            Algorithm::RoundRobin => String::new(),
            Algorithm::ConsistentHash => {
                "; it hashes each request, so requests with other keys may go elsewhere".to_owned()
            }
            Algorithm::P2cEwma | Algorithm::LeastRequest => {
                "; it compares two random endpoints per request, so the next one may differ"
                    .to_owned()
            }
        };
        let fresh = if preview.active {
            ""
        } else {
            " (nothing balanced yet: it knows nothing about the endpoints)"
        };
        Some(format!(
            "{name}:{port}: the {} balancer sends the next {unit} to {chosen}{how}{fresh}",
            preview.algorithm.as_str()
        ))
    }
}

fn health(s: &EndpointStatus) -> EndpointHealth {
    let now = Instant::now();
    EndpointHealth {
        in_flight: s.in_flight,
        latency_ms: (s.ewma_ms * 1000.0).round() / 1000.0,
        ejected_for_ms: s
            .ejected_until
            .map(|until| until.saturating_duration_since(now).as_millis() as u64),
        times_ejected: s.times_ejected,
    }
}
