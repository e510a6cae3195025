//! Request matchers: one compiled `matches[]` entry of a route rule.
//!
//! Everything is prepared at compile time (header names parsed, prefixes trimmed, regular
//! expressions compiled and anchored) so that testing a request only compares bytes. Within a
//! match every condition must hold; a rule matches when any of its matches does (the table
//! keeps one entry per match).

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, Method};

/// How the path (for gRPC: the `/service/method` path) is matched.
#[derive(Clone, Debug)]
pub enum PathMatch {
    Exact(Box<str>),
    /// Whole segments: `/abc` (or `/abc/`) matches `/abc`, `/abc/` and `/abc/def`, not `/abcd`.
    /// Holds the value without its trailing `/` (empty for `/`); `written_len` is the length
    /// as written, which orders prefixes.
    Prefix {
        trimmed: Box<str>,
        written_len: usize,
    },
    /// Must match the whole path.
    Regex(regex::Regex),
    /// A GRPCRoute `Exact` method match; a missing part matches any service or method.
    GrpcMethod {
        service: Option<Box<str>>,
        method: Option<Box<str>>,
    },
}

impl PathMatch {
    pub(crate) fn prefix(value: &str) -> PathMatch {
        PathMatch::Prefix {
            trimmed: value.trim_end_matches('/').into(),
            written_len: value.len(),
        }
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(value) => path == &**value,
            PathMatch::Prefix { trimmed, .. } => prefix_matches(trimmed, path),
            PathMatch::Regex(re) => re.is_match(path),
            PathMatch::GrpcMethod { service, method } => {
                let Some((svc, meth)) = path.strip_prefix('/').and_then(|p| p.split_once('/'))
                else {
                    return false;
                };
                !svc.is_empty()
                    && !meth.is_empty()
                    && !meth.contains('/')
                    && service.as_deref().is_none_or(|s| s == svc)
                    && method.as_deref().is_none_or(|m| m == meth)
            }
        }
    }

    /// The prefix a `ReplacePrefixMatch` replaces (without its trailing `/`).
    pub(crate) fn matched_prefix(&self) -> Option<&str> {
        match self {
            PathMatch::Prefix { trimmed, .. } => Some(trimmed),
            _ => None,
        }
    }
}

/// `trimmed` is a prefix of `path` that ends at a segment boundary.
fn prefix_matches(trimmed: &str, path: &str) -> bool {
    match path.strip_prefix(trimmed) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A value condition on bytes (header values).
#[derive(Clone, Debug)]
pub enum BytesMatch {
    Exact(Box<[u8]>),
    /// Must match the whole value.
    Regex(regex::bytes::Regex),
}

impl BytesMatch {
    fn matches(&self, value: &[u8]) -> bool {
        match self {
            BytesMatch::Exact(expected) => value == &**expected,
            BytesMatch::Regex(re) => re.is_match(value),
        }
    }
}

/// A value condition on text (query parameter values).
#[derive(Clone, Debug)]
pub enum TextMatch {
    Exact(Box<str>),
    /// Must match the whole value.
    Regex(regex::Regex),
}

impl TextMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            TextMatch::Exact(expected) => value == &**expected,
            TextMatch::Regex(re) => re.is_match(value),
        }
    }
}

#[derive(Clone, Debug)]
pub struct HeaderMatch {
    pub name: HeaderName,
    pub value: BytesMatch,
}

impl HeaderMatch {
    /// A header sent several times is matched as its values joined by `,` (RFC 9110 §5.3);
    /// only that rare case allocates.
    fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let Some(first) = values.next() else {
            return false;
        };
        let Some(second) = values.next() else {
            return self.value.matches(first.as_bytes());
        };
        let mut joined = Vec::with_capacity(first.len() + second.len() + 1);
        joined.extend_from_slice(first.as_bytes());
        for value in std::iter::once(second).chain(values) {
            joined.push(b',');
            joined.extend_from_slice(value.as_bytes());
        }
        self.value.matches(&joined)
    }
}

/// A query parameter condition; names and values are compared percent-decoded, and a
/// parameter given several times is matched by its first value.
#[derive(Clone, Debug)]
pub struct QueryMatch {
    pub name: Box<str>,
    pub value: TextMatch,
}

impl QueryMatch {
    fn matches(&self, query: Option<&str>) -> bool {
        let Some(query) = query else {
            return false;
        };
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode(name) == *self.name {
                return self.value.matches(&percent_decode(value));
            }
        }
        false
    }
}

/// One `matches[]` entry: every condition must hold.
#[derive(Clone, Debug)]
pub struct RequestMatch {
    pub path: PathMatch,
    pub method: Option<Method>,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
}

impl RequestMatch {
    /// The default match of a rule without `matches`: every request.
    pub(crate) fn everything() -> RequestMatch {
        RequestMatch {
            path: PathMatch::prefix("/"),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }

    /// Cheapest conditions first; regular expressions last within their kind.
    pub(crate) fn matches(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self.path.matches(path)
            && self.headers.iter().all(|h| h.matches(headers))
            && self.query.iter().all(|q| q.matches(query))
    }
}

/// `%XX` escapes decoded; text without `%` is borrowed as is.
fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests;
