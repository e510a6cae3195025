//! The query of a list or watch request: its parameters, and the label and field selectors
//! that decide which objects it sees.
//!
//! Only what clients of the fake send is understood: equality-based selectors (`a=b`, `a==b`,
//! `a!=b`, and for labels `a` and `!a`), comma-separated. Set-based label selectors
//! (`a in (x,y)`) are refused with 400 rather than matched wrongly.

use std::collections::HashMap;

use serde_json::Value;

/// `?a=b&c=d`, percent-decoded.
pub(super) fn query_pairs(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// Percent-decoding, with `+` as a space (form encoding, which kube's client uses).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Term {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

/// A label selector and a field selector, both from the request's query.
#[derive(Clone, Debug, Default)]
pub(super) struct Selector {
    labels: Vec<Term>,
    /// Dotted paths into the object (`spec.nodeName`, `metadata.name`).
    fields: Vec<Term>,
}

impl Selector {
    pub fn parse(query: &HashMap<String, String>) -> Result<Selector, String> {
        let labels = terms(query.get("labelSelector"), true)?;
        let fields = terms(query.get("fieldSelector"), false)?;
        Ok(Selector { labels, fields })
    }

    /// Whether `object` is selected.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        let field = |path: &str| field_text(object, path);
        self.labels.iter().all(|t| holds(t, label))
            && self.fields.iter().all(|t| holds(t, |p| field(p)))
    }
}

fn holds<'a>(term: &Term, value: impl Fn(&str) -> Option<&'a str>) -> bool {
    match term {
        Term::Equals(k, v) => value(k) == Some(v.as_str()),
        // As in Kubernetes, an absent label (or field) is "not equal".
        Term::NotEquals(k, v) => value(k) != Some(v.as_str()),
        Term::Exists(k) => value(k).is_some(),
        Term::Absent(k) => value(k).is_none(),
    }
}

/// A field as text: strings as they are; absent fields read as empty for fields Kubernetes
/// always has (`spec.nodeName` of an unscheduled pod is "").
fn field_text<'a>(object: &'a Value, path: &str) -> Option<&'a str> {
    let mut at = object;
    for key in path.split('.') {
        match at.get(key) {
            Some(next) => at = next,
            None => return Some(""),
        }
    }
    at.as_str()
}

fn terms(text: Option<&String>, labels: bool) -> Result<Vec<Term>, String> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(|term| self::term(term.trim(), labels))
        .collect()
}

fn term(text: &str, labels: bool) -> Result<Term, String> {
    let refuse = || format!("selector term `{text}` is not supported by the fake API server");
    if text.contains(['(', ')']) || text.contains(" in ") || text.contains(" notin ") {
        return Err(refuse());
    }
    let pair = |k: &str, v: &str| (k.trim().to_string(), v.trim().to_string());
    if let Some((k, v)) = text.split_once("!=") {
        let (k, v) = pair(k, v);
        return Ok(Term::NotEquals(k, v));
    }
    if let Some((k, v)) = text.split_once("==").or_else(|| text.split_once('=')) {
        let (k, v) = pair(k, v);
        return Ok(Term::Equals(k, v));
    }
    match text.strip_prefix('!') {
        _ if !labels => Err(refuse()),
        Some(k) => Ok(Term::Absent(k.trim().to_string())),
        None => Ok(Term::Exists(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn selector(query: &str) -> Selector {
        Selector::parse(&query_pairs(Some(query))).expect("a supported selector")
    }

    #[test]
    fn query_is_percent_decoded() {
        let q = query_pairs(Some("fieldSelector=spec.nodeName%3Dnode-a&watch=true&x"));
        assert_eq!(q["fieldSelector"], "spec.nodeName=node-a");
        assert_eq!(q["watch"], "true");
        assert_eq!(q["x"], "");
        assert_eq!(query_pairs(Some("a=%zz%4"))["a"], "%zz%4");
    }

    #[test]
    fn label_and_field_terms() {
        let pod = json!({
            "metadata": {"name": "p", "labels": {"app": "web", "tier": "front"}},
            "spec": {"nodeName": "node-a"},
            "status": {"phase": "Running"},
        });
        assert!(selector("labelSelector=app%3Dweb,tier").matches(&pod));
        assert!(selector("labelSelector=app==web,!canary").matches(&pod));
        assert!(!selector("labelSelector=app%21%3Dweb").matches(&pod));
        assert!(selector("fieldSelector=spec.nodeName%3Dnode-a").matches(&pod));
        assert!(!selector("fieldSelector=spec.nodeName%3Dnode-b").matches(&pod));
        assert!(selector("fieldSelector=status.phase!%3DFailed").matches(&pod));
        assert!(selector("fieldSelector=spec.hostname%3D").matches(&pod));
        let set = Selector::parse(&query_pairs(Some("labelSelector=app+in+(a,b)")));
        assert!(set.is_err(), "set-based selectors are refused");
    }
}
