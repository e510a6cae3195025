//! `/explain?src=<ns/pod>&dst=<host:port>[&method=M&path=P]`: the whole path of one
//! connection, from the model: is the source enrolled and captured, what the destination is
//! (a service port with its route rules, a pod, or neither), which endpoints it can reach and
//! how (tunnel, local hand-over, direct), and what each endpoint's node proxy and kernel decide
//! (authorization with the deciding policy, STRICT drops).
//!
//! The source's own node also says which endpoint its proxy's balancer would choose now and
//! what it knows about each (latency estimate, requests in flight, ejection): see `choice`.

use super::authz::{Http, decide, request_view};
use super::choice::Balanced;
use super::destination::{self, Candidate, Destination};
use super::lookup::{capture, held_cert, identity, workload};
use super::query::Query;
use super::views::{DestinationView, ExplainEndpoint, ExplainView, SourceView};
use super::{AdminContext, AdminError};
use crate::identity::SpiffeId;
use crate::policy::PeerAuthMode;
use crate::state::{MeshState, Workload};

pub fn explain(ctx: &AdminContext, query: Option<&str>) -> Result<ExplainView, AdminError> {
    let q = Query::parse(query, &["src", "dst", "method", "path"])?;
    let state = ctx.snapshot();
    let src = workload(&state, q.require("src", "namespace/pod")?)?;
    let addr = destination::resolve(&state, q.require("dst", "host:port")?)?;
    let asked = Http::from_query(&q)?;
    let excluded = destination::excluded(&ctx.config, addr);
    let dst = destination::classify(&state, addr, asked.as_ref());
    let source = source_view(ctx, &state, src);
    let mtls = ctx.identities.is_some();
    let captured =
        src.enrolled && excluded.is_none() && source.capture.as_ref().is_none_or(|c| c.captured);

    let mut notes = source_notes(src, &source, mtls);
    if let Some(why) = &excluded {
        notes.push(format!(
            "{addr} is excluded from capture ({why}): the pod's connection goes out as addressed"
        ));
    }
    notes.extend(dst.notes.iter().cloned());
    // The proxy authorizes HTTP per request and everything else per connection.
    let http = match (dst.http, asked) {
        (false, _) => None,
        (true, Some(asked)) => Some(asked),
        (true, None) => {
            notes.push(
                "HTTP is authorized per request and no method or path was given: this answer \
                 asks about GET /"
                    .to_owned(),
            );
            Some(Http::root())
        }
    };
    let path = Path {
        state: &state,
        src,
        id: identity(ctx, src),
        captured,
        mtls,
        http: http.as_ref(),
    };
    let mut endpoints: Vec<_> = dst.candidates.iter().map(|c| path.endpoint(c)).collect();
    let balanced = Balanced {
        state: &state,
        dst: &dst,
        src,
        captured,
    };
    balanced.apply(ctx, &mut endpoints, &mut notes);
    let request = request_view(
        dst.service.as_ref().map_or(addr.port(), |s| s.target_port),
        http.as_ref(),
    );
    Ok(ExplainView {
        source,
        destination: destination_view(dst, excluded),
        mtls,
        request,
        endpoints,
        notes,
    })
}

fn source_view(ctx: &AdminContext, state: &MeshState, src: &Workload) -> SourceView {
    let id = identity(ctx, src);
    SourceView {
        workload: src.key.to_string(),
        node: src.node.clone(),
        enrolled: src.enrolled,
        here: src.node == ctx.config.node,
        capture: capture(ctx, src),
        certificate: id.as_ref().and_then(|id| held_cert(ctx, state, id)),
        identity: id.map(|id| id.to_string()),
    }
}

fn source_notes(src: &Workload, view: &SourceView, mtls: bool) -> Vec<String> {
    let mut notes = Vec::new();
    let name = &view.workload;
    if !src.enrolled {
        notes.push(format!(
            "{name} is not enrolled: its connections are not captured and leave the pod as \
             addressed, without identity, routing or authorization"
        ));
    } else if !view.here {
        notes.push(format!(
            "{name} runs on node {}: only that node's agent knows whether it is captured (run \
             explain there); this answer assumes it is",
            src.node
        ));
    }
    if let Some(problem) = view.capture.as_ref().and_then(|c| c.problem.as_ref())
        && src.enrolled
    {
        notes.push(format!("{name}: {problem}"));
    }
    if !mtls {
        notes.push(
            "this agent runs without a CA (--ca-address): connections between pods are plain \
             TCP and authorization policies are not enforced"
                .to_owned(),
        );
    } else if src.enrolled && view.here && view.certificate.is_none() {
        let id = view.identity.as_deref().unwrap_or_default();
        notes.push(format!(
            "no certificate for {id} on this node yet: its tunnelled connections fail until the \
             CA issues one"
        ));
    }
    notes
}

fn destination_view(dst: Destination, excluded: Option<String>) -> DestinationView {
    DestinationView {
        address: dst.addr,
        kind: dst.kind.to_owned(),
        excluded,
        service: dst.service,
        workload: dst.workload,
        routes: dst.routes,
    }
}

/// What is known about the connection's source, applied to each endpoint.
struct Path<'a> {
    state: &'a MeshState,
    src: &'a Workload,
    id: Option<SpiffeId>,
    captured: bool,
    mtls: bool,
    http: Option<&'a Http>,
}

impl Path<'_> {
    fn endpoint(&self, c: &Candidate) -> ExplainEndpoint {
        let w = c.workload.as_deref();
        let via = self.via(w);
        let enforced = via != "direct";
        let peer = w
            .filter(|w| w.enrolled)
            .map(|w| self.state.peer_authentication(w));
        let authorization =
            w.map(|w| decide(self.state, w, self.id.as_ref(), c.addr.port(), self.http));
        let verdict =
            if peer == Some(PeerAuthMode::Strict) && !enforced && !self.dialled_from_its_node(w) {
                "drop"
            } else if enforced && authorization.as_ref().is_some_and(|d| !d.allow) {
                "deny"
            } else {
                "allow"
            };
        ExplainEndpoint {
            workload: w.map(|w| w.key.to_string()),
            service: c.service.clone(),
            address: c.addr,
            node: w.map(|w| w.node.clone()),
            meshed: w.is_some_and(|w| w.enrolled),
            via: via.to_owned(),
            peer_authentication: peer,
            authorization,
            enforced,
            verdict: verdict.to_owned(),
            chosen: false,
            health: None,
        }
    }

    /// How the source's proxy reaches `w` (see `proxy::dial`): only captured connections of
    /// an identified source to enrolled pods travel inside the mesh.
    fn via(&self, w: Option<&Workload>) -> &'static str {
        match w {
            Some(w) if self.captured && self.mtls && self.id.is_some() && w.enrolled => {
                if w.node == self.src.node {
                    "local"
                } else {
                    "tunnel"
                }
            }
            _ => "direct",
        }
    }

    /// Whether a plaintext connection to `w` comes from `w`'s own node (the proxy dialling on
    /// the pod's node), which STRICT pods accept.
    fn dialled_from_its_node(&self, w: Option<&Workload>) -> bool {
        self.captured && w.is_some_and(|w| w.node == self.src.node)
    }
}
