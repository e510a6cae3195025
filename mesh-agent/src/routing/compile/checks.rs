//! Value checks shared by the route compilers. Each reports its own problem and returns
//! `None` (or `false`), so callers simply skip what failed and go on checking the rest.
//!
//! The rules are the Gateway API schema's (lengths, patterns, list sizes); regular
//! expressions use the `regex` crate's syntax (RE2-like) and must match the whole value.

use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::Ctx;

/// Compiled regular expressions are capped so that a pattern cannot take the agent's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A list longer than the schema's `maxItems`.
pub(super) fn limit(ctx: &mut Ctx<'_>, at: &str, len: usize, max: usize) {
    if len > max {
        ctx.problem(at, format!("{len} entries, at most {max} are allowed"));
    }
}

pub(super) fn header_name(ctx: &mut Ctx<'_>, at: &str, name: &str) -> Option<HeaderName> {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(parsed) if name.len() <= 256 => Some(parsed),
        _ => {
            ctx.problem(at, format!("`{name}` is not an HTTP header name"));
            None
        }
    }
}

pub(super) fn header_value(ctx: &mut Ctx<'_>, at: &str, value: &str) -> Option<HeaderValue> {
    match HeaderValue::from_str(value) {
        Ok(parsed) if value.len() <= 4096 => Some(parsed),
        _ => {
            ctx.problem(at, format!("`{value}` is not a valid HTTP header value"));
            None
        }
    }
}

/// A Gateway API duration (GEP-2257: up to four `<number><h|m|s|ms>` parts, `1h30m`).
pub(super) fn duration(ctx: &mut Ctx<'_>, at: &str, text: &str) -> Option<Duration> {
    match gateway_api::Duration::from_str(text) {
        Ok(d) => Some(Duration::new(d.as_secs(), d.subsec_nanos())),
        Err(_) => {
            let reason = format!("`{text}` is not a duration (such as 500ms, 10s, 1m30s)");
            ctx.problem(at, reason);
            None
        }
    }
}

fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

pub(super) fn regex(ctx: &mut Ctx<'_>, at: &str, pattern: &str) -> Option<regex::Regex> {
    let built = regex::RegexBuilder::new(&anchored(pattern))
        .size_limit(REGEX_SIZE_LIMIT)
        .build();
    match built {
        Ok(re) if pattern.len() <= 1024 => Some(re),
        Ok(_) => {
            ctx.problem(
                at,
                "a regular expression of at most 1024 characters is allowed",
            );
            None
        }
        Err(e) => {
            ctx.problem(at, regex_error(pattern, &e));
            None
        }
    }
}

pub(super) fn bytes_regex(
    ctx: &mut Ctx<'_>,
    at: &str,
    pattern: &str,
) -> Option<regex::bytes::Regex> {
    let built = regex::bytes::RegexBuilder::new(&anchored(pattern))
        .size_limit(REGEX_SIZE_LIMIT)
        .build();
    match built {
        Ok(re) if pattern.len() <= 4096 => Some(re),
        Ok(_) => {
            ctx.problem(
                at,
                "a regular expression of at most 4096 characters is allowed",
            );
            None
        }
        Err(e) => {
            ctx.problem(at, regex_error(pattern, &e));
            None
        }
    }
}

/// The regex crate's message spans several lines (with a caret diagram); one line is kept.
fn regex_error(pattern: &str, e: &regex::Error) -> String {
    let detail = match e {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .map(|l| l.trim_start_matches("error:").trim().to_string())
            .unwrap_or_else(|| text.lines().last().unwrap_or_default().to_string()),
        regex::Error::CompiledTooBig(_) => "it compiles too big".to_string(),
        other => other.to_string(),
    };
    format!("`{pattern}` is not a valid regular expression: {detail}")
}

/// An `Exact` or `PathPrefix` value: an absolute path the schema accepts.
pub(super) fn match_path(ctx: &mut Ctx<'_>, at: &str, value: &str) -> bool {
    let reason = if !value.starts_with('/') {
        Some("must be an absolute path (start with '/')")
    } else if value.len() > 1024 {
        Some("must be at most 1024 characters")
    } else if !path_chars(value) {
        Some("has characters a path cannot hold (escape them as %XX)")
    } else if value.contains("//") {
        Some("must not contain '//'")
    } else if value.contains("/./") || value.ends_with("/.") {
        Some("must not contain a '.' segment")
    } else if value.contains("/../") || value.ends_with("/..") {
        Some("must not contain a '..' segment")
    } else if value.contains("%2f") || value.contains("%2F") {
        Some("must not contain an escaped '/' (%2F)")
    } else {
        None
    };
    if let Some(reason) = reason {
        ctx.problem(at, format!("`{value}` {reason}"));
    }
    reason.is_none()
}

/// A path a rewrite or redirect writes: absolute (a prefix replacement may also be empty) and
/// made of valid path characters.
pub(super) fn replacement_path(
    ctx: &mut Ctx<'_>,
    at: &str,
    value: &str,
    may_be_empty: bool,
) -> bool {
    let ok = (value.is_empty() && may_be_empty)
        || (value.starts_with('/') && value.len() <= 1024 && path_chars(value));
    if !ok {
        let reason = format!("`{value}` is not an absolute path of valid path characters");
        ctx.problem(at, reason);
    }
    ok
}

/// RFC 3986 path characters, `%XX` escapes included.
fn path_chars(value: &str) -> bool {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-/._~!$&'()*+,;=:@".contains(&b)) {
            return false;
        }
        i += 1;
    }
    true
}

/// A precise hostname (no wildcard, no IP): lowercase DNS labels separated by dots.
pub(super) fn hostname(ctx: &mut Ctx<'_>, at: &str, value: &str) -> bool {
    let ok = crate::state::names::dns_subdomain(value).is_ok();
    if !ok {
        let reason = format!("`{value}` is not a hostname (lowercase DNS labels separated by '.')");
        ctx.problem(at, reason);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::path_chars;

    #[test]
    fn path_characters() {
        assert!(path_chars("/a-b/c_d.e~f/%20/x:y@z"));
        assert!(!path_chars("/a b"));
        assert!(!path_chars("/a%2"));
        assert!(!path_chars("/a%zz"));
        assert!(!path_chars("/a?b"));
    }
}
