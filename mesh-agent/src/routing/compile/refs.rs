//! Parent and backend references, resolved against the snapshot's services.
//!
//! A mesh route attaches to a Service (`group: ""`, `kind: Service`) of its own namespace (a
//! "producer" route); the Gateway API's defaults (`gateway.networking.k8s.io`/`Gateway`) and
//! routes for another namespace's Service ("consumer" routes) are refused with a reason.
//! Backends are Services of the route's namespace: another namespace would need a
//! ReferenceGrant, which this source has no place for.

use gateway_api::experimental::httproutes::HttpRouteParentRefs;
use gateway_api::grpcroutes::GrpcRouteParentRefs;

use super::Ctx;
use crate::state::{Protocol, ServicePort};

/// The fields every Gateway API object reference shares, borrowed from whichever generated
/// type carried them.
#[derive(Clone, Copy, Debug)]
pub(super) struct RefSpec<'a> {
    pub group: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub port: Option<i32>,
    pub section_name: Option<&'a str>,
}

/// Borrows a reference from any generated type with the usual fields.
macro_rules! ref_spec {
    ($r:expr) => {
        $crate::routing::compile::refs::RefSpec {
            group: $r.group.as_deref(),
            kind: $r.kind.as_deref(),
            name: &$r.name,
            namespace: $r.namespace.as_deref(),
            port: $r.port,
            section_name: None,
        }
    };
}
pub(super) use ref_spec;

pub(super) fn http_parent(r: &HttpRouteParentRefs) -> RefSpec<'_> {
    RefSpec {
        section_name: r.section_name.as_deref(),
        ..ref_spec!(r)
    }
}

pub(super) fn grpc_parent(r: &GrpcRouteParentRefs) -> RefSpec<'_> {
    RefSpec {
        section_name: r.section_name.as_deref(),
        ..ref_spec!(r)
    }
}

/// The service ports one parentRef attaches the route to.
pub(super) struct Parent {
    pub service: (String, String),
    pub ports: Vec<u16>,
    /// `spec.parentRefs[j]`, for problems found when attaching.
    pub at: String,
}

pub(super) fn parents<'a>(
    ctx: &mut Ctx<'_>,
    refs: impl Iterator<Item = RefSpec<'a>>,
) -> Vec<Parent> {
    let mut out: Vec<Parent> = Vec::new();
    let mut count = 0;
    for (j, r) in refs.enumerate() {
        count += 1;
        let at = format!("spec.parentRefs[{j}]");
        let Some(parent) = parent(ctx, &at, r) else {
            continue;
        };
        let twice = out.iter().find(|p| {
            p.service == parent.service && p.ports.iter().any(|x| parent.ports.contains(x))
        });
        if let Some(first) = twice {
            let reason = format!(
                "attaches to a port of service {}/{} that {} attaches to already",
                parent.service.0, parent.service.1, first.at
            );
            ctx.problem(at, reason);
            continue;
        }
        out.push(parent);
    }
    if count == 0 {
        ctx.problem(
            "spec.parentRefs",
            "a mesh route needs a parentRef naming a Service (group: \"\", kind: Service)",
        );
    }
    if count > 32 {
        ctx.problem(
            "spec.parentRefs",
            format!("{count} entries, at most 32 are allowed"),
        );
    }
    out
}

