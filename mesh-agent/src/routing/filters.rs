//! Route filters: header edits, redirects, URL rewrites and mirrors.
//!
//! The proxy runs a rule's filters, then the chosen backend's, through
//! [`apply_request_filters`] before forwarding, and [`apply_response_filters`] on the way
//! back. A redirect answers the request itself, without any backend. Mirrors are not applied
//! here: [`mirrors`] lists them and the proxy sends the copies.

use std::borrow::Cow;

use http::uri::{Authority, PathAndQuery};
use http::{
    HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Uri, header, request, response,
};

use super::table::Selected;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    RequestHeaderModifier(HeaderModifier),
    ResponseHeaderModifier(HeaderModifier),
    RequestRedirect(Redirect),
    UrlRewrite(UrlRewrite),
    RequestMirror(Mirror),
}

/// Header edits, applied as `set`, then `add`, then `remove` (so `remove` always wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    /// Replaces every value of the header.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Appends a value, keeping those already there.
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderModifier {
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    const fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathModifier {
    ReplaceFullPath(String),
    /// Replaces the matched `PathPrefix`, segment-wise.
    ReplacePrefixMatch(String),
}

/// Answers with a redirect; unset parts keep the request's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub scheme: Option<Scheme>,
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
    pub port: Option<u16>,
    pub status: StatusCode,
}

/// Changes the request before it is forwarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlRewrite {
    /// Replaces the `Host` header (and the URI authority, which HTTP/2 sends as `:authority`).
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathModifier>,
}

/// Copies requests to another service port; the copy's response is discarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// `(namespace, name)`.
    pub service: (String, String),
    pub port: u16,
    /// The share of requests mirrored: `numerator / denominator`.
    pub numerator: u32,
    pub denominator: u32,
}

impl Mirror {
    pub fn percent(&self) -> f64 {
        f64::from(self.numerator) * 100.0 / f64::from(self.denominator.max(1))
    }

    /// Whether to mirror this request, from a uniformly random `random`.
    pub fn sampled(&self, random: u32) -> bool {
        if self.numerator >= self.denominator {
            return true;
        }
        let point = (u64::from(random) * u64::from(self.denominator)) >> 32;
        point < u64::from(self.numerator)
    }
}

/// What the request filters decided.
#[derive(Debug)]
pub enum FilterOutcome {
    /// Forward the (possibly modified) request.
    Continue,
    /// Answer with this response and forward nothing.
    Respond(Response<()>),
}

/// Applies the request-side filters in order: header edits and rewrites change `req`; a
/// redirect stops there and returns the answer.
pub fn apply_request_filters(
    filters: &[Filter],
    selected: &Selected<'_>,
    req: &mut request::Parts,
) -> FilterOutcome {
    for filter in filters {
        match filter {
            Filter::RequestHeaderModifier(m) => m.apply(&mut req.headers),
            Filter::RequestRedirect(r) => {
                return FilterOutcome::Respond(redirect(r, selected, req));
            }
            Filter::UrlRewrite(r) => {
                if let Err(answer) = rewrite(r, selected, req) {
                    return FilterOutcome::Respond(answer);
                }
            }
            Filter::ResponseHeaderModifier(_) | Filter::RequestMirror(_) => {}
        }
    }
    FilterOutcome::Continue
}

/// Applies the response-side filters (response header edits) in order.
pub fn apply_response_filters(filters: &[Filter], resp: &mut response::Parts) {
    for filter in filters {
        if let Filter::ResponseHeaderModifier(m) = filter {
            m.apply(&mut resp.headers);
        }
    }
}

/// The mirror targets among `filters`.
pub fn mirrors(filters: &[Filter]) -> impl Iterator<Item = &Mirror> {
    filters.iter().filter_map(|f| match f {
        Filter::RequestMirror(m) => Some(m),
        _ => None,
    })
}

