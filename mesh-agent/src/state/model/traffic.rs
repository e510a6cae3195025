//! Per-service traffic policy: how a client's proxy spreads, limits and retries the requests it
//! sends to a service.
//!
//! Plain data read by the load balancers and the resilience layer. Every default lives here, in
//! the `Default` impls and the constants below, so that the state file, the documentation and a
//! future Kubernetes source agree on what an omitted field means.

use std::time::Duration;

use http::HeaderName;
use serde::{Serialize, Serializer};

/// Circuit-breaker limits when `circuitBreaker` (or one of its fields) is omitted.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
pub const DEFAULT_MAX_PENDING_REQUESTS: u32 = 1024;
pub const DEFAULT_MAX_REQUESTS: u32 = 1024;
/// Outlier detection, when enabled, fills omitted fields with these.
pub const DEFAULT_CONSECUTIVE_5XX: u32 = 5;
pub const DEFAULT_CONSECUTIVE_GATEWAY_ERRORS: u32 = 5;
pub const DEFAULT_BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_EJECTION_PERCENT: u8 = 50;
/// Retries: two more tries, only when no connection could be made (always safe to repeat).
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 2;
pub const DEFAULT_RETRY_ON: &[RetryOn] = &[RetryOn::ConnectFailure];
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_millis(250);
/// A request body larger than this is streamed, not buffered, and so cannot be retried.
pub const DEFAULT_MAX_REPLAY_BYTES: u32 = 64 * 1024;
/// Retries may add at most 20% to the request rate, plus 10 per second so that a quiet client
/// can still retry.
pub const DEFAULT_RETRY_BUDGET_RATIO: f64 = 0.2;
pub const DEFAULT_MIN_RETRIES_PER_SECOND: u32 = 10;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    pub load_balancer: LoadBalancer,
    pub circuit_breaker: CircuitBreakerLimits,
    /// `None`: endpoints are never ejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    pub retry: RetryPolicy,
    pub retry_budget: RetryBudget,
}

/// Serialized as the file writes it: `{policy: ConsistentHash, hash: {header: x-user}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "policy")]
pub enum LoadBalancer {
    /// Power of two choices over a peak-EWMA latency estimate.
    #[default]
    #[serde(rename = "P2CEWMA")]
    P2cEwma,
    RoundRobin,
    LeastRequest,
    ConsistentHash {
        hash: HashKey,
    },
}

/// What a consistent-hash balancer hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// The value of this request header (lowercase name).
    Header(HeaderName),
    /// The value of this cookie.
    Cookie(String),
    /// The identity of the calling workload, so each client sticks to one endpoint.
    SourceWorkload,
}

impl Serialize for HashKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            HashKey::Header(name) => map.serialize_entry("header", name.as_str())?,
            HashKey::Cookie(name) => map.serialize_entry("cookie", name)?,
            HashKey::SourceWorkload => map.serialize_entry("sourceWorkload", &true)?,
        }
        map.end()
    }
}

/// Limits per client proxy and destination service; over them, requests fail fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerLimits {
    pub max_connections: u32,
    /// Requests waiting for a connection or a stream.
    pub max_pending_requests: u32,
    /// Requests in flight.
    pub max_requests: u32,
}

impl Default for CircuitBreakerLimits {
    fn default() -> Self {
        CircuitBreakerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
            max_requests: DEFAULT_MAX_REQUESTS,
        }
    }
}

/// Ejects an endpoint after consecutive failures; the n-th ejection of the same endpoint lasts
/// `base_ejection_time * 2^(n-1)`, capped at `max_ejection_time` (the exponential growth).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Consecutive 5xx responses (and connection failures) that eject; 0 turns this off.
    #[serde(rename = "consecutive5xx")]
    pub consecutive_5xx: u32,
    /// Consecutive 502/503/504 responses (and connection failures) that eject; 0 turns this off.
    pub consecutive_gateway_errors: u32,
    #[serde(serialize_with = "duration")]
    pub base_ejection_time: Duration,
    #[serde(serialize_with = "duration")]
    pub max_ejection_time: Duration,
    /// At most this share of a service's endpoints is ejected at once.
    pub max_ejection_percent: u8,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: DEFAULT_CONSECUTIVE_5XX,
            consecutive_gateway_errors: DEFAULT_CONSECUTIVE_GATEWAY_ERRORS,
            base_ejection_time: DEFAULT_BASE_EJECTION_TIME,
            max_ejection_time: DEFAULT_MAX_EJECTION_TIME,
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
        }
    }
}

/// A failure that makes a request worth another try.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum RetryOn {
    /// No connection to the endpoint could be made: the request never left.
    #[serde(rename = "connect-failure")]
    ConnectFailure,
    /// Any 5xx response.
    #[serde(rename = "5xx")]
    Status5xx,
    /// 502, 503 or 504.
    #[serde(rename = "gateway-error")]
    GatewayError,
    /// The connection or stream was reset before a response began.
    #[serde(rename = "reset")]
    Reset,
}

impl RetryOn {
    pub const ALL: [RetryOn; 4] = [
        RetryOn::ConnectFailure,
        RetryOn::Status5xx,
        RetryOn::GatewayError,
        RetryOn::Reset,
    ];

    /// The spelling of the state file.
    pub const fn as_str(self) -> &'static str {
        match self {
            RetryOn::ConnectFailure => "connect-failure",
            RetryOn::Status5xx => "5xx",
            RetryOn::GatewayError => "gateway-error",
            RetryOn::Reset => "reset",
        }
    }
}

