//! `/policy/check?src=<ns/pod>&dst=<ip:port>[&method=M&path=P]`: would the mesh let this
//! workload reach that pod? The answer is [`MeshState::authorize`]'s, for the source's SPIFFE
//! id, at L4 (a connection) or, when a method or a path is given, at L7 (a request). `explain`
//! asks the same question for each endpoint of a connection.

use http::{HeaderMap, Method};

use super::lookup::{identity, workload};
use super::query::Query;
use super::views::{CheckView, DecisionView, RequestView};
use super::{AdminContext, AdminError};
use crate::identity::SpiffeId;
use crate::policy::{self, Action, HttpAttrs, Source, WorkloadSelector};
use crate::state::{MeshState, Workload};

/// An HTTP request to ask about; `None` in [`decide`] asks about a connection.
#[derive(Clone, Debug)]
pub struct Http {
    pub method: Method,
    pub path: String,
}

impl Http {
    /// `GET /`: what to ask about when an HTTP request is needed and none was described.
    pub fn root() -> Http {
        Http {
            method: Method::GET,
            path: "/".to_owned(),
        }
    }

    /// From the `method` and `path` parameters: `None` when neither is given; a missing one
    /// defaults to `GET` or `/`.
    pub fn from_query(q: &Query) -> Result<Option<Http>, AdminError> {
        if q.get("method").is_none() && q.get("path").is_none() {
            return Ok(None);
        }
        let method = q.get("method").unwrap_or("GET");
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| AdminError::BadRequest(format!("{method:?} is not an HTTP method")))?;
        let path = q.get("path").unwrap_or("/");
        if !path.starts_with('/') {
            return Err(AdminError::BadRequest(format!(
                "path {path:?} must start with /"
            )));
        }
        Ok(Some(Http {
            method,
            path: path.to_owned(),
        }))
    }
}

pub fn check(ctx: &AdminContext, query: Option<&str>) -> Result<CheckView, AdminError> {
    let q = Query::parse(query, &["src", "dst", "method", "path"])?;
    let state = ctx.snapshot();
    let src = workload(&state, q.require("src", "namespace/pod")?)?;
    let dst_text = q.require("dst", "pod ip:port")?;
    let dst: std::net::SocketAddr = dst_text
        .parse()
        .map_err(|_| AdminError::BadRequest(format!("dst {dst_text:?} is not an ip:port")))?;
    let Some(target) = state.workload_by_ip(dst.ip()) else {
        return Err(match state.service_for(dst) {
            Some(t) => AdminError::BadRequest(format!(
                "{dst} is a port of service {}, not a pod; /explain follows a service to its \
                 endpoints",
                t.service.display_name()
            )),
            None => AdminError::NotFound(format!("no workload has the address {}", dst.ip())),
        });
    };
    let http = Http::from_query(&q)?;
    let id = identity(ctx, src);
    Ok(CheckView {
        source: src.key.to_string(),
        source_id: id.as_ref().map(ToString::to_string),
        destination: dst,
        workload: target.key.to_string(),
        request: request_view(dst.port(), http.as_ref()),
        decision: decide(&state, target, id.as_ref(), dst.port(), http.as_ref()),
    })
}

pub fn request_view(port: u16, http: Option<&Http>) -> RequestView {
    RequestView {
        layer: if http.is_some() { "l7" } else { "l4" }.to_owned(),
        port,
        method: http.map(|h| h.method.to_string()),
        path: http.map(|h| h.path.clone()),
    }
}

/// The decision for `source` (`None`: a peer without identity) reaching `dst` on `port`.
pub fn decide(
    state: &MeshState,
    dst: &Workload,
    source: Option<&SpiffeId>,
    port: u16,
    http: Option<&Http>,
) -> DecisionView {
    let headers = HeaderMap::new();
    let request = policy::Request {
        source: Source { id: source },
        port,
        http: http.map(|h| HttpAttrs {
            method: &h.method,
            path: &h.path,
            headers: &headers,
        }),
    };
    let decision = state.authorize(dst, &request);
    DecisionView {
        allow: decision.allow,
        policy: (!decision.policy.is_empty()).then(|| decision.policy.to_string()),
        reason: decision.to_string(),
        applicable: applicable(state, dst),
    }
}

/// The policies that apply to `w`: DENY ones first, each group by name (evaluation order).
fn applicable(state: &MeshState, w: &Workload) -> Vec<String> {
    let of = |action: Action| {
        let mut names: Vec<String> = state
            .authorization_policies
            .iter()
            .filter(|p| p.namespace == w.key.namespace && p.spec.action == action)
            .filter(|p| selects(p.spec.selector.as_ref(), w))
            .map(|p| p.key())
            .collect();
        names.sort();
        names
    };
    let mut all = of(Action::Deny);
    all.extend(of(Action::Allow));
    all
}

/// Whether a selector picks `w` (no selector, or no labels: every workload of the namespace).
pub fn selects(selector: Option<&WorkloadSelector>, w: &Workload) -> bool {
    selector_labels(selector)
        .into_iter()
        .all(|(k, v)| w.labels.get(k) == Some(v))
}

pub fn selector_labels(selector: Option<&WorkloadSelector>) -> Vec<(&String, &String)> {
    selector
        .and_then(|s| s.match_labels.as_ref())
        .map(|labels| labels.iter().collect())
        .unwrap_or_default()
}
