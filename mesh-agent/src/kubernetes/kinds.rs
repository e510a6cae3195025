//! The kinds the source watches, as metric labels and API resources.

use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::grpcroutes::GrpcRoute;
use kube::api::ApiResource;
use kube::core::GroupVersionKind;

use crate::policy::spec::{API_GROUP, API_VERSION};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    HttpRoute,
    GrpcRoute,
    AuthorizationPolicy,
    PeerAuthentication,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Namespace,
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::HttpRoute,
        Kind::GrpcRoute,
        Kind::AuthorizationPolicy,
        Kind::PeerAuthentication,
    ];

    /// The Kubernetes kind, also the `kind` label of the metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::HttpRoute => "HTTPRoute",
            Kind::GrpcRoute => "GRPCRoute",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::PeerAuthentication => "PeerAuthentication",
        }
    }

    /// The API resource of the kinds watched as dynamic objects (decoded per object, so that
    /// one object the types cannot read does not fail the whole list).
    pub(super) fn dynamic_resource(self) -> Option<ApiResource> {
        let weft = |kind: &str, plural: &str| {
            let gvk = GroupVersionKind::gvk(API_GROUP, API_VERSION, kind);
            ApiResource::from_gvk_with_plural(&gvk, plural)
        };
        match self {
            Kind::HttpRoute => Some(ApiResource::erase::<HttpRoute>(&())),
            Kind::GrpcRoute => Some(ApiResource::erase::<GrpcRoute>(&())),
            Kind::AuthorizationPolicy => Some(weft("AuthorizationPolicy", "authorizationpolicies")),
            Kind::PeerAuthentication => Some(weft("PeerAuthentication", "peerauthentications")),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
