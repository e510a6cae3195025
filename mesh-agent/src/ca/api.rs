//! The CA's HTTPS API handlers (types in [`crate::identity::wire`]).
//!
//! `POST /v1/certificates` signs only when the bearer token belongs to a node (a bootstrap
//! token, or a service-account token the API server vouches for: `nodeauth`), the CSR passes
//! `csr::check`, and the state model has an enrolled workload with the requested namespace and
//! service account scheduled on that node. Every refusal answers 4xx with a JSON reason, is
//! logged (`certificate request refused`) and counted.

use std::convert::Infallible;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use super::authority::Authority;
use super::csr::{self, CsrRefusal};
use super::metrics::CaMetrics;
use super::nodeauth::NodeAuth;
use crate::identity::wire::{
    BUNDLE_PATH, BundleResponse, CERTIFICATES_PATH, CertificateRequest, CertificateResponse,
    Refusal,
};
use crate::identity::{CertInfo, SpiffeId, pem_encode, rfc3339};
use crate::state::MeshState;

/// A CSR in JSON is well under this.
const MAX_REQUEST: usize = 64 * 1024;

/// What every request reads.
pub(super) struct Shared {
    pub(super) authority: RwLock<Arc<Authority>>,
    pub(super) state: watch::Receiver<Arc<MeshState>>,
    pub(super) node_auth: NodeAuth,
    pub(super) trust_domain: String,
    pub(super) ttl: Duration,
    pub(super) metrics: CaMetrics,
}

impl Shared {
    pub(super) fn authority(&self) -> Arc<Authority> {
        self.authority
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, BUNDLE_PATH) => json(
            StatusCode::OK,
            &BundleResponse {
                bundle: shared.authority().bundle_pem(),
            },
        ),
        (&Method::POST, CERTIFICATES_PATH) => match sign(&shared, req).await {
            Ok(answer) => json(StatusCode::OK, &answer),
            Err(refused) => refused.answer(&shared.metrics),
        },
        (_, BUNDLE_PATH | CERTIFICATES_PATH) => plain(StatusCode::METHOD_NOT_ALLOWED),
        _ => plain(StatusCode::NOT_FOUND),
    };
    Ok(response)
}

/// A refusal, with what is known of the requester so far.
struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
    node: Option<String>,
    id: Option<SpiffeId>,
}

impl Refused {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refused {
            status,
            code,
            message: message.into(),
            node: None,
            id: None,
        }
    }

    fn node(mut self, node: &str) -> Self {
        self.node = Some(node.to_owned());
        self
    }

    fn answer(self, metrics: &CaMetrics) -> Response<Full<Bytes>> {
        let node = self.node.as_deref().unwrap_or("unknown");
        let id = self
            .id
            .as_ref()
            .map_or_else(String::new, SpiffeId::to_string);
        warn!(node, id, reason = self.code, detail = %self.message, "certificate request refused");
        metrics.refused(self.code);
        let refusal = Refusal {
            error: self.code.to_owned(),
            message: self.message,
        };
        json(self.status, &refusal)
    }
}

async fn sign(shared: &Shared, req: Request<Incoming>) -> Result<CertificateResponse, Refused> {
    let authority = shared.authority();
    let token = bearer(req.headers()).ok_or_else(|| {
        Refused::new(
            StatusCode::UNAUTHORIZED,
            "no_token",
            "authorization: Bearer <node token> required",
        )
    })?;
    let node = authenticate(shared, &authority, token).await?;
    let bad_request =
        |m: String| Refused::new(StatusCode::BAD_REQUEST, "bad_request", m).node(&node);
    let body = Limited::new(req.into_body(), MAX_REQUEST)
        .collect()
        .await
        .map_err(|e| bad_request(format!("reading the body: {e}")))?
        .to_bytes();
    let request: CertificateRequest =
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("body: {e}")))?;
    let checked = csr::check(&request.csr, &shared.trust_domain).map_err(|e| {
        let status = match e {
            CsrRefusal::TrustDomain { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        Refused::new(status, e.code(), e.to_string()).node(&node)
    })?;
    let id = checked.id;
    let refuse = |status, code, message: String| Refused {
        id: Some(id.clone()),
        ..Refused::new(status, code, message).node(&node)
    };
    if !scheduled_on(&shared.state.borrow(), &node, &id) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "not_on_node",
            format!(
                "no enrolled workload with namespace {:?} and service account {:?} is scheduled on node {node:?}",
                id.namespace(),
                id.service_account()
            ),
        ));
    }
    let internal = |e: String| refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal", e);
    let leaf = authority
        .signer
        .workload(&id, &checked.key, shared.ttl)
        .map_err(|e| internal(e.to_string()))?;
    let info = CertInfo::of(std::slice::from_ref(&leaf), &authority.bundle)
        .map_err(|e| internal(e.to_string()))?;
    let expires = rfc3339(info.not_after);
    info!(node, id = %id, serial = %info.serial, expires = %expires,
        root = %authority.signer.fingerprint, "certificate issued");
    shared.metrics.issued();
    Ok(CertificateResponse {
        cert_chain: vec![pem_encode("CERTIFICATE", &leaf)],
        bundle: authority.bundle_pem(),
        expires,
    })
}

/// The node the bearer token belongs to.
async fn authenticate(
    shared: &Shared,
    authority: &Authority,
    token: &str,
) -> Result<String, Refused> {
    match &shared.node_auth {
        NodeAuth::Token => authority
            .tokens
            .node_for(token)
            .map(str::to_owned)
            .ok_or_else(|| {
                Refused::new(
                    StatusCode::UNAUTHORIZED,
                    "unknown_token",
                    "the token belongs to no node",
                )
            }),
        NodeAuth::Kubernetes(kube) => kube
            .node_of(token)
            .await
            .map_err(|r| Refused::new(r.status, r.code, r.message)),
    }
}

fn scheduled_on(state: &MeshState, node: &str, id: &SpiffeId) -> bool {
    state
        .enrolled_on(node)
        .any(|w| w.key.namespace == id.namespace() && w.service_account == id.service_account())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then_some(token)
}

fn json(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| {
        br#"{"error":"internal","message":"the answer could not be encoded"}"#.to_vec()
    });
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{status}\n"))));
    *response.status_mut() = status;
    response
}
