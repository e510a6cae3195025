//! The four generated filter types (HTTPRoute and GRPCRoute, rule and backend level) differ
//! only in their names: each is borrowed here into one [`Spec`], which `filters` then checks and
//! converts once.

use gateway_api::experimental::httproutes::{
    HttpRouteRulesBackendRefsFilters, HttpRouteRulesBackendRefsFiltersRequestRedirectPathType,
    HttpRouteRulesBackendRefsFiltersRequestRedirectScheme, HttpRouteRulesBackendRefsFiltersType,
    HttpRouteRulesBackendRefsFiltersUrlRewritePathType, HttpRouteRulesFilters,
    HttpRouteRulesFiltersRequestRedirectPathType, HttpRouteRulesFiltersRequestRedirectScheme,
    HttpRouteRulesFiltersType, HttpRouteRulesFiltersUrlRewritePathType,
};
use gateway_api::grpcroutes::{
    GrpcRouteRulesBackendRefsFilters, GrpcRouteRulesBackendRefsFiltersType, GrpcRouteRulesFilters,
    GrpcRouteRulesFiltersType,
};

use super::refs::{RefSpec, ref_spec};
use crate::routing::filters::Scheme;

/// One filter, borrowed from its generated type.
pub(super) struct Spec<'a> {
    pub type_name: &'static str,
    /// The field `type_name` requires.
    pub field: &'static str,
    /// `None`: that field is missing.
    pub body: Option<Body<'a>>,
    /// Fields set besides `field`.
    pub others: Vec<&'static str>,
}

pub(super) enum Body<'a> {
    RequestHeaders(HeaderMods<'a>),
    ResponseHeaders(HeaderMods<'a>),
    Redirect(RedirectSpec<'a>),
    Rewrite(RewriteSpec<'a>),
    Mirror(MirrorSpec<'a>),
    Unsupported,
}

pub(super) struct HeaderMods<'a> {
    pub set: Vec<(&'a str, &'a str)>,
    pub add: Vec<(&'a str, &'a str)>,
    pub remove: Vec<&'a str>,
}

pub(super) struct RedirectSpec<'a> {
    pub scheme: Option<Scheme>,
    pub hostname: Option<&'a str>,
    pub path: Option<PathSpec<'a>>,
    pub port: Option<i32>,
    pub status: Option<i64>,
}

pub(super) struct RewriteSpec<'a> {
    pub hostname: Option<&'a str>,
    pub path: Option<PathSpec<'a>>,
}

pub(super) struct PathSpec<'a> {
    pub full: bool,
    pub replace_full_path: Option<&'a str>,
    pub replace_prefix_match: Option<&'a str>,
}

pub(super) struct MirrorSpec<'a> {
    pub backend: RefSpec<'a>,
    pub percent: Option<i32>,
    pub fraction: Option<(i32, Option<i32>)>,
}

macro_rules! headers {
    ($m:expr) => {
        HeaderMods {
            set: $m
                .set
                .iter()
                .flatten()
                .map(|h| (h.name.as_str(), h.value.as_str()))
                .collect(),
            add: $m
                .add
                .iter()
                .flatten()
                .map(|h| (h.name.as_str(), h.value.as_str()))
                .collect(),
            remove: $m.remove.iter().flatten().map(String::as_str).collect(),
        }
    };
}

macro_rules! mirror {
    ($m:expr) => {
        MirrorSpec {
            backend: ref_spec!($m.backend_ref),
            percent: $m.percent,
            fraction: $m.fraction.as_ref().map(|f| (f.numerator, f.denominator)),
        }
    };
}

