//! L7 routing in the Gateway API's mesh model (GAMMA): HTTPRoutes and GRPCRoutes whose
//! `parentRefs` name a Service decide where requests to that service go.
//!
//! A state source hands the route objects to [`compile`], which checks them against the
//! snapshot's services and builds one [`RouteTable`] per attached service port; the snapshot
//! keeps both. The proxy then asks [`MeshState::routes_for`] for the table of the service port a
//! request addressed (none: no route, the service itself serves it), [`RouteTable::select`]s a
//! rule (none: 404), runs the rule's [`filters`], picks a backend by weight and resolves it with
//! [`MeshState::service_port`]. Everything costly (regular expressions, header names, the
//! precedence order) is done once per snapshot, so selecting allocates nothing.
//!
//! `model` holds the compiled values, `matching` the request conditions, `table` the precedence
//! order and selection, `filters` the request and response edits, `compile` the translation
//! from Gateway API objects with all their checks.

mod compile;
mod filters;
mod matching;
mod model;
mod table;

use std::collections::HashMap;
use std::sync::Arc;

pub use compile::{Problem, compile};
pub use filters::{
    Filter, FilterOutcome, HeaderModifier, Mirror, PathModifier, Redirect, Scheme, UrlRewrite,
    apply_request_filters, apply_response_filters, mirrors,
};
pub use matching::{BytesMatch, HeaderMatch, PathMatch, QueryMatch, RequestMatch, TextMatch};
pub use model::{Backend, RouteKind, RouteName, RouteObject, RouteRule, Timeouts};
pub use table::{RouteTable, Selected};

use crate::state::MeshState;

/// The route tables of a snapshot, by service and port.
#[derive(Clone, Debug, Default)]
pub struct RouteIndex {
    tables: HashMap<(String, String), Vec<Arc<RouteTable>>>,
}

impl RouteIndex {
    /// The table of a service port; `None` when no route is attached to it.
    pub fn get(&self, service: &(String, String), port: u16) -> Option<&Arc<RouteTable>> {
        self.tables
            .get(service)?
            .iter()
            .find(|table| table.port() == port)
    }

    /// Number of service ports with routes.
    pub fn len(&self) -> usize {
        self.tables.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

impl MeshState {
    /// The routes attached to a service port (the service by `(namespace, name)`, the port by
    /// number). `None`: no route is attached, so requests go to the service itself.
    pub fn routes_for(&self, service: &(String, String), port: u16) -> Option<&Arc<RouteTable>> {
        self.route_tables.get(service, port)
    }

    /// The route tables of this snapshot.
    pub fn route_index(&self) -> &RouteIndex {
        &self.route_tables
    }
}
