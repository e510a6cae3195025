//! Istio's string matching: a value is exact, a prefix (`abc*`), a suffix (`*abc`) or anything
//! (`*`). Parsed once by [`super::compile`]; matched on the request path without allocating.
//!
//! A subject is a sequence of byte slices matched as if joined, so that a principal
//! (`<trust domain>/ns/<namespace>/sa/<service account>`) is matched from the parts of a
//! [`crate::identity::SpiffeId`] without building the string.

/// One compiled string pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
}

impl Pattern {
    /// Reads `*`, `abc*`, `*abc` or `abc`; the reason is worded to follow the value.
    pub(crate) fn parse(text: &str) -> Result<Pattern, String> {
        let inner_star = |s: &str| s.contains('*');
        if text.is_empty() {
            return Err("is empty (use `*` for any value)".into());
        }
        let pattern = if text == "*" {
            Pattern::Any
        } else if let Some(rest) = text.strip_prefix('*') {
            Pattern::Suffix(rest.into())
        } else if let Some(rest) = text.strip_suffix('*') {
            Pattern::Prefix(rest.into())
        } else {
            Pattern::Exact(text.into())
        };
        match &pattern {
            Pattern::Exact(s) | Pattern::Prefix(s) | Pattern::Suffix(s) if inner_star(s) => {
                Err("may hold `*` only as the whole value, its first or its last character".into())
            }
            _ => Ok(pattern),
        }
    }

    /// The text besides the wildcard (empty for [`Pattern::Any`]).
    pub(crate) fn literal(&self) -> &str {
        match self {
            Pattern::Any => "",
            Pattern::Exact(s) | Pattern::Prefix(s) | Pattern::Suffix(s) => s,
        }
    }

    pub(crate) fn matches(&self, subject: &[u8]) -> bool {
        self.matches_parts(&[subject])
    }

    /// Matches the concatenation of `parts`.
    pub(crate) fn matches_parts(&self, parts: &[&[u8]]) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(s) => total_len(parts) == s.len() && starts_with(parts, s.as_bytes()),
            Pattern::Prefix(s) => starts_with(parts, s.as_bytes()),
            Pattern::Suffix(s) => ends_with(parts, s.as_bytes()),
        }
    }
}

fn total_len(parts: &[&[u8]]) -> usize {
    parts.iter().map(|p| p.len()).sum()
}

fn starts_with(parts: &[&[u8]], mut want: &[u8]) -> bool {
    for part in parts {
        if want.is_empty() {
            return true;
        }
        let n = part.len().min(want.len());
        if part[..n] != want[..n] {
            return false;
        }
        want = &want[n..];
    }
    want.is_empty()
}

fn ends_with(parts: &[&[u8]], mut want: &[u8]) -> bool {
    for part in parts.iter().rev() {
        if want.is_empty() {
            return true;
        }
        let n = part.len().min(want.len());
        if part[part.len() - n..] != want[want.len() - n..] {
            return false;
        }
        want = &want[..want.len() - n];
    }
    want.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        Pattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn parses_the_four_forms_and_rejects_inner_stars() {
        assert_eq!(p("*"), Pattern::Any);
        assert_eq!(p("/api/*"), Pattern::Prefix("/api/".into()));
        assert_eq!(p("*.js"), Pattern::Suffix(".js".into()));
        assert_eq!(p("/x"), Pattern::Exact("/x".into()));
        for bad in ["", "/a/*/b", "**", "*a*", "a**"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn matches_plain_subjects() {
        assert!(p("/api/*").matches(b"/api/x"));
        assert!(p("/api/*").matches(b"/api/"));
        assert!(!p("/api/*").matches(b"/api"));
        assert!(p("*.js").matches(b"/a/b.js"));
        assert!(!p("*.js").matches(b"/a/b.jsx"));
        assert!(p("/x").matches(b"/x"));
        assert!(!p("/x").matches(b"/xy"));
        assert!(!p("/xy").matches(b"/x"));
        assert!(p("*").matches(b""));
    }

    #[test]
    fn matches_across_parts_as_if_joined() {
        let parts: [&[u8]; 5] = [b"cluster.local", b"/ns/", b"frontend", b"/sa/", b"web"];
        assert!(p("cluster.local/ns/frontend/sa/web").matches_parts(&parts));
        assert!(!p("cluster.local/ns/frontend/sa/we").matches_parts(&parts));
        assert!(!p("cluster.local/ns/frontend/sa/webx").matches_parts(&parts));
        assert!(p("cluster.local/ns/front*").matches_parts(&parts));
        assert!(p("cluster.local/*").matches_parts(&parts));
        assert!(!p("other.local/*").matches_parts(&parts));
        assert!(p("*/sa/web").matches_parts(&parts));
        assert!(p("*end/sa/web").matches_parts(&parts));
        assert!(!p("*back/sa/web").matches_parts(&parts));
        assert!(!p("*xcluster.local/ns/frontend/sa/web").matches_parts(&parts));
    }
}
