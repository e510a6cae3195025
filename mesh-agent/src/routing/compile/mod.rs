//! From Gateway API route objects to route tables, with every check the Gateway API's schema
//! and validation rules make (and those this implementation adds), each reported with the
//! field path inside its route.
//!
//! Each route is compiled on its own first (`http`, `grpc`: matches, filters, backends,
//! timeouts, retries; `refs` resolves parent and backend references against the services;
//! `checks` holds the value checks). Then its rules are attached to every service port its
//! parentRefs name, and each port's rules are sorted into a [`RouteTable`].

mod checks;
mod filter_spec;
mod filters;
mod grpc;
mod http;
mod refs;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::matching::RequestMatch;
use super::model::{Backend, RouteName, RouteObject, RouteRule, Timeouts};
use super::table::{RouteOrder, TableBuilder};
use super::{Filter, RouteIndex, RouteTable};
use crate::state::{Backoff, RetryOn, RetryPolicy, Service};

/// One problem in one route: `path` is the field inside the route object
/// (`spec.rules[0].matches[1].path.value`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Index of the route in the list given to [`compile`].
    pub route: usize,
    pub path: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Compiles `routes` against `services` (with their traffic policies, which rule retries
/// start from). Either every route is valid and attached, or every problem is returned.
pub fn compile(
    routes: &[RouteObject],
    services: &BTreeMap<(String, String), Arc<Service>>,
) -> Result<RouteIndex, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut compiled = Vec::new();
    let mut seen: HashMap<RouteName, usize> = HashMap::new();
    for (i, route) in routes.iter().enumerate() {
        let mut ctx = Ctx {
            services,
            namespace: String::new(),
            route: i,
            problems: &mut problems,
        };
        let Some(c) = compile_route(&mut ctx, route) else {
            continue;
        };
        if let Some(first) = seen.get(&c.name) {
            ctx.problem(
                "metadata.name",
                format!("{} is declared twice (first as routes[{first}])", c.name),
            );
            continue;
        }
        seen.insert(c.name.clone(), i);
        compiled.push(c);
    }
    let index = attach(compiled, services, &mut problems);
    if problems.is_empty() {
        Ok(index)
    } else {
        problems.sort_by_key(|p| p.route);
        Err(problems)
    }
}

/// What compiling one route needs: the services, and where its problems go.
pub(super) struct Ctx<'a> {
    pub services: &'a BTreeMap<(String, String), Arc<Service>>,
    /// The route's namespace: references without a namespace mean this one.
    pub namespace: String,
    route: usize,
    problems: &'a mut Vec<Problem>,
}

impl Ctx<'_> {
    pub fn problem(&mut self, at: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            route: self.route,
            path: at.into(),
            reason: reason.into(),
        });
    }

    /// Problems reported so far: a caller compares counts to know whether a part was valid.
    pub fn count(&self) -> usize {
        self.problems.len()
    }
}

/// A route checked and translated, not yet attached.
struct Compiled {
    route: usize,
    name: RouteName,
    order: RouteOrder,
    parents: Vec<refs::Parent>,
    rules: Vec<RuleDraft>,
}

/// A rule before it is attached to a parent (whose retry policy it may start from).
pub(super) struct RuleDraft {
    pub name: Option<String>,
    pub index: usize,
    pub matches: Vec<RequestMatch>,
    pub filters: Vec<Filter>,
    pub backends: Vec<Backend>,
    pub timeouts: Timeouts,
    pub retry: Option<RouteRetry>,
}

/// An HTTPRoute rule's `retry`: what it sets; the rest comes from the service's policy.
pub(super) struct RouteRetry {
    pub attempts: Option<u32>,
    pub codes: Vec<u16>,
    pub backoff: Option<Duration>,
}

fn compile_route(ctx: &mut Ctx<'_>, route: &RouteObject) -> Option<Compiled> {
    let before = ctx.count();
    let kind = route.kind();
    let meta = route.metadata();
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    if name.is_empty() {
        ctx.problem("metadata.name", "a route needs a name");
    } else if let Err(reason) = crate::state::names::dns_subdomain(&name) {
        ctx.problem("metadata.name", format!("`{name}` {reason}"));
    }
    if namespace.is_empty() {
        ctx.problem("metadata.namespace", "a route needs a namespace");
    }
    if ctx.count() > before {
        // References are resolved in the route's namespace: without one they would only
        // repeat this problem.
        return None;
    }
    ctx.namespace = namespace.clone();
    let (parents, rules) = match route {
        RouteObject::Http(r) => {
            let refs = r.spec.parent_refs.iter().flatten().map(refs::http_parent);
            (refs::parents(ctx, refs), http::rules(ctx, r))
        }
        RouteObject::Grpc(r) => {
            let refs = r.spec.parent_refs.iter().flatten().map(refs::grpc_parent);
            (refs::parents(ctx, refs), grpc::rules(ctx, r))
        }
    };
    if ctx.count() > before {
        return None;
    }
    Some(Compiled {
        route: ctx.route,
        order: RouteOrder {
            created: meta.creation_timestamp.clone(),
            key: format!("{namespace}/{name}"),
        },
        name: RouteName {
            kind,
            namespace,
            name,
        },
        parents,
        rules,
    })
}

