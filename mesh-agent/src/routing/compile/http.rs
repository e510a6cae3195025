//! HTTPRoute rules: matches, filters, backends, timeouts and retries.
//!
//! `spec.hostnames` is ignored, as GAMMA says for routes attached to a Service: the service
//! the client addressed already chose the routes.

use gateway_api::experimental::httproutes::{
    HttpRoute, HttpRouteRules, HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType,
    HttpRouteRulesMatchesMethod, HttpRouteRulesMatchesPathType,
    HttpRouteRulesMatchesQueryParamsType, HttpRouteRulesRetry, HttpRouteRulesTimeouts,
};
use http::Method;

use super::filters::{self, Level};
use super::refs::{self, ref_spec};
use super::{Ctx, RouteRetry, RuleDraft, checks};
use crate::routing::filters::{Filter, PathModifier};
use crate::routing::matching::{
    BytesMatch, HeaderMatch, PathMatch, QueryMatch, RequestMatch, TextMatch,
};
use crate::routing::model::{Backend, Timeouts};

/// Retries per request are capped; a budget still limits them per service.
const MAX_RETRY_ATTEMPTS: i64 = 10;

pub(super) fn rules(ctx: &mut Ctx<'_>, route: &HttpRoute) -> Vec<RuleDraft> {
    if route.spec.use_default_gateways.is_some() {
        let reason = "selects Gateways; a mesh route attaches through parentRefs only";
        ctx.problem("spec.useDefaultGateways", reason);
    }
    let rules = route.spec.rules.as_deref().unwrap_or_default();
    super::each_rule(ctx, rules, |r| r.name.as_deref(), rule_draft)
}

fn rule_draft(
    ctx: &mut Ctx<'_>,
    at: &str,
    index: usize,
    rule: &HttpRouteRules,
) -> Option<RuleDraft> {
    let before = ctx.count();
    if rule.session_persistence.is_some() {
        ctx.problem(
            format!("{at}.sessionPersistence"),
            "session persistence is not supported",
        );
    }
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
    // The prefix-rewrite check needs every match; a broken one is reported already.
    let matches_ok = ctx.count() == before;
    let specs = rule
        .filters
        .iter()
        .flatten()
        .map(filters::http_rule)
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
            .map(filters::http_backend)
            .collect();
        let filters = filters::filters(ctx, &format!("{at}.filters"), specs, Level::Backend);
        if matches_ok {
            prefix_rewrites_need_one_prefix(ctx, &at, &filters, &matches);
        }
        if let Some((service, port)) = target {
            backends.push(Backend {
                service,
                port,
                weight,
                filters,
            });
        }
    }
    if matches_ok {
        prefix_rewrites_need_one_prefix(ctx, at, &filters, &matches);
    }
    let timeouts = rule
        .timeouts
        .as_ref()
        .map(|t| timeouts(ctx, &format!("{at}.timeouts"), t))
        .unwrap_or_default();
    let retry = rule
        .retry
        .as_ref()
        .map(|r| retry(ctx, &format!("{at}.retry"), r));
    (ctx.count() == before).then(|| RuleDraft {
        name: rule.name.clone(),
        index,
        matches,
        filters,
        backends,
        timeouts,
        retry,
    })
}

/// `ReplacePrefixMatch` replaces what a `PathPrefix` matched, so the rule must have exactly one
/// match and it must be a `PathPrefix` (a rule without matches has the default `/` prefix).
fn prefix_rewrites_need_one_prefix(
    ctx: &mut Ctx<'_>,
    at: &str,
    filters: &[Filter],
    matches: &[RequestMatch],
) {
    let replaces_prefix = filters.iter().any(|f| {
        let path = match f {
            Filter::RequestRedirect(r) => r.path.as_ref(),
            Filter::UrlRewrite(r) => r.path.as_ref(),
            _ => None,
        };
        matches!(path, Some(PathModifier::ReplacePrefixMatch(_)))
    });
    let one_prefix = matches.len() == 1
        && matches
            .first()
            .is_some_and(|m| matches!(m.path, PathMatch::Prefix { .. }));
    if replaces_prefix && !one_prefix {
        let reason =
            "ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix";
        ctx.problem(format!("{at}.filters"), reason);
    }
}

