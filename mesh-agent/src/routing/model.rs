//! What a route compiles to: named rules with their backends, filters, timeouts and retries.
//!
//! These are the values the proxy acts on once [`super::RouteTable::select`] has chosen a rule.
//! The route objects themselves ([`RouteObject`]) stay in the snapshot as the source wrote them.

use std::fmt;
use std::time::Duration;

use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::grpcroutes::GrpcRoute;
use serde::Serialize;

use super::filters::Filter;
use crate::state::RetryPolicy;

/// A Gateway API route object, as the state source read it.
///
/// HTTPRoutes use the experimental-channel type: it is the standard type plus fields such as
/// the rule `retry`, so every standard HTTPRoute reads the same way.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RouteObject {
    Http(Box<HttpRoute>),
    Grpc(Box<GrpcRoute>),
}

impl RouteObject {
    pub fn kind(&self) -> RouteKind {
        match self {
            RouteObject::Http(_) => RouteKind::Http,
            RouteObject::Grpc(_) => RouteKind::Grpc,
        }
    }

    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            RouteObject::Http(r) => &r.metadata,
            RouteObject::Grpc(r) => &r.metadata,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    Http,
    Grpc,
}

impl RouteKind {
    /// The Kubernetes kind: `HTTPRoute`, `GRPCRoute`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
        }
    }
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which route a rule came from; displays as `HTTPRoute shop/api`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteName {
    pub kind: RouteKind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One rule of a route, as attached to one service port.
#[derive(Clone, Debug)]
pub struct RouteRule {
    pub route: RouteName,
    /// The rule's `name`, when it has one.
    pub name: Option<String>,
    /// Position of the rule in its route (`spec.rules[index]`).
    pub index: usize,
    /// Where matching requests go, by weight. Empty (or all weights 0): the request is
    /// answered 500, unless a filter (a redirect) answers it first.
    pub backends: Vec<Backend>,
    /// Applied in order to every matching request (and its response).
    pub filters: Vec<Filter>,
    pub timeouts: Timeouts,
    /// The rule's own retry policy, which replaces the service's; `None`: the service's.
    pub retry: Option<RetryPolicy>,
}

impl RouteRule {
    /// Chooses a backend in proportion to the weights, from a uniformly random `random`.
    /// `None` when there is no backend with a weight above 0.
    pub fn pick_backend(&self, random: u32) -> Option<&Backend> {
        let total: u64 = self.backends.iter().map(|b| u64::from(b.weight)).sum();
        if total == 0 {
            return None;
        }
        // Scales `random` onto [0, total) without the bias of a modulo; the product fits in
        // 64 bits because weights are at most 1,000,000 and backends at most 16.
        let mut point = (u64::from(random) * total) >> 32;
        for backend in &self.backends {
            let weight = u64::from(backend.weight);
            if point < weight {
                return Some(backend);
            }
            point -= weight;
        }
        None
    }
}

/// A backend reference: a service port, resolved with [`crate::state::MeshState::service_port`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// `(namespace, name)`.
    pub service: (String, String),
    pub port: u16,
    pub weight: u32,
    /// Applied only when this backend is the one chosen, after the rule's filters.
    pub filters: Vec<Filter>,
}

/// A rule's deadlines; `None` means no deadline (the Gateway API's `0s` also means none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From the request's start to the end of the response, retries included.
    pub request: Option<Duration>,
    /// Of each request to a backend (each try).
    pub backend_request: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(weights: &[u32]) -> RouteRule {
        RouteRule {
            route: RouteName {
                kind: RouteKind::Http,
                namespace: "shop".into(),
                name: "api".into(),
            },
            name: None,
            index: 0,
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, w)| Backend {
                    service: ("shop".into(), format!("v{i}")),
                    port: 80,
                    weight: *w,
                    filters: Vec::new(),
                })
                .collect(),
            filters: Vec::new(),
            timeouts: Timeouts::default(),
            retry: None,
        }
    }

    #[test]
    fn weighted_picks_follow_the_weights() {
        let rule = rule(&[90, 10]);
        let mut rng = fastrand::Rng::with_seed(7);
        let picks = 10_000;
        let v0 = (0..picks)
            .filter_map(|_| rule.pick_backend(rng.u32(..)))
            .filter(|b| b.service.1 == "v0")
            .count();
        let share = v0 as f64 / f64::from(picks);
        assert!((share - 0.9).abs() <= 0.02, "v0 got {share}");
    }

    #[test]
    fn zero_weights_and_edges() {
        assert!(rule(&[]).pick_backend(1).is_none());
        assert!(rule(&[0, 0]).pick_backend(1).is_none());
        let only_second = rule(&[0, 3]);
        for random in [0, 1, u32::MAX / 2, u32::MAX] {
            let picked = only_second
                .pick_backend(random)
                .map(|b| b.service.1.as_str());
            assert_eq!(picked, Some("v1"));
        }
        let halves = rule(&[1, 1]);
        assert_eq!(halves.pick_backend(0).map(|b| b.weight), Some(1));
        assert_eq!(
            halves.pick_backend(u32::MAX).map(|b| b.service.1.as_str()),
            Some("v1")
        );
    }

    #[test]
    fn names_display_kind_and_key() {
        let name = RouteName {
            kind: RouteKind::Grpc,
            namespace: "shop".into(),
            name: "cart".into(),
        };
        assert_eq!(name.to_string(), "GRPCRoute shop/cart");
    }
}