/// A gRPC status code (<https://grpc.github.io/grpc/core/md_doc_statuscodes.html>).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrpcCode(pub u8);

impl GrpcCode {
    /// Names as the gRPC specification spells them, indexed by code.
    pub const NAMES: [&'static str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    pub const UNAVAILABLE: GrpcCode = GrpcCode(14);

    pub fn from_name(name: &str) -> Option<GrpcCode> {
        let code = Self::NAMES.iter().position(|n| *n == name)?;
        u8::try_from(code).ok().map(GrpcCode)
    }

    pub fn name(self) -> &'static str {
        Self::NAMES.get(usize::from(self.0)).copied().unwrap_or("?")
    }
}

impl Serialize for GrpcCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// When and how a request is tried again. `attempts` counts the tries after the first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    pub attempts: u32,
    /// Sorted, without duplicates.
    pub on: Vec<RetryOn>,
    /// Response statuses retried besides those `on` names (an HTTPRoute rule's `retry.codes`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<u16>,
    /// `grpc-status` values retried (from the trailers, or the headers of a trailers-only reply).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grpc_statuses: Vec<GrpcCode>,
    /// Deadline of each try; `None`: only the route's timeouts bound a try.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_duration"
    )]
    pub per_try_timeout: Option<Duration>,
    pub backoff: Backoff,
    /// Bodies up to this size are kept so that they can be sent again.
    pub max_replay_bytes: u32,
}

impl RetryPolicy {
    pub fn retries_on(&self, failure: RetryOn) -> bool {
        self.on.contains(&failure)
    }

    /// Whether a response with this status is worth another try.
    pub fn retries_status(&self, status: u16) -> bool {
        (self.retries_on(RetryOn::Status5xx) && (500..=599).contains(&status))
            || (self.retries_on(RetryOn::GatewayError) && matches!(status, 502..=504))
            || self.codes.contains(&status)
    }

    pub fn retries_grpc(&self, code: GrpcCode) -> bool {
        self.grpc_statuses.contains(&code)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: DEFAULT_RETRY_ATTEMPTS,
            on: DEFAULT_RETRY_ON.to_vec(),
            codes: Vec::new(),
            grpc_statuses: Vec::new(),
            per_try_timeout: None,
            backoff: Backoff::default(),
            max_replay_bytes: DEFAULT_MAX_REPLAY_BYTES,
        }
    }
}

/// Exponential backoff with jitter between `base` and `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Backoff {
    #[serde(serialize_with = "duration")]
    pub base: Duration,
    #[serde(serialize_with = "duration")]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: DEFAULT_BACKOFF_BASE,
            max: DEFAULT_BACKOFF_MAX,
        }
    }
}

/// Retries allowed per client proxy and service: `ratio` of the recent requests plus
/// `min_retries_per_second`, so that retries cannot multiply an overload.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    pub ratio: f64,
    pub min_retries_per_second: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            ratio: DEFAULT_RETRY_BUDGET_RATIO,
            min_retries_per_second: DEFAULT_MIN_RETRIES_PER_SECOND,
        }
    }
}

/// Durations print as the file writes them (`30s`, `1m30s`, `250ms`).
pub(crate) fn format_duration(d: Duration) -> String {
    match gateway_api::Duration::try_from(d) {
        Ok(d) => d.to_string(),
        Err(_) => format!("{}ms", d.as_millis()),
    }
}

fn duration<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_duration(*d))
}

fn opt_duration<S: Serializer>(d: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_conditions_cover_their_statuses() {
        let mut policy = RetryPolicy {
            on: vec![RetryOn::GatewayError],
            codes: vec![429],
            ..RetryPolicy::default()
        };
        assert!(policy.retries_status(503));
        assert!(policy.retries_status(429));
        assert!(!policy.retries_status(500));
        assert!(!policy.retries_on(RetryOn::ConnectFailure));
        policy.on = vec![RetryOn::Status5xx];
        assert!(policy.retries_status(500) && policy.retries_status(599));
        assert!(!policy.retries_status(404));
    }

    #[test]
    fn grpc_codes_by_name() {
        assert_eq!(
            GrpcCode::from_name("UNAVAILABLE"),
            Some(GrpcCode::UNAVAILABLE)
        );
        assert_eq!(GrpcCode(4).name(), "DEADLINE_EXCEEDED");
        assert_eq!(GrpcCode::from_name("unavailable"), None);
    }

    #[test]
    fn defaults_serialize_like_the_file() {
        let json = serde_json::to_value(TrafficPolicy::default()).expect("serializes");
        assert_eq!(json["loadBalancer"]["policy"], "P2CEWMA");
        assert_eq!(json["circuitBreaker"]["maxRequests"], 1024);
        assert!(json.get("outlierDetection").is_none());
        assert_eq!(json["retry"]["attempts"], 2);
        assert_eq!(json["retry"]["on"][0], "connect-failure");
        assert_eq!(json["retry"]["backoff"]["base"], "25ms");
        assert_eq!(json["retryBudget"]["ratio"], 0.2);
        let hashed = LoadBalancer::ConsistentHash {
            hash: HashKey::SourceWorkload,
        };
        let json = serde_json::to_value(hashed).expect("serializes");
        assert_eq!(json["hash"]["sourceWorkload"], true);
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }
}