fn request_match(ctx: &mut Ctx<'_>, at: &str, m: &HttpRouteRulesMatches) -> Option<RequestMatch> {
    let before = ctx.count();
    let path = match &m.path {
        None => Some(PathMatch::prefix("/")),
        Some(p) => {
            let value = p.value.as_deref().unwrap_or("/");
            let at = format!("{at}.path.value");
            match p
                .r#type
                .as_ref()
                .unwrap_or(&HttpRouteRulesMatchesPathType::PathPrefix)
            {
                HttpRouteRulesMatchesPathType::Exact => {
                    checks::match_path(ctx, &at, value).then(|| PathMatch::Exact(value.into()))
                }
                HttpRouteRulesMatchesPathType::PathPrefix => {
                    checks::match_path(ctx, &at, value).then(|| PathMatch::prefix(value))
                }
                HttpRouteRulesMatchesPathType::RegularExpression => {
                    checks::regex(ctx, &at, value).map(PathMatch::Regex)
                }
            }
        }
    };
    let headers = m.headers.as_deref().unwrap_or_default();
    checks::limit(ctx, &format!("{at}.headers"), headers.len(), 16);
    let mut header_matches: Vec<HeaderMatch> = Vec::new();
    for (k, h) in headers.iter().enumerate() {
        let regex = matches!(
            h.r#type,
            Some(HttpRouteRulesMatchesHeadersType::RegularExpression)
        );
        let at = format!("{at}.headers[{k}]");
        if let Some(hm) = header_match(ctx, &at, &h.name, regex, &h.value)
            && !header_matches.iter().any(|x| x.name == hm.name)
        {
            header_matches.push(hm);
        }
    }
    let params = m.query_params.as_deref().unwrap_or_default();
    checks::limit(ctx, &format!("{at}.queryParams"), params.len(), 16);
    let mut query: Vec<QueryMatch> = Vec::new();
    for (k, q) in params.iter().enumerate() {
        let at = format!("{at}.queryParams[{k}]");
        if q.name.is_empty() || q.name.len() > 256 {
            ctx.problem(format!("{at}.name"), "must be 1-256 characters");
            continue;
        }
        let value = match q.r#type {
            Some(HttpRouteRulesMatchesQueryParamsType::RegularExpression) => {
                checks::regex(ctx, &format!("{at}.value"), &q.value).map(TextMatch::Regex)
            }
            _ => Some(TextMatch::Exact(q.value.as_str().into())),
        };
        // Only the first condition on a name counts, as the spec says.
        if let Some(value) = value
            && !query.iter().any(|x| *x.name == *q.name)
        {
            query.push(QueryMatch {
                name: q.name.as_str().into(),
                value,
            });
        }
    }
    let method = m.method.as_ref().map(method);
    (ctx.count() == before).then_some(RequestMatch {
        path: path?,
        method,
        headers: header_matches,
        query,
    })
}

/// A header condition (HTTPRoute and GRPCRoute alike); a later condition on the same name is
/// dropped by the caller, as the spec says.
pub(super) fn header_match(
    ctx: &mut Ctx<'_>,
    at: &str,
    name: &str,
    regex: bool,
    value: &str,
) -> Option<HeaderMatch> {
    let name = checks::header_name(ctx, &format!("{at}.name"), name)?;
    let value = if regex {
        BytesMatch::Regex(checks::bytes_regex(ctx, &format!("{at}.value"), value)?)
    } else {
        BytesMatch::Exact(value.as_bytes().into())
    };
    Some(HeaderMatch { name, value })
}

fn method(m: &HttpRouteRulesMatchesMethod) -> Method {
    match m {
        HttpRouteRulesMatchesMethod::Get => Method::GET,
        HttpRouteRulesMatchesMethod::Head => Method::HEAD,
        HttpRouteRulesMatchesMethod::Post => Method::POST,
        HttpRouteRulesMatchesMethod::Put => Method::PUT,
        HttpRouteRulesMatchesMethod::Delete => Method::DELETE,
        HttpRouteRulesMatchesMethod::Connect => Method::CONNECT,
        HttpRouteRulesMatchesMethod::Options => Method::OPTIONS,
        HttpRouteRulesMatchesMethod::Trace => Method::TRACE,
        HttpRouteRulesMatchesMethod::Patch => Method::PATCH,
    }
}

/// `0s` turns a timeout off; a backend request may not outlast the whole request.
fn timeouts(ctx: &mut Ctx<'_>, at: &str, t: &HttpRouteRulesTimeouts) -> Timeouts {
    let mut parse = |field: &str, text: &Option<String>| {
        let d = text
            .as_deref()
            .and_then(|text| checks::duration(ctx, &format!("{at}.{field}"), text));
        d.filter(|d| !d.is_zero())
    };
    let request = parse("request", &t.request);
    let backend_request = parse("backendRequest", &t.backend_request);
    if let (Some(request), Some(backend)) = (request, backend_request)
        && backend > request
    {
        let reason = "may not be longer than the request timeout";
        ctx.problem(format!("{at}.backendRequest"), reason);
    }
    Timeouts {
        request,
        backend_request,
    }
}

fn retry(ctx: &mut Ctx<'_>, at: &str, r: &HttpRouteRulesRetry) -> RouteRetry {
    let attempts = r.attempts.and_then(|n| match u32::try_from(n) {
        Ok(n) if i64::from(n) <= MAX_RETRY_ATTEMPTS => Some(n),
        _ => {
            let reason = format!("{n} is not 0-{MAX_RETRY_ATTEMPTS}");
            ctx.problem(format!("{at}.attempts"), reason);
            None
        }
    });
    let mut codes = Vec::new();
    for (k, code) in r.codes.iter().flatten().enumerate() {
        match u16::try_from(*code) {
            Ok(c) if (400..=599).contains(&c) => {
                if !codes.contains(&c) {
                    codes.push(c);
                }
            }
            _ => {
                let reason = format!("{code} is not a status code from 400 to 599");
                ctx.problem(format!("{at}.codes[{k}]"), reason);
            }
        }
    }
    codes.sort_unstable();
    let backoff = r
        .backoff
        .as_deref()
        .and_then(|text| checks::duration(ctx, &format!("{at}.backoff"), text));
    RouteRetry {
        attempts,
        codes,
        backoff,
    }
}
