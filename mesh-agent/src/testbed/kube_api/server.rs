//! The HTTP side of the fake API server: paths to resources, LIST, GET and TokenReviews,
//! answered from the [`Store`]; watches are streamed by [`super::stream`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::select::{Selector, query_pairs};
use super::store::{RESOURCES, ResourceId, Store, by_path};

pub(super) type Body = BoxBody<Bytes, Infallible>;

/// The user a TokenReview answers with for a known token.
#[derive(Clone, Debug)]
pub(super) struct Identity {
    pub username: String,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// A change was stored (`rv`), or every open watch must end (`epoch` moved).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Signal {
    pub rv: u64,
    pub epoch: u64,
}

pub(super) struct Shared {
    pub store: Mutex<Store>,
    pub signal: watch::Sender<Signal>,
    pub tokens: Mutex<HashMap<String, Identity>>,
    pub bookmark_every: Duration,
    /// BOOKMARK events sent, over all watches.
    pub bookmarks: AtomicU64,
    /// Resources answered with 404, as if their CRD were not installed.
    pub hidden: Mutex<HashSet<ResourceId>>,
    /// Every resource request received, for [`super::FakeApi::requests`].
    pub requests: Mutex<Vec<super::audit::ApiCall>>,
}

impl Shared {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn tokens(&self) -> MutexGuard<'_, HashMap<String, Identity>> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn hidden(&self) -> MutexGuard<'_, HashSet<ResourceId>> {
        self.hidden.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn requests(&self) -> MutexGuard<'_, Vec<super::audit::ApiCall>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a path names: a collection (in a namespace or all of them) or one object.
pub(super) struct Target {
    pub resource: ResourceId,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

pub(super) async fn respond(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default();
    if let Some(call) = super::audit::classify(req.method().as_str(), &path, query) {
        shared.requests().push(call);
    }
    if req.method() == Method::POST && path == "/apis/authentication.k8s.io/v1/tokenreviews" {
        return token_review(&shared, req).await;
    }
    if req.method() != Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only GET",
        );
    }
    let target = target(&path).filter(|t| !shared.hidden().contains(&t.resource));
    let Some(target) = target else {
        let message = format!("the server could not find the requested resource ({path})");
        return status(StatusCode::NOT_FOUND, "NotFound", &message);
    };
    let query = query_pairs(req.uri().query());
    let selector = match Selector::parse(&query) {
        Ok(s) => s,
        Err(reason) => return status(StatusCode::BAD_REQUEST, "BadRequest", &reason),
    };
    if let Some(name) = &target.name {
        return get(&shared, &target, name);
    }
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return super::stream::watch(shared, target, selector, &query);
    }
    list(&shared, &target, &selector)
}

/// `/api/v1/...` or `/apis/<group>/<version>/...`, then `<plural>[/<name>]` or
/// `namespaces/<ns>/<plural>[/<name>]`.
fn target(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        [plural] => (None, *plural, None),
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        [plural, name] => (None, *plural, Some(*name)),
        _ => return None,
    };
    let resource = by_path(group, version, plural)?;
    if namespace.is_some() && !RESOURCES[resource].namespaced {
        return None;
    }
    Some(Target {
        resource,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
    })
}

fn get(shared: &Shared, target: &Target, name: &str) -> Response<Body> {
    let namespace = target.namespace.as_deref().unwrap_or_default();
    match shared.store().get(target.resource, namespace, name) {
        Some(object) => json_response(StatusCode::OK, &object),
        None => {
            let kind = RESOURCES[target.resource].plural;
            let message = format!("{kind} \"{name}\" not found");
            status(StatusCode::NOT_FOUND, "NotFound", &message)
        }
    }
}

fn list(shared: &Shared, target: &Target, selector: &Selector) -> Response<Body> {
    let resource = &RESOURCES[target.resource];
    let (rv, objects) = shared
        .store()
        .list(target.resource, target.namespace.as_deref());
    let items: Vec<&Value> = objects
        .iter()
        .map(|o| &**o)
        .filter(|o| selector.matches(o))
        .collect();
    let body = json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    });
    json_response(StatusCode::OK, &body)
}

/// `TokenReview`: authenticated with the user set for the token, or not.
async fn token_review(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    };
    let review: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    };
    let token = review.pointer("/spec/token").and_then(Value::as_str);
    let audiences = review.pointer("/spec/audiences").cloned();
    let identity = token.and_then(|t| shared.tokens().get(t).cloned());
    let status = match identity {
        Some(id) => json!({
            "authenticated": true,
            "user": {"username": id.username, "extra": id.extra},
            "audiences": audiences,
        }),
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    let answer = json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": review.get("spec").cloned().unwrap_or(Value::Null),
        "status": status,
    });
    json_response(StatusCode::CREATED, &answer)
}

pub(super) fn status_value(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &status_value(code, reason, message))
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
