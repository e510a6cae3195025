//! One snapshot from the parts a source has translated: routes and policies compiled, objects
//! with problems left out, indexes built.
//!
//! Both sources end here: the state file (through [`super::validate`], which refuses the whole
//! file when anything is rejected) and Kubernetes (`crate::kubernetes`, which skips what is
//! rejected and keeps the rest). So a route or a policy means the same whatever wrote it.
//! Compiling is [`crate::routing::compile`] and [`crate::policy::compile`]; this module only
//! decides what stays in when some objects are bad.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::model::{MeshState, Namespace, Node, Service, Workload, WorkloadKey};
use crate::policy::{self, AuthorizationPolicySpec, Kind, Named, PeerAuthenticationSpec};
use crate::routing::{self, RouteIndex, RouteObject};

/// What a source translated: the model's maps (service endpoints resolved) and the route and
/// policy objects, still to be compiled.
#[derive(Debug, Default)]
pub struct Parts {
    pub namespaces: BTreeMap<String, Namespace>,
    pub nodes: BTreeMap<String, Node>,
    pub workloads: BTreeMap<WorkloadKey, Arc<Workload>>,
    pub services: BTreeMap<(String, String), Arc<Service>>,
    pub routes: Vec<RouteObject>,
    pub authorization_policies: Vec<Named<AuthorizationPolicySpec>>,
    pub peer_authentications: Vec<Named<PeerAuthenticationSpec>>,
}

/// The objects [`assemble`] left out, each problem naming its object by its index in the
/// [`Parts`] lists.
#[derive(Debug, Default)]
pub struct Rejected {
    /// Sorted by route.
    pub routes: Vec<routing::Problem>,
    /// In list order, authorization policies first.
    pub policies: Vec<policy::Problem>,
}

impl Rejected {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.policies.is_empty()
    }
}

/// Compiles the routes and policies of `parts` and builds the snapshot's indexes. Objects with
/// problems are not in the snapshot, neither compiled nor in its lists; every problem is
/// returned.
pub fn assemble(parts: Parts) -> (MeshState, Rejected) {
    let Parts {
        namespaces,
        nodes,
        workloads,
        services,
        routes,
        authorization_policies,
        peer_authentications,
    } = parts;
    let mut state = MeshState {
        namespaces,
        nodes,
        workloads,
        services,
        ..MeshState::default()
    };
    let (tables, routes, route_problems) = compile_routes(routes, &state.services);
    state.route_tables = tables;
    state.routes = routes;
    let (index, policy_problems) = policy::compile(&authorization_policies, &peer_authentications);
    state.policies = index;
    state.authorization_policies = without(
        authorization_policies,
        &policy_problems,
        Kind::AuthorizationPolicy,
    );
    state.peer_authentications = without(
        peer_authentications,
        &policy_problems,
        Kind::PeerAuthentication,
    );
    state.index();
    let rejected = Rejected {
        routes: route_problems,
        policies: policy_problems,
    };
    (state, rejected)
}

/// [`routing::compile`] takes all routes or none: compile, drop the routes it found problems
/// in, and compile the rest again. Dropping a route cannot make another one invalid (a
/// conflict is always blamed on the later route), so this ends after two passes in practice,
/// and after at most one pass per route.
fn compile_routes(
    mut routes: Vec<RouteObject>,
    services: &BTreeMap<(String, String), Arc<Service>>,
) -> (RouteIndex, Vec<RouteObject>, Vec<routing::Problem>) {
    // `original[i]`: where `routes[i]` was in the list the source gave.
    let mut original: Vec<usize> = (0..routes.len()).collect();
    let mut problems = Vec::new();
    loop {
        let found = match routing::compile(&routes, services) {
            Ok(index) => {
                problems.sort_by_key(|p: &routing::Problem| p.route);
                return (index, routes, problems);
            }
            Err(found) => found,
        };
        let bad: HashSet<usize> = found.iter().map(|p| p.route).collect();
        problems.extend(found.into_iter().map(|p| routing::Problem {
            route: original[p.route],
            ..p
        }));
        if bad.is_empty() {
            // Problems always name a route; if one did not, nothing could be kept safely.
            return (RouteIndex::default(), Vec::new(), problems);
        }
        (routes, original) = routes
            .into_iter()
            .zip(original)
            .enumerate()
            .filter(|(i, _)| !bad.contains(i))
            .map(|(_, kept)| kept)
            .unzip();
    }
}

/// The objects of `kind` no problem names.
fn without<S>(objects: Vec<Named<S>>, problems: &[policy::Problem], kind: Kind) -> Vec<Named<S>> {
    let bad: HashSet<usize> = problems
        .iter()
        .filter(|p| p.kind == kind)
        .map(|p| p.index)
        .collect();
    objects
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !bad.contains(i))
        .map(|(_, object)| object)
        .collect()
}
