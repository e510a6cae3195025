//! Authorization policy and peer authentication: the kinds users write ([`spec`]), their
//! compilation into matchers ([`compile`], once per snapshot) and the decisions the node proxy
//! asks for on its request path (through [`crate::state::MeshState::authorize`] and
//! [`crate::state::MeshState::peer_authentication`]).
//!
//! Sources (`crate::state`) decode the objects and keep the compiled [`PolicyIndex`] in the
//! snapshot; the proxy builds a [`Request`] from what it knows about a connection or a request
//! and enforces the [`Decision`]; `crate::telemetry` counts decisions. The semantics follow
//! Istio's (and ztunnel's at L4): see `docs/policy.md`.

mod compile;
mod index;
mod pattern;
mod rules;
pub mod spec;

use std::fmt;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::identity::SpiffeId;

pub use compile::{Kind, Problem, compile};
pub use index::PolicyIndex;
pub use spec::{
    Action, AuthorizationPolicySpec, Condition, Named, PeerAuthenticationSpec, Rule, RuleFrom,
    RuleTo, WorkloadSelector,
};

/// Who is asking: the peer's verified identity, `None` for plaintext (PERMISSIVE) peers.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    pub id: Option<&'a SpiffeId>,
}

/// What an HTTP request asks for. `path` is the request target's path; a query, if left on,
/// is ignored.
#[derive(Clone, Copy, Debug)]
pub struct HttpAttrs<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
}

/// A connection (`http: None`, decided at L4) or a request (decided at L7) to a workload.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub source: Source<'a>,
    /// The destination port on the workload (a service's target port).
    pub port: u16,
    pub http: Option<HttpAttrs<'a>>,
}

impl Request<'_> {
    /// L7 when the request carries HTTP attributes.
    pub fn layer(&self) -> Layer {
        match self.http {
            Some(_) => Layer::L7,
            None => Layer::L4,
        }
    }
}

/// Where a decision was taken: on a TCP connection or on an HTTP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    L4,
    L7,
}

impl Layer {
    /// The metric label value: `l4`, `l7`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Layer::L4 => "l4",
            Layer::L7 => "l7",
        }
    }
}

/// The outcome of [`crate::state::MeshState::authorize`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// `namespace/name` of the policy that decided, or empty when none did: allowed because no
    /// policy applies, or denied because ALLOW policies apply and none matched.
    pub policy: Arc<str>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.allow, self.policy.is_empty()) {
            (true, true) => f.write_str("allowed: no policy applies"),
            (true, false) => write!(f, "allowed by {}", self.policy),
            (false, true) => f.write_str("denied: no ALLOW policy matched"),
            (false, false) => write!(f, "denied by {}", self.policy),
        }
    }
}

/// Whether a workload accepts plaintext from other pods (PERMISSIVE) or only mTLS (STRICT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum PeerAuthMode {
    Strict,
    Permissive,
}

#[cfg(test)]
mod tests;
