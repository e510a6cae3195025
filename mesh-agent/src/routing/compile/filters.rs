//! Route filters: each [`Spec`] (borrowed by `filter_spec` from whichever generated type
//! carried it) checked and converted to a [`Filter`].
//!
//! The `type` names the one field that is set, the filters that may appear once appear once,
//! `RequestRedirect` and `URLRewrite` are not combined, a backend does not redirect, and the
//! values are valid. `ExtensionRef`, `CORS` and `ExternalAuth` are refused as unsupported.

use http::StatusCode;

use super::Ctx;
use super::checks;
use super::filter_spec::{Body, HeaderMods, MirrorSpec, PathSpec, RedirectSpec, RewriteSpec, Spec};
use super::refs;
use crate::routing::filters::{Filter, HeaderModifier, Mirror, PathModifier, Redirect, UrlRewrite};

pub(super) use super::filter_spec::{grpc_backend, grpc_rule, http_backend, http_rule};

/// Where the filters sit: a backend's filters run only for that backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Level {
    Rule,
    Backend,
}

/// Checks and converts the filters of one rule or backend; `at` is the list's path.
pub(super) fn filters(
    ctx: &mut Ctx<'_>,
    at: &str,
    specs: Vec<Spec<'_>>,
    level: Level,
) -> Vec<Filter> {
    checks::limit(ctx, at, specs.len(), 16);
    let mut out = Vec::new();
    let mut seen: Vec<&'static str> = Vec::new();
    for (j, spec) in specs.into_iter().enumerate() {
        let at = format!("{at}[{j}]");
        for other in &spec.others {
            let reason = format!("must not be set in a filter of type {}", spec.type_name);
            ctx.problem(format!("{at}.{other}"), reason);
        }
        let once = matches!(
            spec.type_name,
            "RequestHeaderModifier" | "ResponseHeaderModifier" | "RequestRedirect" | "URLRewrite"
        );
        if once && seen.contains(&spec.type_name) {
            let reason = format!("a second {} filter; at most one is allowed", spec.type_name);
            ctx.problem(format!("{at}.type"), reason);
        }
        let clash = match spec.type_name {
            "RequestRedirect" => Some("URLRewrite"),
            "URLRewrite" => Some("RequestRedirect"),
            _ => None,
        };
        if let Some(other) = clash.filter(|o| seen.contains(o)) {
            let reason = format!("{} cannot be combined with {other}", spec.type_name);
            ctx.problem(format!("{at}.type"), reason);
        }
        seen.push(spec.type_name);
        if level == Level::Backend && spec.type_name == "RequestRedirect" {
            let reason = "a backend's filters cannot redirect; put RequestRedirect on the rule";
            ctx.problem(format!("{at}.type"), reason);
            continue;
        }
        let Some(body) = spec.body else {
            let reason = format!("a filter of type {} needs `{}`", spec.type_name, spec.field);
            ctx.problem(at, reason);
            continue;
        };
        if let Some(filter) = filter(ctx, &at, spec.field, body, spec.type_name) {
            out.push(filter);
        }
    }
    out
}

fn filter(
    ctx: &mut Ctx<'_>,
    at: &str,
    field: &str,
    body: Body<'_>,
    type_name: &str,
) -> Option<Filter> {
    let at = format!("{at}.{field}");
    let before = ctx.count();
    let filter = match body {
        Body::RequestHeaders(m) => Filter::RequestHeaderModifier(header_modifier(ctx, &at, &m)),
        Body::ResponseHeaders(m) => Filter::ResponseHeaderModifier(header_modifier(ctx, &at, &m)),
        Body::Redirect(r) => Filter::RequestRedirect(redirect(ctx, &at, &r)?),
        Body::Rewrite(r) => Filter::UrlRewrite(rewrite(ctx, &at, &r)?),
        Body::Mirror(m) => Filter::RequestMirror(mirror(ctx, &at, &m)?),
        Body::Unsupported => {
            let reason = format!("{type_name} filters are not supported");
            ctx.problem(at, reason);
            return None;
        }
    };
    (ctx.count() == before).then_some(filter)
}

fn header_modifier(ctx: &mut Ctx<'_>, at: &str, m: &HeaderMods<'_>) -> HeaderModifier {
    let mut out = HeaderModifier::default();
    for (list, entries, into) in [("set", &m.set, &mut out.set), ("add", &m.add, &mut out.add)] {
        checks::limit(ctx, &format!("{at}.{list}"), entries.len(), 16);
        for (k, (name, value)) in entries.iter().enumerate() {
            let at = format!("{at}.{list}[{k}]");
            let name = checks::header_name(ctx, &format!("{at}.name"), name);
            let value = checks::header_value(ctx, &format!("{at}.value"), value);
            let (Some(name), Some(value)) = (name, value) else {
                continue;
            };
            if into.iter().any(|(n, _)| *n == name) {
                ctx.problem(format!("{at}.name"), format!("`{name}` is listed twice"));
                continue;
            }
            into.push((name, value));
        }
    }
    checks::limit(ctx, &format!("{at}.remove"), m.remove.len(), 16);
    for (k, name) in m.remove.iter().enumerate() {
        let at = format!("{at}.remove[{k}]");
        let Some(name) = checks::header_name(ctx, &at, name) else {
            continue;
        };
        if out.remove.contains(&name) {
            ctx.problem(at, format!("`{name}` is listed twice"));
            continue;
        }
        out.remove.push(name);
    }
    out
}

