//! The attempts of one request to its backend service: circuit breaker, endpoint choice,
//! per-attempt and overall deadlines, and retries.
//!
//! A failed attempt is tried again only if the policy names its failure, the method may be
//! repeated (idempotent, or a route that asked for retries explicitly; a connect failure is
//! always safe since nothing was sent), the body can be sent again (see `body.rs`) and the
//! service's retry budget allows it. Retries wait an exponential backoff with full jitter.
//!
//! Each attempt needs a connection slot of the service (`slots.rs`): over HTTP/1.1 one of its
//! own, taken before the endpoint is chosen and kept by the response body; over h2c only when
//! the chosen endpoint has no connection yet. Waiting for a slot counts against the request's
//! deadline, not the per-try timeout (as in Envoy, a try starts once it has a connection).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, Response, request};
use hyper::body::{Body, Incoming};
use tokio::sync::oneshot;

use super::body::{ClientBody, Returned, TeeBody, UpstreamBody};
use super::forward::HttpConn;
use super::key::{StackStr, request_hash};
use super::policy::ServiceGuard;
use super::respond::{Mechanism, ResponseBody, generated};
use super::slots::{ConnectionSlot, Overflow, ServiceLimits};
use super::upstream::SendError;
use crate::balance::{self, CallOutcome};
use crate::resilience::{AttemptResult, RetryConfig, backoff, idempotent, retryable};
use crate::routing::Timeouts;
use crate::state::{RetryPolicy, ServiceTarget};
use crate::telemetry::UpstreamNotes;

/// How long a finished attempt may take to hand the request body back.
const BODY_RETURN_WAIT: Duration = Duration::from_secs(1);

/// One request to one backend service.
pub struct Exchange<'a> {
    pub conn: &'a HttpConn,
    /// `(namespace, name)` of the backend service.
    pub service: &'a (String, String),
    pub target: &'a ServiceTarget,
    /// The rule's own retry policy, which replaces the service's; a route that asks for
    /// retries itself may have any method retried. `None`: the service's.
    pub rule_retry: Option<&'a RetryPolicy>,
    pub timeouts: Timeouts,
    /// When the request arrived: the overall deadline counts from there.
    pub started: Instant,
    pub h2: bool,
    /// Upgrades are never retried: the first answer is final.
    pub upgrading: bool,
    /// The idle limit of the client's body, when it has one (see `body.rs`).
    pub body_stall: Option<Duration>,
    /// Where the attempts leave what the request's telemetry needs.
    pub notes: &'a UpstreamNotes,
}

/// The end of an exchange.
pub struct Exchanged {
    pub response: Response<ResponseBody>,
    pub mechanism: Option<Mechanism>,
    /// The request body's copy, once the last attempt lets go of it (for mirrors).
    pub body: BodyCopy,
    /// The endpoint of the last attempt; `None` when nothing was sent.
    pub upstream: Option<SocketAddr>,
}

/// Where a copy of the request body can be had.
pub enum BodyCopy {
    Empty,
    Pending(oneshot::Receiver<Returned>),
    /// Not kept.
    None,
}

/// Where the next attempt's body comes from.
enum Source {
    Empty,
    Stream(Option<ClientBody>),
    Tee(Option<Returned>),
}

/// Why an attempt produced no response.
enum Failed {
    Send(SendError),
    Timeout,
    /// No connection slot, and no place to wait for one: nothing was sent.
    Overflow,
}

/// A response, and the HTTP/1.1 connection slot it holds until its body is done.
type Answered = (Response<Incoming>, Option<ConnectionSlot>);

