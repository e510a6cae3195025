//! The route table of one service port and the Gateway API's precedence order.
//!
//! A table holds every rule of every route attached to the port and one entry per match of
//! each rule, sorted once when the snapshot is built. `select` walks the entries in that order
//! and takes the first that matches, so the sort is the whole precedence story:
//!
//! - HTTPRoute: `Exact` path, then `RegularExpression` path (its precedence is left to
//!   implementations; this places it between the two the spec orders), then `PathPrefix` by
//!   length, longest first; then a method match; then more header matches; then more query
//!   parameter matches.
//! - GRPCRoute: more characters in the matched service, then in the method, then more header
//!   matches; a `RegularExpression` method match counts no characters.
//! - Remaining ties: the oldest route (`metadata.creationTimestamp`; a route without one
//!   counts as newest), then `{namespace}/{name}` alphabetically, then rule order, then match
//!   order within the rule.
//!
//! HTTPRoute tables also get a path index (`index`) so that only the entries whose path can
//! match are tried; the result is the same as walking the whole table.

use std::cmp::Reverse;

use http::{HeaderMap, Method, Uri};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::matching::{PathMatch, RequestMatch};
use super::model::{RouteKind, RouteRule};

mod index;

use index::PathIndex;

/// The compiled routes of one service port (all HTTPRoutes or all GRPCRoutes attached to it),
/// ordered by the spec's precedence.
#[derive(Debug)]
pub struct RouteTable {
    kind: RouteKind,
    port: u16,
    rules: Vec<RouteRule>,
    entries: Vec<Entry>,
    /// Every path regular expression of the table in one set: a single pass tells whether any
    /// of them can match, so a request that matches none skips them all. `None`: no regular
    /// expressions (or too many to combine; then each is tried).
    regex_gate: Option<regex::RegexSet>,
    /// `None`: GRPCRoute tables, walked whole.
    index: Option<PathIndex>,
}

#[derive(Debug)]
struct Entry {
    matcher: RequestMatch,
    rule: usize,
}

/// The rule chosen for a request, and the match that chose it.
#[derive(Clone, Copy, Debug)]
pub struct Selected<'a> {
    pub rule: &'a RouteRule,
    /// The matched path condition: `ReplacePrefixMatch` replaces the prefix it matched.
    pub path: &'a PathMatch,
    /// The service port the table belongs to: a redirect without scheme or port keeps it.
    pub port: u16,
}

impl Selected<'_> {
    /// The matched `PathPrefix` value without its trailing `/`; `None` for other matches.
    pub fn matched_prefix(&self) -> Option<&str> {
        self.path.matched_prefix()
    }
}

impl RouteTable {
    pub fn kind(&self) -> RouteKind {
        self.kind
    }

    /// The service port this table routes.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every rule attached, in route order (not precedence order).
    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    /// The rule for a request: the first match in precedence order. `None`: no rule matched,
    /// which the spec answers with 404.
    pub fn select(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Selected<'_>> {
        let path = uri.path();
        let query = uri.query();
        // Asked once, at the first regular expression reached.
        let mut regexes_may_match = None;
        let mut hit = |i: usize| {
            let e = &self.entries[i];
            if matches!(e.matcher.path, PathMatch::Regex(_))
                && !*regexes_may_match.get_or_insert_with(|| {
                    self.regex_gate
                        .as_ref()
                        .is_none_or(|set| set.is_match(path))
                })
            {
                return false;
            }
            e.matcher.matches(method, path, query, headers)
        };
        let found = match &self.index {
            Some(index) => index.first(path, hit),
            None => (0..self.entries.len()).find(|&i| hit(i)),
        };
        let entry = &self.entries[found?];
        Some(Selected {
            rule: &self.rules[entry.rule],
            path: &entry.matcher.path,
            port: self.port,
        })
    }
}

/// The combined set may take this much memory; beyond it, regular expressions are tried one
/// by one (each is capped on its own when compiled).
const REGEX_GATE_SIZE_LIMIT: usize = 16 << 20;

/// The route-level tie-breakers shared by all rules of a route.
#[derive(Clone, Debug)]
pub(crate) struct RouteOrder {
    pub created: Option<Time>,
    /// `{namespace}/{name}`, compared as text as the spec words it.
    pub key: String,
}

/// Collects the rules attached to one service port, then sorts them into a [`RouteTable`].
pub(crate) struct TableBuilder {
    kind: RouteKind,
    port: u16,
    rules: Vec<RouteRule>,
    entries: Vec<(SortKey, Entry)>,
}

type SortKey = (
    [Reverse<usize>; 5],
    (bool, Option<Time>),
    String,
    usize,
    usize,
);

impl TableBuilder {
    pub(crate) fn new(kind: RouteKind, port: u16) -> TableBuilder {
        TableBuilder {
            kind,
            port,
            rules: Vec::new(),
            entries: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, rule: RouteRule, matches: Vec<RequestMatch>, order: &RouteOrder) {
        let index = self.rules.len();
        for (m, matcher) in matches.into_iter().enumerate() {
            let key = (
                specificity(self.kind, &matcher),
                (order.created.is_none(), order.created.clone()),
                order.key.clone(),
                rule.index,
                m,
            );
            self.entries.push((
                key,
                Entry {
                    matcher,
                    rule: index,
                },
            ));
        }
        self.rules.push(rule);
    }

    pub(crate) fn build(mut self) -> RouteTable {
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        let patterns: Vec<&str> = self
            .entries
            .iter()
            .filter_map(|(_, e)| match &e.matcher.path {
                PathMatch::Regex(re) => Some(re.as_str()),
                _ => None,
            })
            .collect();
        let regex_gate = (!patterns.is_empty())
            .then(|| {
                regex::RegexSetBuilder::new(patterns)
                    .size_limit(REGEX_GATE_SIZE_LIMIT)
                    .build()
                    .ok()
            })
            .flatten();
        let entries: Vec<Entry> = self.entries.into_iter().map(|(_, e)| e).collect();
        let index = match self.kind {
            RouteKind::Http => PathIndex::build(&entries),
            RouteKind::Grpc => None,
        };
        RouteTable {
            kind: self.kind,
            port: self.port,
            rules: self.rules,
            entries,
            regex_gate,
            index,
        }
    }
}

/// Larger is more specific; compared in order, descending.
fn specificity(kind: RouteKind, m: &RequestMatch) -> [Reverse<usize>; 5] {
    let method = usize::from(m.method.is_some());
    let headers = m.headers.len();
    let query = m.query.len();
    let chars = |s: &Option<Box<str>>| s.as_deref().map_or(0, str::len);
    let key = match (kind, &m.path) {
        (RouteKind::Grpc, PathMatch::GrpcMethod { service, method }) => {
            [chars(service), chars(method), headers, 0, 0]
        }
        (RouteKind::Grpc, _) => [0, 0, headers, 0, 0],
        (RouteKind::Http, PathMatch::Exact(_)) => [3, 0, method, headers, query],
        (RouteKind::Http, PathMatch::Regex(_)) => [2, 0, method, headers, query],
        (RouteKind::Http, PathMatch::Prefix { written_len, .. }) => {
            [1, *written_len, method, headers, query]
        }
        (RouteKind::Http, PathMatch::GrpcMethod { .. }) => [0, 0, method, headers, query],
    };
    key.map(Reverse)
}

#[cfg(test)]
mod tests;
