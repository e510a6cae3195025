//! `/routes`: the route table of every routed service port, and the rules one port has (which
//! `explain` shows too). Rules come from the compiled tables; each rule's `matches` is taken
//! from the route object as the source wrote it, so it reads like the YAML.

use super::views::{BackendView, RouteTableView, RuleView};
use crate::routing::{RouteRule, RouteTable};
use crate::state::{MeshState, format_duration};

/// Every service port with routes attached, in service order.
pub fn tables(state: &MeshState) -> Vec<RouteTableView> {
    let mut out = Vec::new();
    for svc in state.services.values() {
        let key = (svc.namespace.clone(), svc.name.clone());
        for port in &svc.ports {
            if let Some(table) = state.routes_for(&key, port.port) {
                out.push(RouteTableView {
                    service: svc.display_name(),
                    port: port.port,
                    kind: table.kind().to_string(),
                    rules: rules(state, table),
                });
            }
        }
    }
    out
}

/// The rules of the table of a service port; empty when no route is attached.
pub fn rules_for(state: &MeshState, service: &(String, String), port: u16) -> Vec<RuleView> {
    state
        .routes_for(service, port)
        .map(|table| rules(state, table))
        .unwrap_or_default()
}

fn rules(state: &MeshState, table: &RouteTable) -> Vec<RuleView> {
    table
        .rules()
        .iter()
        .map(|rule| RuleView {
            route: rule.route.to_string(),
            index: rule.index,
            name: rule.name.clone(),
            matches: matches_of(state, rule),
            backends: rule
                .backends
                .iter()
                .map(|b| BackendView {
                    service: format!("{}/{}", b.service.0, b.service.1),
                    port: b.port,
                    weight: b.weight,
                })
                .collect(),
            request_timeout: rule.timeouts.request.map(format_duration),
            backend_request_timeout: rule.timeouts.backend_request.map(format_duration),
        })
        .collect()
}

/// `spec.rules[index].matches` of the rule's route object; `null` when it has none.
fn matches_of(state: &MeshState, rule: &RouteRule) -> serde_json::Value {
    let route = state.routes.iter().find(|r| {
        let meta = r.metadata();
        r.kind() == rule.route.kind
            && meta.namespace.as_deref() == Some(rule.route.namespace.as_str())
            && meta.name.as_deref() == Some(rule.route.name.as_str())
    });
    route
        .and_then(|r| serde_json::to_value(r).ok())
        .and_then(|v| {
            v.pointer(&format!("/spec/rules/{}/matches", rule.index))
                .cloned()
        })
        .unwrap_or(serde_json::Value::Null)
}