/// Attaches the compiled routes to their service ports and builds the tables.
///
/// A service port takes HTTPRoutes or GRPCRoutes, not both: as for a Gateway listener, the
/// oldest route (then the first by `{namespace}/{name}`) decides, and routes of the other kind
/// are refused.
fn attach(
    mut compiled: Vec<Compiled>,
    services: &BTreeMap<(String, String), Arc<Service>>,
    problems: &mut Vec<Problem>,
) -> RouteIndex {
    compiled.sort_by(|a, b| {
        let age = |c: &Compiled| (c.order.created.is_none(), c.order.created.clone());
        age(a)
            .cmp(&age(b))
            .then_with(|| a.order.key.cmp(&b.order.key))
    });
    let mut ports: BTreeMap<((String, String), u16), (RouteName, TableBuilder)> = BTreeMap::new();
    for route in &compiled {
        for parent in &route.parents {
            let policy = services
                .get(&parent.service)
                .map(|s| s.traffic_policy.retry.clone())
                .unwrap_or_default();
            for &port in &parent.ports {
                let key = (parent.service.clone(), port);
                let (first, builder) = ports.entry(key).or_insert_with(|| {
                    (route.name.clone(), TableBuilder::new(route.name.kind, port))
                });
                if first.kind != route.name.kind {
                    problems.push(Problem {
                        route: route.route,
                        path: parent.at.clone(),
                        reason: format!(
                            "port {port} of service {}/{} already has {first} attached; a \
                             service port takes HTTPRoutes or GRPCRoutes, not both",
                            parent.service.0, parent.service.1
                        ),
                    });
                    continue;
                }
                for draft in &route.rules {
                    let rule = RouteRule {
                        route: route.name.clone(),
                        name: draft.name.clone(),
                        index: draft.index,
                        backends: draft.backends.clone(),
                        filters: draft.filters.clone(),
                        timeouts: draft.timeouts,
                        retry: draft.retry.as_ref().map(|r| rule_retry(&policy, r)),
                    };
                    builder.add(rule, draft.matches.clone(), &route.order);
                }
            }
        }
    }
    let mut index = RouteIndex::default();
    for ((service, _), (_, builder)) in ports {
        let table: Arc<RouteTable> = Arc::new(builder.build());
        index.tables.entry(service).or_default().push(table);
    }
    index
}

/// A rule's `retry` replaces the service's retry policy: it retries connection failures and
/// resets (the Gateway API's connection errors) and the listed status codes; what the
/// Gateway API cannot express (gRPC statuses, per-try timeout, body replay limit, backoff cap)
/// stays the service's.
fn rule_retry(service: &RetryPolicy, route: &RouteRetry) -> RetryPolicy {
    let backoff = match route.backoff {
        Some(base) => Backoff {
            base,
            max: service.backoff.max.max(base),
        },
        None => service.backoff,
    };
    RetryPolicy {
        attempts: route.attempts.unwrap_or(service.attempts),
        on: vec![RetryOn::ConnectFailure, RetryOn::Reset],
        codes: route.codes.clone(),
        grpc_statuses: service.grpc_statuses.clone(),
        per_try_timeout: service.per_try_timeout,
        backoff,
        max_replay_bytes: service.max_replay_bytes,
    }
}

#[cfg(test)]
mod tests;

/// Compiles the rules of one route (HTTP or gRPC alike): at most 16, names unique within the
/// route, each through `draft`.
fn each_rule<R>(
    ctx: &mut Ctx<'_>,
    rules: &[R],
    name: impl Fn(&R) -> Option<&str>,
    mut draft: impl FnMut(&mut Ctx<'_>, &str, usize, &R) -> Option<RuleDraft>,
) -> Vec<RuleDraft> {
    checks::limit(ctx, "spec.rules", rules.len(), 16);
    let mut names = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        if let Some(name) = name(rule)
            && !names.insert(name)
        {
            let reason = format!("rule name `{name}` is used twice in this route");
            ctx.problem(format!("{at}.name"), reason);
        }
        if let Some(d) = draft(ctx, &at, i, rule) {
            out.push(d);
        }
    }
    out
}