fn redirect(ctx: &mut Ctx<'_>, at: &str, r: &RedirectSpec<'_>) -> Option<Redirect> {
    if let Some(host) = r.hostname {
        checks::hostname(ctx, &format!("{at}.hostname"), host);
    }
    let port = match r.port {
        None => None,
        Some(n) => match u16::try_from(n) {
            Ok(port) if port != 0 => Some(port),
            _ => {
                ctx.problem(format!("{at}.port"), format!("{n} is not a port (1-65535)"));
                None
            }
        },
    };
    let status = match r.status.unwrap_or(302) {
        code @ (301 | 302 | 303 | 307 | 308) => u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok()),
        code => {
            let reason = format!("{code} is not a redirect status (301, 302, 303, 307, 308)");
            ctx.problem(format!("{at}.statusCode"), reason);
            None
        }
    };
    let path = r
        .path
        .as_ref()
        .and_then(|p| path_modifier(ctx, &format!("{at}.path"), p));
    Some(Redirect {
        scheme: r.scheme,
        hostname: r.hostname.map(str::to_string),
        path,
        port,
        status: status?,
    })
}

fn rewrite(ctx: &mut Ctx<'_>, at: &str, r: &RewriteSpec<'_>) -> Option<UrlRewrite> {
    let hostname = match r.hostname {
        Some(host) if checks::hostname(ctx, &format!("{at}.hostname"), host) => {
            checks::header_value(ctx, &format!("{at}.hostname"), host)
        }
        _ => None,
    };
    let path = r
        .path
        .as_ref()
        .and_then(|p| path_modifier(ctx, &format!("{at}.path"), p));
    Some(UrlRewrite { hostname, path })
}

fn path_modifier(ctx: &mut Ctx<'_>, at: &str, p: &PathSpec<'_>) -> Option<PathModifier> {
    let (wanted, unwanted, value, extra) = if p.full {
        (
            "replaceFullPath",
            "replacePrefixMatch",
            p.replace_full_path,
            p.replace_prefix_match,
        )
    } else {
        (
            "replacePrefixMatch",
            "replaceFullPath",
            p.replace_prefix_match,
            p.replace_full_path,
        )
    };
    let Some(value) = value else {
        let reason = format!("`type: {}` needs `{wanted}`", capitalized(wanted));
        ctx.problem(at, reason);
        return None;
    };
    if extra.is_some() {
        let reason = format!("must not be set when `type` is {}", capitalized(wanted));
        ctx.problem(format!("{at}.{unwanted}"), reason);
        return None;
    }
    if !checks::replacement_path(ctx, &format!("{at}.{wanted}"), value, !p.full) {
        return None;
    }
    Some(if p.full {
        PathModifier::ReplaceFullPath(value.to_string())
    } else {
        PathModifier::ReplacePrefixMatch(value.to_string())
    })
}

fn capitalized(field: &str) -> String {
    let mut chars = field.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn mirror(ctx: &mut Ctx<'_>, at: &str, m: &MirrorSpec<'_>) -> Option<Mirror> {
    let target = refs::service_port(ctx, &format!("{at}.backendRef"), m.backend);
    let share = match (m.percent, m.fraction) {
        (Some(_), Some(_)) => {
            ctx.problem(at, "set `percent` or `fraction`, not both");
            None
        }
        (Some(p), None) => match u32::try_from(p) {
            Ok(p) if p <= 100 => Some((p, 100)),
            _ => {
                ctx.problem(format!("{at}.percent"), format!("{p} is not 0-100"));
                None
            }
        },
        (None, Some((numerator, denominator))) => {
            let denominator = denominator.unwrap_or(100);
            match (u32::try_from(numerator), u32::try_from(denominator)) {
                (Ok(n), Ok(d)) if d > 0 && n <= d => Some((n, d)),
                _ => {
                    let reason = format!(
                        "{numerator}/{denominator} is not a fraction between 0 and 1 with a \
                         positive denominator"
                    );
                    ctx.problem(format!("{at}.fraction"), reason);
                    None
                }
            }
        }
        (None, None) => Some((100, 100)),
    };
    let ((service, port), (numerator, denominator)) = (target?, share?);
    Some(Mirror {
        service,
        port,
        numerator,
        denominator,
    })
}
