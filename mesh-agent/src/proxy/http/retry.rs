//! The attempts of one request to its backend service: circuit breaker, endpoint choice,
//! per-attempt and overall deadlines, and retries.
//!
//! A failed attempt is tried again only if the policy names its failure, the method may be
//! repeated (idempotent, or a route that asked for retries explicitly; a connect failure is
//! always safe since nothing was sent), the body can be sent again (see `body.rs`) and the
//! service's retry budget allows it. Retries wait an exponential backoff with full jitter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, Response, request};
use hyper::body::{Body, Incoming};
use tokio::sync::oneshot;

use super::body::{ClientBody, Returned, TeeBody, UpstreamBody};
use super::forward::HttpConn;
use super::policy::{ServiceGuard, StackStr, balance_config, retry_config};
use super::respond::{Mechanism, ResponseBody, generated};
use super::upstream::SendError;
use crate::balance::{self, CallOutcome};
use crate::resilience::{AttemptResult, RetryConfig, backoff, idempotent, retryable};
use crate::routing::Timeouts;
use crate::state::{HashKey, LoadBalancer, RetryPolicy, ServiceTarget};

/// How long a finished attempt may take to hand the request body back.
const BODY_RETURN_WAIT: Duration = Duration::from_secs(1);

/// One request to one backend service.
pub struct Exchange<'a> {
    pub conn: &'a HttpConn,
    /// `(namespace, name)` of the backend service.
    pub service: &'a (String, String),
    pub target: &'a ServiceTarget,
    /// The rule's retry policy, else the service's.
    pub retry: &'a RetryPolicy,
    /// The route asked for retries itself: any method may be retried.
    pub explicit_retry: bool,
    pub timeouts: Timeouts,
    /// When the request arrived: the overall deadline counts from there.
    pub started: Instant,
    pub h2: bool,
    /// Upgrades are never retried: the first answer is final.
    pub upgrading: bool,
    /// The idle limit of the client's body, when it has one (see `body.rs`).
    pub body_stall: Option<Duration>,
}

/// The end of an exchange.
pub struct Exchanged {
    pub response: Response<ResponseBody>,
    pub mechanism: Option<Mechanism>,
    /// The request body's copy, once the last attempt lets go of it (for mirrors).
    pub body: BodyCopy,
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
}

