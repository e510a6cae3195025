//! Where a request goes: the Gateway API rule of the addressed service port that matches it
//! (in the spec's precedence order), that rule's filters, a backend by weight and that
//! backend's filters; or, with no route attached to the port, the addressed service itself.

use http::{Response, request};

use super::forward::HttpConn;
use super::respond::{Mechanism, ResponseBody, from_filter, generated};
use crate::routing::{self, Backend, Filter, FilterOutcome, RouteRule, Selected};
use crate::state::{MeshState, ServiceTarget};

/// Why a request gets an answer from the proxy instead of a destination.
#[derive(Debug)]
pub enum Refusal {
    /// A proxy decision (no route, no backend...).
    Generated(Mechanism),
    /// A filter's answer (a redirect...); boxed, since it is the rare path.
    Filter(Box<Response<()>>),
}

impl Refusal {
    /// The response to send, and its mechanism.
    pub fn answer(self) -> (Response<ResponseBody>, Mechanism) {
        match self {
            Refusal::Generated(mechanism) => (generated(mechanism), mechanism),
            Refusal::Filter(response) => from_filter(*response),
        }
    }
}

/// The destination of a request.
pub struct Routed<'s> {
    /// The rule that matched; `None` when no route is attached (the service itself).
    pub rule: Option<&'s RouteRule>,
    /// The backend the rule chose by weight (`None` with no route).
    pub backend: Option<&'s Backend>,
    /// `(namespace, name)` and port of the backend service.
    pub service: &'s (String, String),
    pub target: &'s ServiceTarget,
}

impl<'s> Routed<'s> {
    /// Filters that apply to the request and its response: the rule's, then the backend's.
    pub fn filters(&self) -> impl Iterator<Item = &'s [Filter]> {
        let rule = self.rule.map(|r| r.filters.as_slice());
        let backend = self.backend.map(|b| b.filters.as_slice());
        rule.into_iter().chain(backend)
    }
}

/// Routes the request whose head is `parts` (changing it as the filters say).
pub fn route<'s>(
    conn: &'s HttpConn,
    state: &'s MeshState,
    parts: &mut request::Parts,
) -> Result<Routed<'s>, Refusal> {
    let Some(table) = state.routes_for(&conn.service, conn.port) else {
        let target = state
            .service_port(&conn.service, conn.port)
            .ok_or_else(|| answer(Mechanism::NoHealthyUpstream))?;
        return Ok(Routed {
            rule: None,
            backend: None,
            service: &conn.service,
            target,
        });
    };
    let selected = table
        .select(&parts.method, &parts.uri, &parts.headers)
        .ok_or_else(|| answer(Mechanism::NoRoute))?;
    let rule = selected.rule;
    filter(&rule.filters, &selected, parts)?;
    let backend = rule
        .pick_backend(fastrand::u32(..))
        .ok_or_else(|| answer(Mechanism::NoBackend))?;
    filter(&backend.filters, &selected, parts)?;
    let target = state
        .service_port(&backend.service, backend.port)
        .ok_or_else(|| answer(Mechanism::NoBackend))?;
    Ok(Routed {
        rule: Some(rule),
        backend: Some(backend),
        service: &backend.service,
        target,
    })
}

fn filter(
    filters: &[Filter],
    selected: &Selected<'_>,
    parts: &mut request::Parts,
) -> Result<(), Refusal> {
    if filters.is_empty() {
        return Ok(());
    }
    match routing::apply_request_filters(filters, selected, parts) {
        FilterOutcome::Continue => Ok(()),
        FilterOutcome::Respond(response) => Err(Refusal::Filter(Box::new(response))),
    }
}

fn answer(mechanism: Mechanism) -> Refusal {
    Refusal::Generated(mechanism)
}
