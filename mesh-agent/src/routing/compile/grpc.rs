//! GRPCRoute rules: method and header matches, filters and backends.
//!
//! A gRPC method is the request path `/<service>/<method>`, so a method match becomes a path
//! condition and the rule shares everything else with HTTPRoute rules. GRPCRoute has no
//! timeouts or retries of its own: the service's traffic policy applies.

use gateway_api::grpcroutes::{
    GrpcRoute, GrpcRouteRules, GrpcRouteRulesMatches, GrpcRouteRulesMatchesHeadersType,
    GrpcRouteRulesMatchesMethod, GrpcRouteRulesMatchesMethodType,
};

use super::filters::{self, Level};
use super::http::header_match;
use super::refs::{self, ref_spec};
use super::{Ctx, RuleDraft, checks};
use crate::routing::matching::{HeaderMatch, PathMatch, RequestMatch};
use crate::routing::model::{Backend, Timeouts};

pub(super) fn rules(ctx: &mut Ctx<'_>, route: &GrpcRoute) -> Vec<RuleDraft> {
    let rules = route.spec.rules.as_deref().unwrap_or_default();
    super::each_rule(ctx, rules, |r| r.name.as_deref(), rule_draft)
}

fn rule_draft(
    ctx: &mut Ctx<'_>,
    at: &str,
    index: usize,
    rule: &GrpcRouteRules,
) -> Option<RuleDraft> {
    let before = ctx.count();
    let written = rule.matches.as_deref().unwrap_or_default();
    checks::limit(ctx, &format!("{at}.matches"), written.len(), 64);
    let mut matches: Vec<RequestMatch> = written
        .iter()
        .enumerate()
        .filter_map(|(j, m)| request_match(ctx, &format!("{at}.matches[{j}]"), m))
        .collect();
    if written.is_empty() {
        matches.push(RequestMatch::everything());
    }
    let specs = rule
        .filters
        .iter()
        .flatten()
        .map(filters::grpc_rule)
        .collect();
    let filters = filters::filters(ctx, &format!("{at}.filters"), specs, Level::Rule);
    let refs = rule.backend_refs.as_deref().unwrap_or_default();
    checks::limit(ctx, &format!("{at}.backendRefs"), refs.len(), 16);
    let mut backends = Vec::new();
    for (j, r) in refs.iter().enumerate() {
        let at = format!("{at}.backendRefs[{j}]");
        let target = refs::service_port(ctx, &at, ref_spec!(r));
        let weight = refs::weight(ctx, &at, r.weight);
        let specs = r
            .filters
            .iter()
            .flatten()
            .map(filters::grpc_backend)
            .collect();
        let filters = filters::filters(ctx, &format!("{at}.filters"), specs, Level::Backend);
        if let Some((service, port)) = target {
            backends.push(Backend {
                service,
                port,
                weight,
                filters,
            });
        }
    }
    (ctx.count() == before).then(|| RuleDraft {
        name: rule.name.clone(),
        index,
        matches,
        filters,
        backends,
        timeouts: Timeouts::default(),
        retry: None,
    })
}

fn request_match(ctx: &mut Ctx<'_>, at: &str, m: &GrpcRouteRulesMatches) -> Option<RequestMatch> {
    let before = ctx.count();
    let path = match &m.method {
        None => Some(PathMatch::prefix("/")),
        Some(method) => method_match(ctx, &format!("{at}.method"), method),
    };
    let headers = m.headers.as_deref().unwrap_or_default();
    checks::limit(ctx, &format!("{at}.headers"), headers.len(), 16);
    let mut header_matches: Vec<HeaderMatch> = Vec::new();
    for (k, h) in headers.iter().enumerate() {
        let regex = matches!(
            h.r#type,
            Some(GrpcRouteRulesMatchesHeadersType::RegularExpression)
        );
        let at = format!("{at}.headers[{k}]");
        if let Some(hm) = header_match(ctx, &at, &h.name, regex, &h.value)
            && !header_matches.iter().any(|x| x.name == hm.name)
        {
            header_matches.push(hm);
        }
    }
    (ctx.count() == before).then_some(RequestMatch {
        path: path?,
        method: None,
        headers: header_matches,
        query: Vec::new(),
    })
}

fn method_match(ctx: &mut Ctx<'_>, at: &str, m: &GrpcRouteRulesMatchesMethod) -> Option<PathMatch> {
    let service = m.service.as_deref().filter(|s| !s.is_empty());
    let method = m.method.as_deref().filter(|s| !s.is_empty());
    if service.is_none() && method.is_none() {
        ctx.problem(at, "set `service`, `method` or both");
        return None;
    }
    match m
        .r#type
        .as_ref()
        .unwrap_or(&GrpcRouteRulesMatchesMethodType::Exact)
    {
        GrpcRouteRulesMatchesMethodType::Exact => {
            let before = ctx.count();
            if let Some(s) = service.filter(|s| !grpc_service_name(s)) {
                let reason = format!("`{s}` is not a gRPC service name (such as shop.v1.Cart)");
                ctx.problem(format!("{at}.service"), reason);
            }
            if let Some(name) = method.filter(|name| !grpc_method_name(name)) {
                let reason = format!("`{name}` is not a gRPC method name (such as GetItem)");
                ctx.problem(format!("{at}.method"), reason);
            }
            (ctx.count() == before).then(|| PathMatch::GrpcMethod {
                // The path never starts the service with the optional leading '.'.
                service: service.map(|s| s.trim_start_matches('.').into()),
                method: method.map(Into::into),
            })
        }
        GrpcRouteRulesMatchesMethodType::RegularExpression => {
            let before = ctx.count();
            for (field, part) in [("service", service), ("method", method)] {
                if let Some(part) = part {
                    checks::regex(ctx, &format!("{at}.{field}"), part);
                }
            }
            if ctx.count() > before {
                return None;
            }
            let pattern = format!(
                "/(?:{})/(?:{})",
                service.unwrap_or("[^/]+"),
                method.unwrap_or("[^/]+")
            );
            checks::regex(ctx, at, &pattern).map(PathMatch::Regex)
        }
    }
}

/// The schema's `^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`.
fn grpc_service_name(name: &str) -> bool {
    let name = name.strip_prefix('.').unwrap_or(name);
    name.len() <= 1024 && name.split('.').all(grpc_method_name)
}

/// The schema's `^[A-Za-z_][A-Za-z_0-9]*$`.
fn grpc_method_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_names() {
        assert!(grpc_service_name("shop.v1.Cart"));
        assert!(grpc_service_name(".grpc.health.v1.Health"));
        assert!(grpc_service_name("Echo"));
        assert!(!grpc_service_name("shop..Cart"));
        assert!(!grpc_service_name("shop/Cart"));
        assert!(grpc_method_name("Get_Item2"));
        assert!(!grpc_method_name("2Get"));
        assert!(!grpc_method_name(""));
    }
}