impl Exchange<'_> {
    /// Runs the attempts. `keep_copy`: keep the body for mirrors even without retries.
    pub async fn run(&self, parts: request::Parts, body: Incoming, keep_copy: bool) -> Exchanged {
        let http = &self.conn.outbound.http;
        let policy = &self.target.service.traffic_policy;
        let guard = http.guards.get(self.service, policy);
        let Some(permit) = guard.breaker.try_request() else {
            return local(Mechanism::CircuitOpen);
        };
        if self.target.endpoints.is_empty() {
            return local(Mechanism::NoHealthyUpstream);
        }
        let key = StackStr::balancer_key(self.service, self.target.port.port);
        let balancer = http.balancers.get(
            key.as_str(),
            &self.target.endpoints,
            &balance_config(policy),
        );
        let hash = request_hash(&policy.load_balancer, &parts.headers, self.conn.source_hash);
        let cfg = retry_config(self.retry);
        let retries = if self.upgrading { 0 } else { cfg.attempts };
        let source = if body.is_end_stream() {
            Source::Empty
        } else if retries > 0 || keep_copy {
            Source::Tee(Some(Returned {
                record: Default::default(),
                rest: Some(ClientBody::new(body, self.body_stall)),
            }))
        } else {
            Source::Stream(Some(ClientBody::new(body, self.body_stall)))
        };
        guard.budget.deposit();
        let attempts = self.attempts(&balancer, hash, &cfg, retries, &guard, parts, source);
        let deadline = self.timeouts.request.map(|d| self.started + d);
        let outcome = match deadline {
            Some(at) => match tokio::time::timeout_at(at.into(), attempts).await {
                Ok(outcome) => outcome,
                Err(_) => return local(Mechanism::Timeout),
            },
            None => attempts.await,
        };
        match outcome {
            (Ok(response), body) => Exchanged {
                response: response.map(|b| ResponseBody::upstream(b, Some(permit))),
                mechanism: None,
                body,
            },
            (Err(failed), body) => {
                let mechanism = match failed {
                    Failed::Send(SendError::Connect(_)) => Mechanism::UpstreamConnectFailure,
                    Failed::Send(SendError::Reset(_)) => Mechanism::UpstreamReset,
                    Failed::Send(SendError::Stalled) => Mechanism::RequestTimeout,
                    Failed::Timeout => Mechanism::Timeout,
                };
                if let Failed::Send(e) = &failed {
                    tracing::debug!(service = %self.conn.service_name, error = %e, "upstream request failed");
                }
                Exchanged {
                    body,
                    ..local(mechanism)
                }
            }
        }
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
    ) -> (Result<Response<Incoming>, Failed>, BodyCopy) {
        let metrics = self.conn.outbound.metrics.http();
        let any_method = self.explicit_retry || idempotent(&parts.method);
        let per_try = match (self.timeouts.backend_request, cfg.per_try_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut parts = Some(parts);
        let mut attempt = 0u32;
        loop {
            let Some(pick) = balancer.pick(hash) else {
                return (
                    Err(Failed::Send(SendError::Connect("no endpoint".into()))),
                    BodyCopy::None,
                );
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
            let result = self
                .send(pick.addr(), Request::from_parts(head, body), per_try)
                .await;
            let failure = classify(&result);
            pick.finish(call_outcome(&result, sent.elapsed()));
            if attempt > 0 {
                let label = if failure.is_some_and(|f| qualifies(cfg, self.retry, f)) {
                    "failure"
                } else {
                    "success"
                };
                metrics.retry(&self.conn.service_name, label);
            }
            let wanted = !last
                && failure.is_some_and(|f| {
                    qualifies(cfg, self.retry, f)
                        && (any_method || f == AttemptResult::ConnectFailure)
                });
            if !wanted {
                return (result, copy);
            }
            if !source.recover(copy).await {
                metrics.retry_skipped(&self.conn.service_name, "not_replayable");
                return (result, BodyCopy::None);
            }
            if !guard.budget.try_withdraw() {
                metrics.retry_skipped(&self.conn.service_name, "budget_exhausted");
                return (result, BodyCopy::None);
            }
            drop(result);
            tokio::time::sleep(backoff(attempt, cfg.backoff_base, cfg.backoff_max)).await;
            attempt += 1;
        }
    }

    async fn send(
        &self,
        addr: SocketAddr,
        request: Request<UpstreamBody>,
        per_try: Option<Duration>,
    ) -> Result<Response<Incoming>, Failed> {
        let upstreams = &self.conn.outbound.http.upstreams;
        let sending = upstreams.send(addr, self.h2, request);
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
        Err(Failed::Send(SendError::Connect(_))) => Some(AttemptResult::ConnectFailure),
        Err(Failed::Send(SendError::Reset(_) | SendError::Stalled)) => Some(AttemptResult::Reset),
        Err(Failed::Timeout) => Some(AttemptResult::Timeout),
    }
}

/// Whether the policy names this failure (its conditions, or its extra status codes).
fn qualifies(cfg: &RetryConfig, policy: &RetryPolicy, failure: AttemptResult) -> bool {
    retryable(cfg, &failure)
        || matches!(failure, AttemptResult::Status(s) if policy.codes.contains(&s))
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

/// The consistent-hash key of a request, when the service balances by one.
fn request_hash(lb: &LoadBalancer, headers: &HeaderMap, source: Option<u64>) -> Option<u64> {
    let LoadBalancer::ConsistentHash { hash } = lb else {
        return None;
    };
    match hash {
        HashKey::Header(name) => headers.get(name).map(|v| balance::hash_key(v.as_bytes())),
        HashKey::Cookie(name) => cookie(headers, name).map(balance::hash_key),
        HashKey::SourceWorkload => source,
    }
}

/// The value of cookie `name` in the request's `Cookie` fields.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let (k, v) = pair.split_at(pair.iter().position(|b| *b == b'=')?);
            (k == name.as_bytes()).then_some(&v[1..])
        })
}

fn local(mechanism: Mechanism) -> Exchanged {
    Exchanged {
        response: generated(mechanism),
        mechanism: Some(mechanism),
        body: BodyCopy::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn cookies_and_headers_hash() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; session=xyz"),
        );
        h.append(http::header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, "session"), Some(&b"xyz"[..]));
        assert_eq!(cookie(&h, "b"), Some(&b"2"[..]));
        assert_eq!(cookie(&h, "sess"), None);
        let lb = LoadBalancer::ConsistentHash {
            hash: HashKey::Cookie("session".into()),
        };
        assert_eq!(request_hash(&lb, &h, None), Some(balance::hash_key(b"xyz")));
        assert_eq!(request_hash(&LoadBalancer::RoundRobin, &h, Some(1)), None);
        let by_source = LoadBalancer::ConsistentHash {
            hash: HashKey::SourceWorkload,
        };
        assert_eq!(request_hash(&by_source, &h, Some(7)), Some(7));
    }

    #[test]
    fn grpc_statuses_are_read_from_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", HeaderValue::from_static("14"));
        assert_eq!(grpc_status(&h), Some(14));
    }
}