/// The `Location` answer of a redirect.
fn redirect(r: &Redirect, selected: &Selected<'_>, req: &request::Parts) -> Response<()> {
    let scheme = r
        .scheme
        .or_else(|| match req.uri.scheme_str() {
            Some("https") => Some(Scheme::Https),
            _ => None,
        })
        .unwrap_or(Scheme::Http);
    // Without a port, a new scheme brings its well-known port; otherwise the port the client
    // addressed (the service port) stays. Well-known ports are left out of the URL.
    let port = r
        .port
        .or(r.scheme.map(Scheme::default_port))
        .unwrap_or(selected.port);
    let path = match &r.path {
        Some(modifier) => modified_path(modifier, selected, req.uri.path()),
        None => Cow::Borrowed(req.uri.path()),
    };
    let mut location = String::new();
    let host = r.hostname.as_deref().or_else(|| request_host(req));
    if let Some(host) = host {
        location.push_str(scheme.as_str());
        location.push_str("://");
        location.push_str(host);
        if port != scheme.default_port() {
            location.push(':');
            location.push_str(&port.to_string());
        }
    }
    location.push_str(&path);
    if let Some(query) = req.uri.query() {
        location.push('?');
        location.push_str(query);
    }
    let mut answer = Response::new(());
    match HeaderValue::try_from(location) {
        Ok(value) => {
            *answer.status_mut() = r.status;
            answer.headers_mut().insert(header::LOCATION, value);
        }
        Err(_) => *answer.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    answer
}

/// The host the client addressed, without its port: the `Host` header, else the URI
/// authority (HTTP/2).
fn request_host(req: &request::Parts) -> Option<&str> {
    let host = match req.headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
        Some(authority) if authority.starts_with('[') => match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        },
        Some(authority) => authority.split(':').next().unwrap_or(authority),
        None => req.uri.host()?,
    };
    (!host.is_empty()).then_some(host)
}

/// Applies a rewrite to `req`; `Err` is the answer when the result is not a valid URI.
fn rewrite(
    r: &UrlRewrite,
    selected: &Selected<'_>,
    req: &mut request::Parts,
) -> Result<(), Response<()>> {
    let mut parts = req.uri.clone().into_parts();
    if let Some(modifier) = &r.path {
        let path = modified_path(modifier, selected, req.uri.path());
        let path_and_query = match req.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.into_owned(),
        };
        parts.path_and_query =
            Some(PathAndQuery::try_from(path_and_query).map_err(|_| internal())?);
    }
    if let Some(hostname) = &r.hostname {
        req.headers.insert(header::HOST, hostname.clone());
        if parts.authority.is_some() {
            parts.authority =
                Some(Authority::try_from(hostname.as_bytes()).map_err(|_| internal())?);
        }
    }
    req.uri = Uri::from_parts(parts).map_err(|_| internal())?;
    Ok(())
}

fn internal() -> Response<()> {
    let mut answer = Response::new(());
    *answer.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    answer
}

/// The path after a path modifier.
///
/// `ReplacePrefixMatch` works on whole segments, as the spec's table shows: the matched
/// prefix and the replacement lose their trailing `/`, what followed the prefix is kept, and
/// an empty result becomes `/` (`/foo/bar` with prefix `/foo` and replacement `/xyz` gives
/// `/xyz/bar`; with replacement `` it gives `/bar`).
fn modified_path<'a>(
    modifier: &'a PathModifier,
    selected: &Selected<'_>,
    path: &'a str,
) -> Cow<'a, str> {
    match modifier {
        PathModifier::ReplaceFullPath(full) => Cow::Borrowed(full),
        PathModifier::ReplacePrefixMatch(replacement) => {
            // A rewrite earlier in the chain may have changed the path already: then the
            // prefix no longer applies and the path stays.
            let Some(rest) = selected.matched_prefix().and_then(|p| path.strip_prefix(p)) else {
                return Cow::Borrowed(path);
            };
            let mut out = replacement.trim_end_matches('/').to_string();
            out.push_str(rest);
            if out.is_empty() {
                out.push('/');
            }
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests;
