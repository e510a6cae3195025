//! The value checks of policy fields: each turns what a user wrote into its matcher, or says
//! why not in words that start with the value.

use http::HeaderName;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::identity::SpiffeId;
use crate::policy::pattern::Pattern;
use crate::state::names::dns_label;

/// `td/ns/<ns>/sa/<sa>`, with or without `spiffe://`; an exact one must have that shape, which
/// catches a forgotten trust domain.
pub(super) fn principal(text: &str) -> Result<Pattern, String> {
    let bare = text.strip_prefix("spiffe://").unwrap_or(text);
    let pattern = wildcard(text, bare)?;
    if let Pattern::Exact(p) = &pattern
        && format!("spiffe://{p}").parse::<SpiffeId>().is_err()
    {
        return Err(format!(
            "`{text}` is not a principal (<trust domain>/ns/<namespace>/sa/<service account>)"
        ));
    }
    Ok(pattern)
}

pub(super) fn namespace(text: &str) -> Result<Pattern, String> {
    let pattern = wildcard(text, text)?;
    if let Pattern::Exact(ns) = &pattern
        && let Err(reason) = dns_label(ns)
    {
        return Err(format!("`{text}` {reason}"));
    }
    Ok(pattern)
}

/// Methods are case-sensitive tokens; a lowercase one would never match a standard method.
pub(super) fn method(text: &str) -> Result<Pattern, String> {
    let pattern = wildcard(text, text)?;
    let literal = pattern.literal();
    if literal.bytes().any(|b| b.is_ascii_lowercase()) {
        let upper = text.to_ascii_uppercase();
        return Err(format!(
            "`{text}` is lowercase; methods are case-sensitive (write `{upper}`)"
        ));
    }
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b);
    if !literal.bytes().all(token) {
        return Err(format!("`{text}` is not an HTTP method"));
    }
    Ok(pattern)
}

/// Paths are matched without the query; exact and prefix patterns start with `/`.
pub(super) fn path(text: &str) -> Result<Pattern, String> {
    let pattern = wildcard(text, text)?;
    let literal = pattern.literal();
    if literal.contains(['?', '#']) {
        return Err(format!(
            "`{text}` holds a query or fragment; paths match without them"
        ));
    }
    if !literal.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "`{text}` holds spaces, control or non-ASCII characters (percent-encode them)"
        ));
    }
    if matches!(pattern, Pattern::Exact(_) | Pattern::Prefix(_)) && !literal.starts_with('/') {
        return Err(format!(
            "`{text}` does not start with `/` (or `*` for a suffix)"
        ));
    }
    Ok(pattern)
}

pub(super) fn header_value(text: &str) -> Result<Pattern, String> {
    wildcard(text, text)
}

pub(super) fn header_name(text: &str) -> Result<HeaderName, String> {
    if text.starts_with(':') {
        return Err(format!(
            "`{text}` is a pseudo-header; use `to` methods and paths instead"
        ));
    }
    HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| format!("`{text}` is not an HTTP header name"))
}

/// A destination port, as a number or a string of digits (Istio writes them as strings).
pub(super) fn port(value: &IntOrString) -> Result<u16, String> {
    let port = match value {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(s) => s.parse::<u16>().ok(),
    };
    match port {
        Some(p) if p != 0 => Ok(p),
        _ => {
            let shown = match value {
                IntOrString::Int(n) => n.to_string(),
                IntOrString::String(s) => format!("`{s}`"),
            };
            Err(format!("{shown} is not a valid port (1-65535)"))
        }
    }
}

/// Parses `pattern` (the value less any scheme), naming `text` in the reason.
fn wildcard(text: &str, pattern: &str) -> Result<Pattern, String> {
    if text.is_empty() {
        return Err("is empty (use `*` for any value)".into());
    }
    Pattern::parse(pattern).map_err(|reason| format!("`{text}` {reason}"))
}