macro_rules! path_spec {
    ($p:expr, $ty:ident) => {
        PathSpec {
            full: matches!($p.r#type, $ty::ReplaceFullPath),
            replace_full_path: $p.replace_full_path.as_deref(),
            replace_prefix_match: $p.replace_prefix_match.as_deref(),
        }
    };
}

/// The HTTPRoute filter types (rule and backend level), which differ only in their names.
macro_rules! http_spec {
    ($f:expr, $kind:ident, $scheme:ident, $redirect_path:ident, $rewrite_path:ident) => {{
        let f = $f;
        let set = [
            ("requestHeaderModifier", f.request_header_modifier.is_some()),
            (
                "responseHeaderModifier",
                f.response_header_modifier.is_some(),
            ),
            ("requestRedirect", f.request_redirect.is_some()),
            ("urlRewrite", f.url_rewrite.is_some()),
            ("requestMirror", f.request_mirror.is_some()),
            ("extensionRef", f.extension_ref.is_some()),
            ("cors", f.cors.is_some()),
            ("externalAuth", f.external_auth.is_some()),
        ];
        let (type_name, field, body) = match f.r#type {
            $kind::RequestHeaderModifier => (
                "RequestHeaderModifier",
                "requestHeaderModifier",
                f.request_header_modifier
                    .as_ref()
                    .map(|m| Body::RequestHeaders(headers!(m))),
            ),
            $kind::ResponseHeaderModifier => (
                "ResponseHeaderModifier",
                "responseHeaderModifier",
                f.response_header_modifier
                    .as_ref()
                    .map(|m| Body::ResponseHeaders(headers!(m))),
            ),
            $kind::RequestRedirect => (
                "RequestRedirect",
                "requestRedirect",
                f.request_redirect.as_ref().map(|r| {
                    Body::Redirect(RedirectSpec {
                        scheme: r.scheme.as_ref().map(|s| match s {
                            $scheme::Http => Scheme::Http,
                            $scheme::Https => Scheme::Https,
                        }),
                        hostname: r.hostname.as_deref(),
                        path: r.path.as_ref().map(|p| path_spec!(p, $redirect_path)),
                        port: r.port,
                        status: r.status_code,
                    })
                }),
            ),
            $kind::UrlRewrite => (
                "URLRewrite",
                "urlRewrite",
                f.url_rewrite.as_ref().map(|r| {
                    Body::Rewrite(RewriteSpec {
                        hostname: r.hostname.as_deref(),
                        path: r.path.as_ref().map(|p| path_spec!(p, $rewrite_path)),
                    })
                }),
            ),
            $kind::RequestMirror => (
                "RequestMirror",
                "requestMirror",
                f.request_mirror.as_ref().map(|m| Body::Mirror(mirror!(m))),
            ),
            $kind::ExtensionRef => ("ExtensionRef", "extensionRef", Some(Body::Unsupported)),
            $kind::Cors => ("CORS", "cors", Some(Body::Unsupported)),
            $kind::ExternalAuth => ("ExternalAuth", "externalAuth", Some(Body::Unsupported)),
        };
        Spec::new(type_name, field, body, &set)
    }};
}

/// The GRPCRoute filter types (rule and backend level).
macro_rules! grpc_spec {
    ($f:expr, $kind:ident) => {{
        let f = $f;
        let set = [
            ("requestHeaderModifier", f.request_header_modifier.is_some()),
            (
                "responseHeaderModifier",
                f.response_header_modifier.is_some(),
            ),
            ("requestMirror", f.request_mirror.is_some()),
            ("extensionRef", f.extension_ref.is_some()),
        ];
        let (type_name, field, body) = match f.r#type {
            $kind::RequestHeaderModifier => (
                "RequestHeaderModifier",
                "requestHeaderModifier",
                f.request_header_modifier
                    .as_ref()
                    .map(|m| Body::RequestHeaders(headers!(m))),
            ),
            $kind::ResponseHeaderModifier => (
                "ResponseHeaderModifier",
                "responseHeaderModifier",
                f.response_header_modifier
                    .as_ref()
                    .map(|m| Body::ResponseHeaders(headers!(m))),
            ),
            $kind::RequestMirror => (
                "RequestMirror",
                "requestMirror",
                f.request_mirror.as_ref().map(|m| Body::Mirror(mirror!(m))),
            ),
            $kind::ExtensionRef => ("ExtensionRef", "extensionRef", Some(Body::Unsupported)),
        };
        Spec::new(type_name, field, body, &set)
    }};
}

pub(super) fn http_rule(f: &HttpRouteRulesFilters) -> Spec<'_> {
    http_spec!(
        f,
        HttpRouteRulesFiltersType,
        HttpRouteRulesFiltersRequestRedirectScheme,
        HttpRouteRulesFiltersRequestRedirectPathType,
        HttpRouteRulesFiltersUrlRewritePathType
    )
}

pub(super) fn http_backend(f: &HttpRouteRulesBackendRefsFilters) -> Spec<'_> {
    http_spec!(
        f,
        HttpRouteRulesBackendRefsFiltersType,
        HttpRouteRulesBackendRefsFiltersRequestRedirectScheme,
        HttpRouteRulesBackendRefsFiltersRequestRedirectPathType,
        HttpRouteRulesBackendRefsFiltersUrlRewritePathType
    )
}

pub(super) fn grpc_rule(f: &GrpcRouteRulesFilters) -> Spec<'_> {
    grpc_spec!(f, GrpcRouteRulesFiltersType)
}

pub(super) fn grpc_backend(f: &GrpcRouteRulesBackendRefsFilters) -> Spec<'_> {
    grpc_spec!(f, GrpcRouteRulesBackendRefsFiltersType)
}

impl<'a> Spec<'a> {
    fn new(
        type_name: &'static str,
        field: &'static str,
        body: Option<Body<'a>>,
        set: &[(&'static str, bool)],
    ) -> Spec<'a> {
        let others = set
            .iter()
            .filter(|(name, is_set)| *is_set && *name != field)
            .map(|(name, _)| *name)
            .collect();
        Spec {
            type_name,
            field,
            body,
            others,
        }
    }
}
