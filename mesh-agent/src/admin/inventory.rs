//! The listings: `/status`, `/workloads`, `/services`, `/certs`, `/policies` and
//! `/config_dump`, each from one snapshot.

use std::time::{Duration, UNIX_EPOCH};

use super::lookup::{capture, cert_view, declared_name, identity};
use super::views::{
    AuthzPolicyView, CertView, CertsView, Counts, DatapathView, EndpointRef, PeerAuthView,
    PoliciesView, PortView, ProgramView, RootView, ServiceView, StatusView, WorkloadView,
};
use super::{AdminContext, authz};
use crate::identity::{fingerprint, parse_cert, rfc3339};
use crate::policy::WorkloadSelector;
use crate::state::{MeshState, Service, Workload};

pub fn status(ctx: &AdminContext) -> StatusView {
    let state = ctx.snapshot();
    let node = &ctx.config.node;
    let here = || state.workloads.values().filter(|w| w.node == *node);
    let counts = Counts {
        namespaces: state.namespaces.len(),
        nodes: state.nodes.len(),
        workloads: state.workloads.len(),
        workloads_here: here().count(),
        enrolled_here: here().filter(|w| w.enrolled).count(),
        services: state.services.len(),
        routes: state.routes.len(),
        authorization_policies: state.authorization_policies.len(),
        peer_authentications: state.peer_authentications.len(),
        certificates: ctx.identities.as_ref().map_or(0, |ids| ids.ids().len()),
    };
    StatusView {
        node: node.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: ctx.started.elapsed().as_secs(),
        ready: ctx.ready.get(),
        mtls: ctx.identities.is_some(),
        trust_domain: ctx.config.trust_domain.clone(),
        counts,
        datapath: datapath(ctx),
    }
}

/// Counters and map sizes; a failure to read them is reported, not fatal to `/status`.
fn datapath(ctx: &AdminContext) -> DatapathView {
    let read = || -> anyhow::Result<DatapathView> {
        Ok(DatapathView {
            counters: ctx
                .datapath
                .counters()?
                .into_iter()
                .map(|(c, v)| (c.name().to_owned(), v))
                .collect(),
            maps: ctx
                .datapath
                .map_entries()?
                .into_iter()
                .map(|(m, n)| (m.to_owned(), n))
                .collect(),
            programs: ctx
                .datapath
                .program_runs()?
                .into_iter()
                .map(|p| {
                    let view = ProgramView {
                        id: p.id,
                        run_count: p.run_count,
                        run_time_ns: u64::try_from(p.run_time.as_nanos()).unwrap_or(u64::MAX),
                    };
                    (p.program.to_owned(), view)
                })
                .collect(),
            error: None,
        })
    };
    read().unwrap_or_else(|e| DatapathView {
        error: Some(format!("{e:#}")),
        ..DatapathView::default()
    })
}

pub fn workloads(ctx: &AdminContext) -> Vec<WorkloadView> {
    let state = ctx.snapshot();
    state
        .workloads
        .values()
        .map(|w| WorkloadView {
            name: w.key.to_string(),
            node: w.node.clone(),
            ips: w.ips.clone(),
            service_account: w.service_account.clone(),
            enrolled: w.enrolled,
            identity: identity(ctx, w).map(|id| id.to_string()),
            peer_authentication: state.peer_authentication(w),
            capture: capture(ctx, w),
            labels: w.labels.clone(),
        })
        .collect()
}

pub fn services(ctx: &AdminContext) -> Vec<ServiceView> {
    let state = ctx.snapshot();
    state
        .services
        .values()
        .map(|svc| service_view(&state, svc))
        .collect()
}

