//! From policy objects to a [`PolicyIndex`]: every value checked (patterns, principals,
//! namespaces, methods, paths, ports, header names), each problem reported with its field path
//! inside the object's spec. Value checks live in `checks`.
//!
//! A source that must refuse a bad configuration whole (the state file) rejects on any
//! problem; one that reports per object (Kubernetes) can keep the index, which leaves the
//! objects with problems out.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::index::{CompiledPeer, CompiledPolicy, NamespacePolicies, PolicyIndex, Selector};
use super::rules::{CompiledRule, FromEntry, HeaderCondition, ToEntry};
use super::spec::{
    Action, AuthorizationPolicySpec, Condition, Named, PeerAuthenticationSpec, Rule, RuleFrom,
    RuleTo, WorkloadSelector,
};

mod checks;

/// Which list an object is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    AuthorizationPolicy,
    PeerAuthentication,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::PeerAuthentication => "PeerAuthentication",
        })
    }
}

/// One problem in one object: `path` is the field inside its spec (`rules[0].to[1].paths[0]`),
/// empty for the object as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: Kind,
    /// Index of the object in the list given to [`compile`].
    pub index: usize,
    pub path: String,
    pub reason: String,
}

/// Compiles both lists. Objects with problems are left out of the index; their problems are
/// returned (in list order).
pub fn compile(
    authorization: &[Named<AuthorizationPolicySpec>],
    peer: &[Named<PeerAuthenticationSpec>],
) -> (PolicyIndex, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut by_namespace: HashMap<String, NamespacePolicies> = HashMap::new();
    for (index, object) in authorization.iter().enumerate() {
        let mut c = Checker::new(Kind::AuthorizationPolicy, index, &mut problems);
        if let Some(policy) = c.authorization(object) {
            let ns = by_namespace.entry(object.namespace.clone()).or_default();
            match policy.action {
                Action::Allow => ns.allow.push(policy),
                Action::Deny => ns.deny.push(policy),
            }
        }
    }
    // Where the namespace-wide peer authentication of each namespace was declared.
    let mut namespace_wide: HashMap<&str, &str> = HashMap::new();
    for (index, object) in peer.iter().enumerate() {
        let mut c = Checker::new(Kind::PeerAuthentication, index, &mut problems);
        let selector = selector(object.spec.selector.as_ref());
        if selector.is_namespace_wide() {
            if let Some(first) = namespace_wide.get(object.namespace.as_str()) {
                let reason = format!(
                    "namespace `{}` already has a namespace-wide peer authentication (`{first}`); give this one a selector",
                    object.namespace
                );
                c.problem("", reason);
                continue;
            }
            namespace_wide.insert(&object.namespace, &object.name);
        }
        let ns = by_namespace.entry(object.namespace.clone()).or_default();
        ns.peer.push(CompiledPeer {
            name: object.name.clone(),
            selector,
            mode: object.spec.mode,
        });
    }
    (PolicyIndex::new(by_namespace), problems)
}

