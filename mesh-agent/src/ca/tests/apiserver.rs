//! A minimal stand-in for the Kubernetes API server: plain HTTP on loopback, answering only
//! `POST /apis/authentication.k8s.io/v1/tokenreviews` from a table of known tokens, and
//! recording every review it was asked for.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewStatus, UserInfo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::super::NODE_NAME_EXTRA;

const REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
/// A token for which the fake answers 500, as an API server in trouble would.
pub(super) const BROKEN: &str = "token-that-breaks-the-apiserver";

/// A review asked for: the token and the audiences requested.
pub(super) type Review = (String, Vec<String>);

#[derive(Default)]
struct Tables {
    known: Mutex<BTreeMap<String, TokenReviewStatus>>,
    /// Every review, in order.
    seen: Mutex<Vec<Review>>,
}

pub(super) struct ApiServer {
    pub(super) addr: SocketAddr,
    tables: Arc<Tables>,
    task: JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    pub(super) async fn start() -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tables = Arc::new(Tables::default());
        let shared = tables.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(shared.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        ApiServer { addr, tables, task }
    }

    /// A kube client of this server.
    pub(super) fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().expect("url");
        kube::Client::try_from(kube::Config::new(url)).expect("kube client")
    }

    /// `token` reviews as `status`.
    pub(super) fn know(&self, token: &str, status: TokenReviewStatus) {
        lock(&self.tables.known).insert(token.to_owned(), status);
    }

    pub(super) fn seen(&self) -> Vec<Review> {
        lock(&self.tables.seen).clone()
    }
}

/// What the API server says of a pod-bound projected token of `username` on `node`, valid for
/// `audience`.
pub(super) fn valid(username: &str, node: Option<&str>, audience: &str) -> TokenReviewStatus {
    let extra = node.map(|n| BTreeMap::from([(NODE_NAME_EXTRA.to_owned(), vec![n.to_owned()])]));
    TokenReviewStatus {
        authenticated: Some(true),
        audiences: Some(vec![audience.to_owned()]),
        user: Some(UserInfo {
            username: Some(username.to_owned()),
            extra,
            ..UserInfo::default()
        }),
        error: None,
    }
}

async fn answer(
    tables: Arc<Tables>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST || req.uri().path() != REVIEWS {
        return Ok(reply(StatusCode::NOT_FOUND, b"{}".to_vec()));
    }
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, b"{}".to_vec())),
    };
    let Ok(mut review) = serde_json::from_slice::<TokenReview>(&body) else {
        return Ok(reply(StatusCode::BAD_REQUEST, b"{}".to_vec()));
    };
    let token = review.spec.token.clone();
    lock(&tables.seen).push((
        token.clone(),
        review.spec.audiences.clone().unwrap_or_default(),
    ));
    if token == BROKEN {
        let status = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcd is gone","reason":"InternalError","code":500}"#;
        return Ok(reply(StatusCode::INTERNAL_SERVER_ERROR, status.to_vec()));
    }
    review.status = Some(
        lock(&tables.known)
            .get(&token)
            .cloned()
            .unwrap_or(TokenReviewStatus {
                authenticated: Some(false),
                error: Some("invalid bearer token".into()),
                ..TokenReviewStatus::default()
            }),
    );
    let bytes = serde_json::to_vec(&review).unwrap_or_default();
    Ok(reply(StatusCode::CREATED, bytes))
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