impl Exchange<'_> {
    /// Runs the attempts. `keep_copy`: keep the body for mirrors even without retries.
    pub async fn run(&self, parts: request::Parts, body: Incoming, keep_copy: bool) -> Exchanged {
        let http = &self.conn.outbound.http;
        let policy = &self.target.service.traffic_policy;
        let guard = http.guards.get(self.service, policy);
        let Some(permit) = guard.breaker().try_request() else {
            return local(Mechanism::CircuitOpen);
        };
        if self.target.endpoints.is_empty() {
            return local(Mechanism::NoHealthyUpstream);
        }
        let key = StackStr::balancer_key(self.service, self.target.port.port);
        let balancer = http
            .balancers
            .get(key.as_str(), &self.target.endpoints, &guard.balance);
        let hash = request_hash(&policy.load_balancer, &parts.headers, self.conn.source_hash);
        let rule_cfg = self.rule_retry.map(|p| guard.rule_retry(p));
        let cfg = rule_cfg.as_deref().unwrap_or(&guard.retry);
        let retries = if self.upgrading { 0 } else { cfg.attempts };
        let source = if body.is_end_stream() {
            Source::Empty
        } else if retries > 0 || keep_copy {
            Source::Tee(Some(Returned {
                record: Default::default(),
                rest: Some(ClientBody::new(
                    body,
                    self.body_stall,
                    self.notes.request_bytes.clone(),
                )),
            }))
        } else {
            Source::Stream(Some(ClientBody::new(
                body,
                self.body_stall,
                self.notes.request_bytes.clone(),
            )))
        };
        guard.budget.deposit();
        let attempts = self.attempts(&balancer, hash, cfg, retries, &guard, parts, source);
        let deadline = self.timeouts.request.map(|d| self.started + d);
        let outcome = match deadline {
            Some(at) => match tokio::time::timeout_at(at.into(), attempts).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    return Exchanged {
                        upstream: self.picked(),
                        ..local(Mechanism::Timeout)
                    };
                }
            },
            None => attempts.await,
        };
        match outcome {
            (Ok((response, slot)), body) => Exchanged {
                response: response.map(|b| ResponseBody::upstream(b, Some(permit), slot)),
                mechanism: None,
                body,
                upstream: self.picked(),
            },
            (Err(failed), body) => {
                let mechanism = match failed {
                    Failed::Send(SendError::Connect(_)) => Mechanism::UpstreamConnectFailure,
                    Failed::Send(SendError::Reset(_)) => Mechanism::UpstreamReset,
                    Failed::Send(SendError::Stalled) => Mechanism::RequestTimeout,
                    Failed::Timeout => Mechanism::Timeout,
                    Failed::Overflow => Mechanism::CircuitOpen,
                };
                if let Failed::Send(e) = &failed {
                    tracing::debug!(service = %self.conn.service_name, error = %e, "upstream request failed");
                }
                Exchanged {
                    body,
                    upstream: self.picked(),
                    ..local(mechanism)
                }
            }
        }
    }

    /// The endpoint of the latest attempt (the notes keep it for the request's telemetry).
    fn picked(&self) -> Option<SocketAddr> {
        self.notes.endpoint()
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempts(
        &self,
        balancer: &balance::Balancer,
        hash: Option<u64>,
        cfg: &RetryConfig,
        retries: u32,
        guard: &Arc<ServiceGuard>,
        parts: request::Parts,
        mut source: Source,
    ) -> (Result<Answered, Failed>, BodyCopy) {
        let metrics = self.conn.outbound.metrics.http();
        let upstreams = &self.conn.outbound.http.upstreams;
        let limits = guard.limits();
        let any_method = self.rule_retry.is_some() || idempotent(&parts.method);
        let per_try = match (self.timeouts.backend_request, cfg.per_try_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut parts = Some(parts);
        let mut attempt = 0u32;
        loop {
            // The slot of the previous attempt, if any, went with its result.
            let h1_slot = if self.h2 {
                None
            } else {
                match limits.connection(|| false).await {
                    Ok(slot) => slot,
                    Err(Overflow) => return (Err(Failed::Overflow), BodyCopy::None),
                }
            };
            let Some(pick) = balancer.pick(hash) else {
                return (
                    Err(Failed::Send(SendError::Connect("no endpoint".into()))),
                    BodyCopy::None,
                );
            };
            let h2_slot = if self.h2 {
                match limits
                    .connection(|| upstreams.h2_usable(&self.conn.via, pick.addr()))
                    .await
                {
                    Ok(slot) => slot,
                    Err(Overflow) => return (Err(Failed::Overflow), BodyCopy::None),
                }
            } else {
                None
            };
            let last = attempt >= retries;
            let head = if last {
                parts.take()
            } else {
                parts.as_ref().map(clone_head)
            };
            let Some(head) = head else {
                return (
                    Err(Failed::Send(SendError::Reset("request lost".into()))),
                    BodyCopy::None,
                );
            };
            let (body, copy) = source.next(cfg.max_replay_bytes);
            let sent = Instant::now();
            let request = Request::from_parts(head, body);
            let result = self
                .send(pick.addr(), request, per_try, limits, h2_slot)
                .await;
            let failure = classify(&result);
            self.notes.attempt(pick.addr(), sent.elapsed());
            if last && attempt > 0 && failure.is_some() {
                self.notes.retries_exhausted();
            }
            pick.finish(call_outcome(&result, sent.elapsed()));
            if attempt > 0 {
                let label = if failure.is_some_and(|f| retryable(cfg, &f)) {
                    "failure"
                } else {
                    "success"
                };
                metrics.retry(&self.conn.service_name, label);
            }
            let wanted = !last
                && failure.is_some_and(|f| {
                    retryable(cfg, &f) && (any_method || f == AttemptResult::ConnectFailure)
                });
            if !wanted {
                return (result.map(|r| (r, h1_slot)), copy);
            }
            if !source.recover(copy).await {
                metrics.retry_skipped(&self.conn.service_name, "not_replayable");
                return (result.map(|r| (r, h1_slot)), BodyCopy::None);
            }
            if !guard.budget.try_withdraw() {
                metrics.retry_skipped(&self.conn.service_name, "budget_exhausted");
                return (result.map(|r| (r, h1_slot)), BodyCopy::None);
            }
            // The next attempt waits for a slot: this one's must be free by then.
            drop((result, h1_slot));
            tokio::time::sleep(backoff(attempt, cfg.backoff_base, cfg.backoff_max)).await;
            attempt += 1;
        }
    }

    async fn send(
        &self,
        addr: SocketAddr,
        request: Request<UpstreamBody>,
        per_try: Option<Duration>,
        limits: &Arc<ServiceLimits>,
        h2_slot: Option<ConnectionSlot>,
    ) -> Result<Response<Incoming>, Failed> {
        let upstreams = &self.conn.outbound.http.upstreams;
        let sending = upstreams.send(addr, &self.conn.via, self.h2, request, limits, h2_slot);
        let sent = match per_try {
            Some(limit) => match tokio::time::timeout(limit, sending).await {
                Ok(sent) => sent,
                Err(_) => return Err(Failed::Timeout),
            },
            None => sending.await,
        };
        sent.map_err(Failed::Send)
    }
}

impl Source {
    /// The body of the next attempt, and where its copy will come back.
    fn next(&mut self, limit: usize) -> (UpstreamBody, BodyCopy) {
        match self {
            Source::Empty => (UpstreamBody::Empty, BodyCopy::Empty),
            Source::Stream(body) => match body.take() {
                Some(b) => (UpstreamBody::Stream(b), BodyCopy::None),
                None => (UpstreamBody::Empty, BodyCopy::None),
            },
            Source::Tee(returned) => match returned.take() {
                Some(r) => {
                    let (tee, back) = TeeBody::resume(r, limit);
                    (UpstreamBody::Tee(tee), BodyCopy::Pending(back))
                }
                None => (UpstreamBody::Empty, BodyCopy::None),
            },
        }
    }

    /// Takes the body back from a failed attempt; false if it cannot be sent again.
    async fn recover(&mut self, copy: BodyCopy) -> bool {
        match (self, copy) {
            (Source::Empty, _) => true,
            (Source::Tee(slot), BodyCopy::Pending(back)) => {
                match tokio::time::timeout(BODY_RETURN_WAIT, back).await {
                    Ok(Ok(returned)) if returned.replayable() => {
                        *slot = Some(returned);
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }
}

/// The request head again, for another attempt (extensions are per attempt).
pub(super) fn clone_head(parts: &request::Parts) -> request::Parts {
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}

/// The failure of an attempt, in the retry policy's terms; `None` for a success.
fn classify(result: &Result<Response<Incoming>, Failed>) -> Option<AttemptResult> {
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            if let Some(code) = grpc_status(response.headers()).filter(|c| *c != 0) {
                return Some(AttemptResult::GrpcStatus(code));
            }
            (status >= 400).then_some(AttemptResult::Status(status))
        }
        // Nothing was sent either way.
        Err(Failed::Send(SendError::Connect(_)) | Failed::Overflow) => {
            Some(AttemptResult::ConnectFailure)
        }
        Err(Failed::Send(SendError::Reset(_) | SendError::Stalled)) => Some(AttemptResult::Reset),
        Err(Failed::Timeout) => Some(AttemptResult::Timeout),
    }
}

/// What the balancer learns from an attempt.
fn call_outcome(result: &Result<Response<Incoming>, Failed>, latency: Duration) -> CallOutcome {
    match result {
        Ok(r) => match r.status().as_u16() {
            502..=504 => CallOutcome::GatewayError,
            500..=599 => CallOutcome::ServerError,
            _ => CallOutcome::Success { latency },
        },
        Err(_) => CallOutcome::GatewayError,
    }
}

/// `grpc-status` of a trailers-only gRPC response.
fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    let value = headers.get("grpc-status")?;
    std::str::from_utf8(value.as_bytes()).ok()?.parse().ok()
}

fn local(mechanism: Mechanism) -> Exchanged {
    Exchanged {
        response: generated(mechanism),
        mechanism: Some(mechanism),
        body: BodyCopy::None,
        upstream: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn grpc_statuses_are_read_from_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", HeaderValue::from_static("14"));
        assert_eq!(grpc_status(&h), Some(14));
    }
}
