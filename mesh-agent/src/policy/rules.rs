//! Compiled rules and how one matches a request, at L7 and at L4.
//!
//! At L4 (a connection, no HTTP attributes) a rule that needs HTTP attributes cannot be
//! decided. Following ztunnel, the reading is the stricter one: for ALLOW such a rule never
//! matches; for DENY its HTTP parts (methods, paths and their `not` forms, `when`) are dropped,
//! so it matches on its source and ports alone and denies the whole connection.
//! Built by [`super::compile`]; evaluated by [`super::index`].

use http::HeaderName;

use super::pattern::Pattern;
use super::{HttpAttrs, Request};

/// How HTTP-dependent parts of a rule are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// An HTTP request: every part is evaluated.
    L7,
    /// A connection, for an ALLOW policy: rules that need HTTP never match.
    L4Allow,
    /// A connection, for a DENY policy: HTTP parts are ignored.
    L4Deny,
}

/// What a request offers to match against, borrowed from it once per decision.
pub(crate) struct Subject<'a> {
    /// The principal's parts, matched as if joined.
    principal: Option<[&'a [u8]; 5]>,
    namespace: Option<&'a [u8]>,
    port: u16,
    http: Option<Http<'a>>,
}

struct Http<'a> {
    method: &'a [u8],
    path: &'a [u8],
    headers: &'a http::HeaderMap,
}

impl<'a> Subject<'a> {
    pub(crate) fn of(req: &Request<'a>) -> Self {
        let id = req.source.id;
        Subject {
            principal: id.map(|id| {
                [
                    id.trust_domain().as_bytes(),
                    b"/ns/".as_slice(),
                    id.namespace().as_bytes(),
                    b"/sa/".as_slice(),
                    id.service_account().as_bytes(),
                ]
            }),
            namespace: id.map(|id| id.namespace().as_bytes()),
            port: req.port,
            http: req.http.map(|h: HttpAttrs<'a>| Http {
                method: h.method.as_str().as_bytes(),
                // Paths match without the query.
                path: h.path.split_once('?').map_or(h.path, |(p, _)| p).as_bytes(),
                headers: h.headers,
            }),
        }
    }
}

/// A rule; an empty list stands for an absent part (compilation rejects empty lists).
#[derive(Clone, Debug, Default)]
pub(crate) struct CompiledRule {
    pub from: Vec<FromEntry>,
    pub to: Vec<ToEntry>,
    pub when: Vec<HeaderCondition>,
}

impl CompiledRule {
    pub(crate) fn matches(&self, s: &Subject, mode: Mode) -> bool {
        if mode == Mode::L4Allow && self.needs_http() {
            return false;
        }
        (self.from.is_empty() || self.from.iter().any(|f| f.matches(s)))
            && (self.to.is_empty() || self.to.iter().any(|t| t.matches(s, mode)))
            && (mode == Mode::L4Deny || self.when.iter().all(|c| c.matches(s)))
    }

    fn needs_http(&self) -> bool {
        !self.when.is_empty() || self.to.iter().any(ToEntry::needs_http)
    }
}

/// A source; an empty list does not constrain.
#[derive(Clone, Debug, Default)]
pub(crate) struct FromEntry {
    pub principals: Vec<Pattern>,
    pub not_principals: Vec<Pattern>,
    pub namespaces: Vec<Pattern>,
    pub not_namespaces: Vec<Pattern>,
}

impl FromEntry {
    /// A source without identity matches no positive list and every `not` list.
    fn matches(&self, s: &Subject) -> bool {
        let principal = |p: &Pattern| s.principal.is_some_and(|parts| p.matches_parts(&parts));
        let namespace = |p: &Pattern| s.namespace.is_some_and(|ns| p.matches(ns));
        (self.principals.is_empty() || self.principals.iter().any(principal))
            && !self.not_principals.iter().any(principal)
            && (self.namespaces.is_empty() || self.namespaces.iter().any(namespace))
            && !self.not_namespaces.iter().any(namespace)
    }
}

/// An operation; an empty list does not constrain.
#[derive(Clone, Debug, Default)]
pub(crate) struct ToEntry {
    pub ports: Vec<u16>,
    pub not_ports: Vec<u16>,
    pub methods: Vec<Pattern>,
    pub not_methods: Vec<Pattern>,
    pub paths: Vec<Pattern>,
    pub not_paths: Vec<Pattern>,
}

impl ToEntry {
    fn needs_http(&self) -> bool {
        !(self.methods.is_empty()
            && self.not_methods.is_empty()
            && self.paths.is_empty()
            && self.not_paths.is_empty())
    }

    fn matches(&self, s: &Subject, mode: Mode) -> bool {
        let port = (self.ports.is_empty() || self.ports.contains(&s.port))
            && !self.not_ports.contains(&s.port);
        if !port || !self.needs_http() || mode == Mode::L4Deny {
            return port;
        }
        // Only reached with HTTP attributes: L4Allow rules needing HTTP were refused earlier.
        let Some(http) = &s.http else {
            return false;
        };
        listed(&self.methods, http.method)
            && !self.not_methods.iter().any(|p| p.matches(http.method))
            && listed(&self.paths, http.path)
            && !self.not_paths.iter().any(|p| p.matches(http.path))
    }
}

/// A request header condition: some value in `values` (when given), none in `not_values`.
#[derive(Clone, Debug)]
pub(crate) struct HeaderCondition {
    pub header: HeaderName,
    pub values: Vec<Pattern>,
    pub not_values: Vec<Pattern>,
}

impl HeaderCondition {
    fn matches(&self, s: &Subject) -> bool {
        let Some(http) = &s.http else {
            return false;
        };
        let values = http.headers.get_all(&self.header);
        let hit = |patterns: &[Pattern]| {
            values
                .iter()
                .any(|v| patterns.iter().any(|p| p.matches(v.as_bytes())))
        };
        (self.values.is_empty() || hit(&self.values)) && !hit(&self.not_values)
    }
}

/// An empty list allows anything; otherwise some pattern must match.
fn listed(patterns: &[Pattern], value: &[u8]) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(value))
}
