//! Which node is asking: the CA's two ways to authenticate the bearer token of a certificate
//! request, before `api` checks that the requested identity is scheduled on that node.
//!
//! - [`NodeAuth::Token`] (local mode): the token is a bootstrap token from `ca node-token`,
//!   looked up in `nodes.yaml` (`authority`).
//! - [`NodeAuth::Kubernetes`] (cluster mode): the token is the agent pod's projected
//!   service-account token. The CA asks the API server (TokenReview, with its audience) and
//!   accepts it only when it is authenticated for that audience, belongs to the agents'
//!   service account, and is bound to a pod whose node the token names (the
//!   `authentication.kubernetes.io/node-name` extra, Kubernetes ≥ 1.30).

use std::fmt;
use std::time::Duration;

use hyper::StatusCode;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::Api;
use kube::api::PostParams;

/// The audience agents request for their projected token (and the CA asks TokenReview for).
pub const DEFAULT_AUDIENCE: &str = "weft-ca";
/// The user name of the agents' service account (`weft-agent` in `weft-system`).
pub const DEFAULT_AGENT_USERNAME: &str = "system:serviceaccount:weft-system:weft-agent";
/// The TokenReview extra naming the node of the pod the token is bound to.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";
/// A TokenReview taking longer is a failure (the agent retries with backoff).
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);

/// How `ca serve` authenticates nodes.
#[derive(Clone, Debug)]
pub enum NodeAuth {
    /// Bootstrap tokens from `ca init --node` / `ca node-token`.
    Token,
    /// Projected service-account tokens, checked with TokenReview.
    Kubernetes(KubernetesAuth),
}

/// The TokenReview check: the API server to ask, and what the review must say.
#[derive(Clone)]
pub struct KubernetesAuth {
    pub client: kube::Client,
    /// Asked for in the review and required in its answer.
    pub audience: String,
    /// The only user accepted, `system:serviceaccount:<namespace>:<name>`.
    pub username: String,
}

impl fmt::Debug for KubernetesAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesAuth")
            .field("audience", &self.audience)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a token names no node: the answer's status, the metric reason and a message.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct AuthRefusal {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl AuthRefusal {
    fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        AuthRefusal {
            status,
            code,
            message,
        }
    }
}

impl KubernetesAuth {
    /// The node `token` was issued for, after a TokenReview.
    pub(super) async fn node_of(&self, token: &str) -> Result<String, AuthRefusal> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                audiences: Some(vec![self.audience.clone()]),
                token: token.to_owned(),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let failed = |why: String| {
            AuthRefusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "token_review_failed",
                format!("TokenReview: {why}"),
            )
        };
        let answer =
            tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review))
                .await
                .map_err(|_| failed(format!("no answer within {REVIEW_TIMEOUT:?}")))?
                .map_err(|e| failed(e.to_string()))?;
        let status = answer
            .status
            .ok_or_else(|| failed("the answer has no status".into()))?;
        node_from_review(&status, &self.audience, &self.username)
    }
}

/// What a TokenReview status must say for the CA to trust the token, and the node it names.
pub(super) fn node_from_review(
    status: &TokenReviewStatus,
    audience: &str,
    username: &str,
) -> Result<String, AuthRefusal> {
    let refuse = AuthRefusal::new;
    if status.authenticated != Some(true) {
        let why = status.error.as_deref().unwrap_or("no reason given");
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "token_rejected",
            format!("the API server did not authenticate the token: {why}"),
        ));
    }
    // An authenticator that ignores audiences answers none: the token would then be one for
    // the API server itself, not for the CA.
    let audiences = status.audiences.as_deref().unwrap_or_default();
    if !audiences.iter().any(|a| a == audience) {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "wrong_audience",
            format!("the token is not valid for audience {audience:?} (valid for {audiences:?})"),
        ));
    }
    let user = status.user.as_ref();
    let who = user.and_then(|u| u.username.as_deref()).unwrap_or_default();
    if who != username {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "wrong_account",
            format!("the token belongs to {who:?}, not to {username:?}"),
        ));
    }
    let nodes = user
        .and_then(|u| u.extra.as_ref())
        .and_then(|extra| extra.get(NODE_NAME_EXTRA))
        .map(Vec::as_slice)
        .unwrap_or_default();
    match nodes {
        [node] if !node.is_empty() => Ok(node.clone()),
        _ => Err(refuse(
            StatusCode::FORBIDDEN,
            "no_node_name",
            format!(
                "the token names no single node ({NODE_NAME_EXTRA}: {nodes:?}); \
                 a pod-bound projected token is required (Kubernetes >= 1.30)"
            ),
        )),
    }
}
