//! The telemetry of one outbound request: what is noted on arrival, what the attempts add
//! (`UpstreamNotes`), and the pending record the response body carries to its end.

use std::sync::Arc;
use std::time::Instant;

use http::{Response, request};

use super::respond::{Mechanism, ResponseBody};
use crate::routing::RouteRule;
use crate::telemetry::{
    ConnRecorder, Details, PendingRequest, RequestKey, UpstreamNotes, flags, grpc_status, is_grpc,
};

/// A request on its way.
pub(super) struct Observed {
    pub notes: UpstreamNotes,
    details: Option<Box<Details>>,
    grpc: bool,
}

impl Observed {
    pub fn start(recorder: &ConnRecorder, parts: &request::Parts) -> Self {
        let details = recorder.details(&parts.method, &parts.uri, &parts.headers);
        let notes = UpstreamNotes::new(details.is_some());
        Observed {
            notes,
            details,
            grpc: is_grpc(&parts.headers),
        }
    }

    /// The response, carrying the request's record to the end of its body.
    pub fn finish(
        self,
        recorder: &Arc<ConnRecorder>,
        started: Instant,
        response: Response<ResponseBody>,
        mechanism: Option<Mechanism>,
    ) -> Response<ResponseBody> {
        let flags = match mechanism {
            Some(m) => flag(m),
            None if self.notes.exhausted() => flags::URX,
            None => flags::NONE,
        };
        let key = RequestKey {
            endpoint: self.notes.endpoint(),
            grpc: self.grpc,
            status: response.status().as_u16(),
            grpc_status: grpc_status(response.headers()),
            flags,
        };
        let mut pending = PendingRequest::new(recorder.clone(), started, key);
        pending.request_bytes = self.notes.request_bytes.clone();
        pending.upstream_ms = self.notes.upstream_ms();
        pending.route = self.notes.take_route();
        pending.details = self.details;
        response.map(|body| body.observed(pending))
    }
}

/// Remembers the matched rule's name for the access log, when it is kept.
pub(super) fn note_route(notes: &UpstreamNotes, rule: Option<&RouteRule>) {
    if let Some(rule) = rule.filter(|_| notes.keep_route) {
        let name = match &rule.name {
            Some(name) => format!("{}#{name}", rule.route),
            None => format!("{}#{}", rule.route, rule.index),
        };
        notes.set_route(name);
    }
}

/// The response flag of a response the proxy made itself.
pub(crate) const fn flag(mechanism: Mechanism) -> &'static str {
    match mechanism {
        Mechanism::NoRoute => flags::NR,
        Mechanism::NoHealthyUpstream => flags::UH,
        Mechanism::Timeout => flags::UT,
        Mechanism::CircuitOpen => flags::UO,
        Mechanism::UpstreamConnectFailure => flags::UF,
        Mechanism::UpstreamReset => flags::UC,
        Mechanism::Redirect | Mechanism::DirectResponse => flags::NONE,
        Mechanism::NoBackend => flags::NC,
        Mechanism::BadRequest => flags::DPE,
        Mechanism::RequestTimeout => flags::SI,
        Mechanism::Denied => flags::UAEX,
    }
}
