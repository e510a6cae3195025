//! Request mirroring (the `RequestMirror` filter): a copy of the request goes to another
//! service port and its response is thrown away.
//!
//! Mirrors never slow the request they copy: the copies run in their own task, after the main
//! request has its answer and its body is known in full; a body larger than the replay bound
//! is not mirrored. At most `max_mirrors` copies run at once; beyond that, copies are dropped
//! and counted, so a slow mirror target cannot pile up work in the proxy.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, request};

use super::body::{TeeBody, UpstreamBody};
use super::forward::{HttpConn, set_authority};
use super::key::StackStr;
use super::retry::BodyCopy;
use crate::balance::CallOutcome;
use crate::proxy::detect::declared;
use crate::routing::Mirror;
use crate::state::MeshState;

/// A mirrored copy that takes longer than this is abandoned.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);

/// The mirrors sampled for one request, with the head each copy starts from.
pub struct Mirrors {
    targets: Vec<(String, String, u16)>,
    head: request::Parts,
}

impl Mirrors {
    /// Samples `mirrors` for this request; `None` when no copy is to be made.
    pub fn sample<'m>(
        mirrors: impl Iterator<Item = &'m Mirror>,
        head: &request::Parts,
    ) -> Option<Mirrors> {
        let targets: Vec<_> = mirrors
            .filter(|m| m.sampled(fastrand::u32(..)))
            .map(|m| (m.service.0.clone(), m.service.1.clone(), m.port))
            .collect();
        if targets.is_empty() {
            return None;
        }
        Some(Mirrors {
            targets,
            head: super::retry::clone_head(head),
        })
    }

    /// Sends the copies in the background, once `body` is available.
    pub fn spawn(self, conn: &Arc<HttpConn>, state: Arc<MeshState>, body: BodyCopy) {
        let metrics = conn.outbound.metrics.clone();
        let Ok(permit) = conn.outbound.http.mirrors.clone().try_acquire_owned() else {
            metrics.http().mirror("dropped");
            return;
        };
        let conn = conn.clone();
        tokio::spawn(async move {
            let record = match body {
                BodyCopy::Empty => None,
                BodyCopy::Pending(back) => match tokio::time::timeout(MIRROR_TIMEOUT, back).await {
                    Ok(Ok(returned)) if returned.record.complete() => Some(returned.record),
                    _ => {
                        metrics.http().mirror("body_unavailable");
                        return;
                    }
                },
                BodyCopy::None => {
                    metrics.http().mirror("body_unavailable");
                    return;
                }
            };
            let sends = self.targets.iter().map(|(ns, name, port)| {
                let body = match &record {
                    Some(r) => UpstreamBody::Tee(TeeBody::copy(r)),
                    None => UpstreamBody::Empty,
                };
                let head = super::retry::clone_head(&self.head);
                let service = (ns.clone(), name.clone());
                let conn = &conn;
                let state = &state;
                async move {
                    let sent = send_copy(conn, state, &service, *port, head, body).await;
                    conn.outbound
                        .metrics
                        .http()
                        .mirror(if sent { "sent" } else { "failed" });
                }
            });
            futures_util::future::join_all(sends).await;
            drop(permit);
        });
    }
}

/// Sends one copy to a service port; true if the target answered at all.
async fn send_copy(
    conn: &HttpConn,
    state: &MeshState,
    service: &(String, String),
    port: u16,
    mut head: request::Parts,
    body: UpstreamBody,
) -> bool {
    let Some(target) = state.service_port(service, port) else {
        return false;
    };
    let http = &conn.outbound.http;
    let guard = http.guards.get(service, &target.service.traffic_policy);
    let key = StackStr::balancer_key(service, port);
    let balancer = http
        .balancers
        .get(key.as_str(), &target.endpoints, &guard.balance);
    let h2 = conn.client_h2 || declared(&target.port).upstream_h2();
    // A copy never waits for a connection slot: without a free one it is not sent. Its
    // HTTP/1.1 slot is held until the copy is done.
    let _h1_slot = if h2 {
        None
    } else {
        match guard.limits().try_connection() {
            Some(slot) => Some(slot),
            None => return false,
        }
    };
    let Some(pick) = balancer.pick(None) else {
        return false;
    };
    set_authority(&mut head, h2, conn.original_dst);
    let request = Request::from_parts(head, body);
    let started = std::time::Instant::now();
    let sending = http
        .upstreams
        .send(pick.addr(), &conn.via, h2, request, guard.limits(), None);
    match tokio::time::timeout(MIRROR_TIMEOUT, sending).await {
        Ok(Ok(response)) => {
            let outcome = match response.status().as_u16() {
                502..=504 => CallOutcome::GatewayError,
                500..=599 => CallOutcome::ServerError,
                _ => CallOutcome::Success {
                    latency: started.elapsed(),
                },
            };
            pick.finish(outcome);
            true
        }
        Ok(Err(_)) => {
            pick.finish(CallOutcome::GatewayError);
            false
        }
        Err(_) => false,
    }
}