fn parent(ctx: &mut Ctx<'_>, at: &str, r: RefSpec<'_>) -> Option<Parent> {
    let before = ctx.count();
    if r.group != Some("") || r.kind != Some("Service") {
        let reason = format!(
            "`{}/{}` is not supported: a mesh route attaches to a Service (group: \"\", kind: \
             Service); the defaults name a Gateway",
            r.group.unwrap_or("gateway.networking.k8s.io"),
            r.kind.unwrap_or("Gateway")
        );
        ctx.problem(at, reason);
        return None;
    }
    if let Some(ns) = r.namespace.filter(|ns| *ns != ctx.namespace) {
        let reason = format!(
            "a route for a Service of namespace `{ns}` (a consumer route) is not supported; \
             attach it from namespace `{ns}`"
        );
        ctx.problem(format!("{at}.namespace"), reason);
        return None;
    }
    let service = (ctx.namespace.clone(), r.name.to_string());
    let Some(svc) = ctx.services.get(&service) else {
        let reason = format!(
            "service `{}/{}` is not declared under `services`",
            service.0, service.1
        );
        ctx.problem(format!("{at}.name"), reason);
        return None;
    };
    let tcp: Vec<&ServicePort> = svc
        .ports
        .iter()
        .filter(|p| p.protocol == Protocol::Tcp)
        .collect();
    let by_port = match r.port {
        Some(n) => match tcp.iter().find(|p| i32::from(p.port) == n) {
            Some(p) => Some(p.port),
            None => {
                let reason = format!("service `{}/{}` has no TCP port {n}", service.0, service.1);
                ctx.problem(format!("{at}.port"), reason);
                None
            }
        },
        None => None,
    };
    let by_name = match r.section_name {
        Some(name) => match tcp.iter().find(|p| p.name.as_deref() == Some(name)) {
            Some(p) => Some(p.port),
            None => {
                let reason = format!(
                    "service `{}/{}` has no TCP port named `{name}`",
                    service.0, service.1
                );
                ctx.problem(format!("{at}.sectionName"), reason);
                None
            }
        },
        None => None,
    };
    if let (Some(a), Some(b)) = (by_port, by_name)
        && a != b
    {
        let reason = format!("names port {b}, but `port` is {a}");
        ctx.problem(format!("{at}.sectionName"), reason);
    }
    let ports: Vec<u16> = match by_port.or(by_name) {
        Some(port) => vec![port],
        None => tcp.iter().map(|p| p.port).collect(),
    };
    if ports.is_empty() && ctx.count() == before {
        let reason = format!("service `{}/{}` has no TCP port", service.0, service.1);
        ctx.problem(at, reason);
    }
    (ctx.count() == before).then(|| Parent {
        service,
        ports,
        at: at.to_string(),
    })
}

/// A backend (or mirror) reference: a TCP port of a Service of the route's namespace.
pub(super) fn service_port(
    ctx: &mut Ctx<'_>,
    at: &str,
    r: RefSpec<'_>,
) -> Option<((String, String), u16)> {
    let group = r.group.unwrap_or("");
    let kind = r.kind.unwrap_or("Service");
    if !group.is_empty() || kind != "Service" {
        let reason = format!("`{group}/{kind}` is not supported: backends are Services");
        ctx.problem(at, reason);
        return None;
    }
    if let Some(ns) = r.namespace.filter(|ns| *ns != ctx.namespace) {
        let reason = format!(
            "a backend in namespace `{ns}` needs a ReferenceGrant, which the state file cannot \
             express; use a Service of namespace `{}`",
            ctx.namespace
        );
        ctx.problem(format!("{at}.namespace"), reason);
        return None;
    }
    let service = (ctx.namespace.clone(), r.name.to_string());
    let Some(svc) = ctx.services.get(&service) else {
        let reason = format!(
            "service `{}/{}` is not declared under `services`",
            service.0, service.1
        );
        ctx.problem(format!("{at}.name"), reason);
        return None;
    };
    let Some(n) = r.port else {
        ctx.problem(format!("{at}.port"), "a Service backend needs a port");
        return None;
    };
    let exposed = svc
        .ports
        .iter()
        .find(|p| p.protocol == Protocol::Tcp && i32::from(p.port) == n);
    match exposed {
        Some(p) => Some((service, p.port)),
        None => {
            let reason = format!("service `{}/{}` has no TCP port {n}", service.0, service.1);
            ctx.problem(format!("{at}.port"), reason);
            None
        }
    }
}

/// A backend weight: 0 (no traffic) to 1,000,000; 1 when omitted.
pub(super) fn weight(ctx: &mut Ctx<'_>, at: &str, weight: Option<i32>) -> u32 {
    match weight {
        None => 1,
        Some(w) => match u32::try_from(w) {
            Ok(w) if w <= 1_000_000 => w,
            _ => {
                let reason = format!("{w} is not a weight (0 to 1000000)");
                ctx.problem(format!("{at}.weight"), reason);
                0
            }
        },
    }
}
