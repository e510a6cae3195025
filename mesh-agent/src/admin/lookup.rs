//! Small questions several endpoints ask: which workload a `namespace/name` names, whether a
//! pod of this node is captured, a workload's identity and certificate, what a service port
//! declares.

use std::sync::Arc;

use super::views::{CaptureView, CertView};
use super::{AdminContext, AdminError};
use crate::identity::{CertInfo, SpiffeId, rfc3339};
use crate::proxy::detect::{Declared, declared};
use crate::state::{MeshState, ServicePort, Workload, WorkloadKey};

/// The attach types a captured pod's cgroup carries (see `datapath::Prog::POD`).
const POD_PROGRAMS: [&str; 5] = [
    "cgroup_inet4_connect",
    "cgroup_inet6_connect",
    "sock_ops",
    "cgroup_inet_sock_release",
    "cgroup_inet_ingress",
];

/// `namespace/name` -> the workload it names.
pub fn workload<'a>(state: &'a MeshState, text: &str) -> Result<&'a Arc<Workload>, AdminError> {
    let Some((namespace, name)) = text
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
    else {
        return Err(AdminError::BadRequest(format!(
            "{text:?} is not a workload: write namespace/name"
        )));
    };
    let key = WorkloadKey {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    state
        .workloads
        .get(&key)
        .ok_or_else(|| AdminError::NotFound(format!("no workload {key} in the mesh state")))
}

/// The identity an enrolled workload's connections carry.
pub fn identity(ctx: &AdminContext, w: &Workload) -> Option<SpiffeId> {
    w.enrolled
        .then(|| SpiffeId::of(&ctx.config.trust_domain, w))
}

/// Whether a pod of this node is captured; `None` for pods of other nodes (their agent knows).
pub fn capture(ctx: &AdminContext, w: &Workload) -> Option<CaptureView> {
    if w.node != ctx.config.node {
        return None;
    }
    let not = |problem: &str| CaptureView {
        captured: false,
        cgroup: w.cgroup.clone(),
        programs: Vec::new(),
        problem: Some(problem.to_owned()),
    };
    if !w.enrolled {
        return Some(not(
            "not enrolled: its namespace is not labelled weft.dev/mesh=enabled, or \
                         the pod opted out",
        ));
    }
    if let Some(unresolved) = &w.cgroup_unresolved {
        let tried: Vec<String> = unresolved
            .tried
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let problem = match tried.is_empty() {
            true => unresolved.reason.clone(),
            false => format!("{} (looked at {})", unresolved.reason, tried.join(", ")),
        };
        return Some(not(&problem));
    }
    let Some(cgroup) = &w.cgroup else {
        return Some(not(
            "its cgroup is not known on this node (no `cgroup` in the state, or \
                         it could not be resolved)",
        ));
    };
    let programs: Vec<String> = match ctx.datapath.attached(cgroup) {
        Ok(found) => found.iter().map(|p| p.attach_type.to_owned()).collect(),
        Err(e) => return Some(not(&format!("querying its cgroup: {e:#}"))),
    };
    let missing: Vec<&str> = POD_PROGRAMS
        .into_iter()
        .filter(|p| !programs.iter().any(|found| found == p))
        .collect();
    Some(CaptureView {
        captured: programs.iter().any(|p| p == POD_PROGRAMS[0]),
        cgroup: Some(cgroup.clone()),
        problem: (!missing.is_empty()).then(|| {
            format!(
                "not attached to {}: {}",
                cgroup.display(),
                missing.join(", ")
            )
        }),
        programs,
    })
}

/// Public facts of a certificate, with the workloads of this node that present it.
pub fn cert_view(info: CertInfo, state: &MeshState, node: &str) -> CertView {
    let workloads = state
        .enrolled_on(node)
        .filter(|w| {
            w.key.namespace == info.id.namespace() && w.service_account == info.id.service_account()
        })
        .map(|w| w.key.to_string())
        .collect();
    CertView {
        id: info.id.to_string(),
        serial: info.serial,
        not_before: rfc3339(info.not_before),
        not_after: rfc3339(info.not_after),
        issuer: info.issuer,
        root: info.root,
        workloads,
    }
}

/// The certificate this node holds for `id`, if any.
pub fn held_cert(ctx: &AdminContext, state: &MeshState, id: &SpiffeId) -> Option<CertView> {
    let info = ctx.identities.as_ref()?.leaf_info(id)?;
    Some(cert_view(info, state, &ctx.config.node))
}

/// What the proxy makes of a service port: `http`, `http2`, `tcp` or `detect`.
pub fn declared_name(port: &ServicePort) -> &'static str {
    match declared(port) {
        Declared::Http => "http",
        Declared::Http2 => "http2",
        Declared::Tcp => "tcp",
        Declared::Unknown => "detect",
    }
}
