//! The fake API server's request log, in RBAC terms: each request the server received as the
//! (verb, API group, resource) an authorizer would check, so a test can compare what a
//! component really calls with the roles it is granted.

use std::collections::BTreeSet;

/// One request as an RBAC authorizer sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiCall {
    /// `get`, `list`, `watch`, `create`, ... (the HTTP method for anything else).
    pub verb: String,
    /// `""` for the core group.
    pub group: String,
    /// The plural, e.g. `pods`, `tokenreviews`.
    pub resource: String,
}

/// The request for `method` on `path?query`, or `None` for a non-resource path (`/version`).
pub fn classify(method: &str, path: &str, query: &str) -> Option<ApiCall> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (resource, named) = match rest {
        [plural] | ["namespaces", _, plural] => (*plural, false),
        [plural, _] | ["namespaces", _, plural, _] => (*plural, true),
        _ => return None,
    };
    let watching = query
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1");
    let verb = match (method, named) {
        ("GET", _) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => other,
    };
    Some(ApiCall {
        verb: verb.to_ascii_lowercase(),
        group: group.to_string(),
        resource: resource.to_string(),
    })
}

/// The distinct calls of a log.
pub fn distinct(calls: &[ApiCall]) -> BTreeSet<ApiCall> {
    calls.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(verb: &str, group: &str, resource: &str) -> Option<ApiCall> {
        Some(ApiCall {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
        })
    }

    #[test]
    fn paths_and_methods_map_to_rbac_verbs() {
        assert_eq!(
            classify("GET", "/api/v1/pods", ""),
            call("list", "", "pods")
        );
        assert_eq!(
            classify(
                "GET",
                "/api/v1/namespaces/shop/pods",
                "watch=true&resourceVersion=3"
            ),
            call("watch", "", "pods")
        );
        assert_eq!(
            classify("GET", "/api/v1/namespaces/shop/pods/web-0", ""),
            call("get", "", "pods")
        );
        assert_eq!(
            classify("POST", "/apis/authentication.k8s.io/v1/tokenreviews", ""),
            call("create", "authentication.k8s.io", "tokenreviews")
        );
        assert_eq!(classify("GET", "/version", ""), None);
    }
}