/// The labels a selector requires; absent or empty selects the whole namespace.
fn selector(spec: Option<&WorkloadSelector>) -> Selector {
    let labels = spec.and_then(|s| s.match_labels.as_ref());
    let pairs = labels.into_iter().flatten();
    Selector(pairs.map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Collects the problems of one object, with paths relative to its spec.
struct Checker<'a> {
    kind: Kind,
    index: usize,
    problems: &'a mut Vec<Problem>,
}

impl<'a> Checker<'a> {
    fn new(kind: Kind, index: usize, problems: &'a mut Vec<Problem>) -> Self {
        Checker {
            kind,
            index,
            problems,
        }
    }

    fn problem(&mut self, path: &str, reason: impl Into<String>) {
        self.problems.push(Problem {
            kind: self.kind,
            index: self.index,
            path: path.to_string(),
            reason: reason.into(),
        });
    }

    fn count(&self) -> usize {
        self.problems.len()
    }

    fn authorization(&mut self, object: &Named<AuthorizationPolicySpec>) -> Option<CompiledPolicy> {
        let before = self.count();
        let spec = &object.spec;
        let selector = selector(spec.selector.as_ref());
        let mut rules = Vec::new();
        for (i, rule) in spec.rules.iter().flatten().enumerate() {
            rules.push(self.rule(&format!("rules[{i}]"), rule));
        }
        (self.count() == before).then(|| CompiledPolicy {
            name: Arc::from(object.key()),
            action: spec.action,
            selector,
            rules,
        })
    }

    fn rule(&mut self, at: &str, rule: &Rule) -> CompiledRule {
        CompiledRule {
            from: self.entries(&format!("{at}.from"), rule.from.as_deref(), Self::source),
            to: self.entries(&format!("{at}.to"), rule.to.as_deref(), Self::operation),
            when: (self.entries(&format!("{at}.when"), rule.when.as_deref(), Self::condition))
                .into_iter()
                .flatten()
                .collect(),
        }
    }

    /// A list of entries: absent is empty, given-but-empty is a mistake (it reads as "none"
    /// but would mean "any").
    fn entries<S, T>(
        &mut self,
        at: &str,
        list: Option<&[S]>,
        each: fn(&mut Self, &str, &S) -> T,
    ) -> Vec<T> {
        let Some(list) = list else {
            return Vec::new();
        };
        if list.is_empty() {
            self.problem(
                at,
                "must not be empty when given; leave it out to match anything",
            );
        }
        let compiled = list.iter().enumerate();
        compiled
            .map(|(i, s)| each(self, &format!("{at}[{i}]"), s))
            .collect()
    }

    fn source(&mut self, at: &str, spec: &RuleFrom) -> FromEntry {
        let given = [
            &spec.principals,
            &spec.not_principals,
            &spec.namespaces,
            &spec.not_namespaces,
        ];
        if given.iter().all(|l| l.is_none()) {
            let reason = "names no principals, notPrincipals, namespaces or notNamespaces";
            self.problem(at, reason);
        }
        FromEntry {
            principals: self.values(at, "principals", &spec.principals, |v| checks::principal(v)),
            not_principals: self.values(at, "notPrincipals", &spec.not_principals, |v| {
                checks::principal(v)
            }),
            namespaces: self.values(at, "namespaces", &spec.namespaces, |v| checks::namespace(v)),
            not_namespaces: self.values(at, "notNamespaces", &spec.not_namespaces, |v| {
                checks::namespace(v)
            }),
        }
    }

    fn operation(&mut self, at: &str, spec: &RuleTo) -> ToEntry {
        let given = [
            &spec.methods,
            &spec.not_methods,
            &spec.paths,
            &spec.not_paths,
        ];
        if given.iter().all(|l| l.is_none()) && spec.ports.is_none() && spec.not_ports.is_none() {
            let reason = "names no ports, methods, paths or their not* forms";
            self.problem(at, reason);
        }
        ToEntry {
            ports: self.values(at, "ports", &spec.ports, checks::port),
            not_ports: self.values(at, "notPorts", &spec.not_ports, checks::port),
            methods: self.values(at, "methods", &spec.methods, |v| checks::method(v)),
            not_methods: self.values(at, "notMethods", &spec.not_methods, |v| checks::method(v)),
            paths: self.values(at, "paths", &spec.paths, |v| checks::path(v)),
            not_paths: self.values(at, "notPaths", &spec.not_paths, |v| checks::path(v)),
        }
    }

    fn condition(&mut self, at: &str, spec: &Condition) -> Option<HeaderCondition> {
        if spec.values.is_none() && spec.not_values.is_none() {
            self.problem(at, "needs `values` or `notValues`");
        }
        let values = self.values(at, "values", &spec.values, |v| checks::header_value(v));
        let not_values = self.values(at, "notValues", &spec.not_values, |v| {
            checks::header_value(v)
        });
        match checks::header_name(&spec.header) {
            Ok(header) => Some(HeaderCondition {
                header,
                values,
                not_values,
            }),
            Err(reason) => {
                self.problem(&format!("{at}.header"), reason);
                None
            }
        }
    }

    /// A list of values of one field, each checked by `check` (whose reason names the value);
    /// problems are `<at>.<field>[<i>]: <reason>`.
    fn values<S, T>(
        &mut self,
        at: &str,
        field: &str,
        list: &Option<Vec<S>>,
        check: impl Fn(&S) -> Result<T, String>,
    ) -> Vec<T> {
        let Some(list) = list else {
            return Vec::new();
        };
        if list.is_empty() {
            let reason = "must not be empty when given; leave it out to match anything";
            self.problem(&format!("{at}.{field}"), reason);
        }
        let mut out = Vec::with_capacity(list.len());
        for (i, value) in list.iter().enumerate() {
            match check(value) {
                Ok(v) => out.push(v),
                Err(reason) => self.problem(&format!("{at}.{field}[{i}]"), reason),
            }
        }
        out
    }
}
