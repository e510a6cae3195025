//! Query strings of the admin API: `src=shop/web&dst=10.96.0.20:80&path=%2Fapi`.
//!
//! Values are percent-decoded; `+` stays a plus sign (paths may hold one, and the CLI encodes
//! spaces as `%20`). Unknown or repeated parameters are refused, so a typo never silently
//! changes the question.

use super::AdminError;

/// The parameters of one request, checked against the names an endpoint accepts.
#[derive(Debug)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `query`; every name must be one of `known`.
    pub fn parse(query: Option<&str>, known: &[&str]) -> Result<Query, AdminError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let name = decode(name)?;
            if !known.contains(&name.as_str()) {
                return Err(AdminError::BadRequest(format!(
                    "unknown query parameter `{name}`; this endpoint takes {}",
                    known.join(", ")
                )));
            }
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(AdminError::BadRequest(format!(
                    "query parameter `{name}` given twice"
                )));
            }
            pairs.push((name, decode(value)?));
        }
        Ok(Query { pairs })
    }

    /// The value of `name`, if given and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, which must be given; `what` describes its form for the error.
    pub fn require(&self, name: &str, what: &str) -> Result<&str, AdminError> {
        self.get(name).ok_or_else(|| {
            AdminError::BadRequest(format!("missing query parameter `{name}` ({what})"))
        })
    }
}

/// `%2F` -> `/`; a `%` not followed by two hex digits, or bytes that are not UTF-8, are refused.
fn decode(s: &str) -> Result<String, AdminError> {
    let bad = || AdminError::BadRequest(format!("bad percent-encoding in {s:?}"));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// The inverse of [`Query::parse`] for one value: everything but unreserved characters and `/`
/// is percent-encoded (the CLI builds its requests with it).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_mistakes_are_refused() -> Result<(), AdminError> {
        let path = "/a b/ü+x?y=1&z";
        let raw = format!("src=shop/web&path={}", encode(path));
        let q = Query::parse(Some(&raw), &["src", "path", "dst"])?;
        assert_eq!(q.get("src"), Some("shop/web"));
        assert_eq!(q.get("path"), Some(path));
        assert_eq!(q.get("dst"), None);
        assert!(q.require("dst", "ip:port").is_err());
        for bad in ["src=a&src=b", "nope=1", "src=%zz", "src=%4", "src=%ff"] {
            assert!(Query::parse(Some(bad), &["src"]).is_err(), "{bad}");
        }
        assert!(Query::parse(None, &["src"])?.get("src").is_none());
        Ok(())
    }
}