fn service_view(state: &MeshState, svc: &Service) -> ServiceView {
    let key = (svc.namespace.clone(), svc.name.clone());
    let ports = svc
        .ports
        .iter()
        .map(|p| PortView {
            name: p.name.clone(),
            port: p.port,
            target_port: p.target_port,
            protocol: p.protocol.to_string(),
            app_protocol: p.app_protocol.clone(),
            declared: declared_name(p).to_owned(),
            route_rules: state
                .routes_for(&key, p.port)
                .map_or(0, |t| t.rules().len()),
        })
        .collect();
    let endpoints = svc
        .endpoints
        .iter()
        .filter_map(|k| state.workloads.get(k))
        .map(|w| endpoint_ref(w))
        .collect();
    let load_balancer = serde_json::to_value(&svc.traffic_policy.load_balancer)
        .ok()
        .and_then(|v| v["policy"].as_str().map(str::to_owned))
        .unwrap_or_default();
    ServiceView {
        name: svc.display_name(),
        vips: svc.vips.clone(),
        ports,
        endpoints,
        load_balancer,
    }
}

fn endpoint_ref(w: &Workload) -> EndpointRef {
    EndpointRef {
        workload: w.key.to_string(),
        node: w.node.clone(),
        ips: w.ips.clone(),
        meshed: w.enrolled,
    }
}

pub fn certs(ctx: &AdminContext) -> CertsView {
    let state = ctx.snapshot();
    let Some(ids) = &ctx.identities else {
        return CertsView {
            mtls: false,
            trust_domain: ctx.config.trust_domain.clone(),
            roots: Vec::new(),
            certificates: Vec::new(),
        };
    };
    let certificates: Vec<CertView> = ids
        .ids()
        .iter()
        .filter_map(|id| ids.leaf_info(id))
        .map(|info| cert_view(info, &state, &ctx.config.node))
        .collect();
    let roots = ids
        .bundle()
        .iter()
        .map(|der| {
            let parsed = parse_cert(der).ok();
            RootView {
                fingerprint: fingerprint(der),
                subject: parsed
                    .as_ref()
                    .map_or_else(String::new, |c| c.subject().to_string()),
                not_after: parsed
                    .map(|c| c.validity().not_after.timestamp())
                    .and_then(|t| u64::try_from(t).ok())
                    .map_or_else(String::new, |t| {
                        rfc3339(UNIX_EPOCH + Duration::from_secs(t))
                    }),
            }
        })
        .collect();
    CertsView {
        mtls: true,
        trust_domain: ids.trust_domain().to_owned(),
        roots,
        certificates,
    }
}

pub fn policies(state: &MeshState) -> PoliciesView {
    let authorization = state
        .authorization_policies
        .iter()
        .map(|p| AuthzPolicyView {
            name: p.key(),
            action: p.spec.action,
            rules: p.spec.rules.as_ref().map_or(0, Vec::len),
            selects: selected(state, &p.namespace, p.spec.selector.as_ref()),
            spec: serde_json::to_value(&p.spec).unwrap_or_default(),
        })
        .collect();
    let peer_authentication = state
        .peer_authentications
        .iter()
        .map(|p| PeerAuthView {
            name: p.key(),
            mode: p.spec.mode,
            namespace_wide: authz::selector_labels(p.spec.selector.as_ref()).is_empty(),
            selects: selected(state, &p.namespace, p.spec.selector.as_ref()),
        })
        .collect();
    PoliciesView {
        authorization,
        peer_authentication,
    }
}

/// The workloads of `namespace` a selector picks.
fn selected(
    state: &MeshState,
    namespace: &str,
    selector: Option<&WorkloadSelector>,
) -> Vec<String> {
    state
        .workloads
        .values()
        .filter(|w| w.key.namespace == namespace && authz::selects(selector, w))
        .map(|w| w.key.to_string())
        .collect()
}

/// The configuration as given, the current mesh state, and the certificates this node holds
/// (public parts only: the agent has no CA key, and private keys are never dumped).
pub fn config_dump(ctx: &AdminContext) -> serde_json::Value {
    let state = ctx.snapshot();
    let certificates: Vec<serde_json::Value> = ctx
        .identities
        .iter()
        .flat_map(|ids| ids.ids().into_iter().filter_map(|id| ids.leaf_info(&id)))
        .map(|info| serde_json::to_value(info).unwrap_or_default())
        .collect();
    serde_json::json!({
        "config": serde_json::to_value(&ctx.config).unwrap_or_default(),
        "state": &*state,
        "certificates": certificates,
    })
}
