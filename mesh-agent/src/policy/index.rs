//! The compiled policies of one snapshot, by namespace, and the two questions the proxy asks
//! of them: may this request reach this workload, and does this workload require mTLS.
//!
//! Built by [`super::compile`]; kept in the snapshot (`crate::state::MeshState`), which
//! exposes the questions. Evaluation allocates nothing: names are shared, the subject borrows
//! from the request.

use std::collections::HashMap;
use std::sync::Arc;

use super::rules::{CompiledRule, Mode, Subject};
use super::{Action, Decision, Layer, PeerAuthMode, Request};
use crate::state::{Labels, Workload};

/// Every compiled policy of a snapshot. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct PolicyIndex {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_namespace: HashMap<String, NamespacePolicies>,
    /// The empty policy name, shared so that decisions without a policy do not allocate.
    none: Arc<str>,
}

/// The policies of one namespace, each list in name order so that the policy a decision
/// names does not depend on the order of the source.
#[derive(Debug, Default)]
pub(super) struct NamespacePolicies {
    pub deny: Vec<CompiledPolicy>,
    pub allow: Vec<CompiledPolicy>,
    /// Workload-specific ones first, then the namespace-wide one.
    pub peer: Vec<CompiledPeer>,
}

#[derive(Debug)]
pub(super) struct CompiledPolicy {
    /// `namespace/name`.
    pub name: Arc<str>,
    pub action: Action,
    pub selector: Selector,
    pub rules: Vec<CompiledRule>,
}

#[derive(Debug)]
pub(super) struct CompiledPeer {
    pub name: String,
    pub selector: Selector,
    pub mode: PeerAuthMode,
}

/// Labels a workload must carry; empty selects every workload of the namespace.
#[derive(Debug, Default)]
pub(super) struct Selector(pub Vec<(String, String)>);

impl Selector {
    pub(super) fn selects(&self, labels: &Labels) -> bool {
        self.0.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    pub(super) fn is_namespace_wide(&self) -> bool {
        self.0.is_empty()
    }
}

impl CompiledPolicy {
    fn matches(&self, s: &Subject, layer: Layer) -> bool {
        let mode = match (layer, self.action) {
            (Layer::L7, _) => Mode::L7,
            (Layer::L4, Action::Allow) => Mode::L4Allow,
            (Layer::L4, Action::Deny) => Mode::L4Deny,
        };
        self.rules.iter().any(|r| r.matches(s, mode))
    }
}

impl PolicyIndex {
    pub(super) fn new(mut by_namespace: HashMap<String, NamespacePolicies>) -> Self {
        for ns in by_namespace.values_mut() {
            ns.deny.sort_by(|a, b| a.name.cmp(&b.name));
            ns.allow.sort_by(|a, b| a.name.cmp(&b.name));
            ns.peer.sort_by(|a, b| {
                let rank = |p: &CompiledPeer| p.selector.is_namespace_wide();
                rank(a).cmp(&rank(b)).then_with(|| a.name.cmp(&b.name))
            });
        }
        PolicyIndex {
            inner: Arc::new(Inner {
                by_namespace,
                none: Arc::from(""),
            }),
        }
    }

    /// DENY policies first (a match denies), then ALLOW policies (one must match if any
    /// applies), else allow.
    pub fn authorize(&self, dst: &Workload, req: &Request) -> Decision {
        let decision = |allow, policy: &Arc<str>| Decision {
            allow,
            policy: policy.clone(),
        };
        let Some(ns) = self.inner.by_namespace.get(dst.key.namespace.as_str()) else {
            return decision(true, &self.inner.none);
        };
        let subject = Subject::of(req);
        let layer = req.layer();
        let applies = |p: &&CompiledPolicy| p.selector.selects(&dst.labels);
        if let Some(p) = ns
            .deny
            .iter()
            .filter(applies)
            .find(|p| p.matches(&subject, layer))
        {
            return decision(false, &p.name);
        }
        let mut allow_applies = false;
        for p in ns.allow.iter().filter(applies) {
            allow_applies = true;
            if p.matches(&subject, layer) {
                return decision(true, &p.name);
            }
        }
        decision(!allow_applies, &self.inner.none)
    }

    /// The mode of the workload-specific policy selecting `w`, else of the namespace-wide
    /// one, else PERMISSIVE.
    pub fn peer_authentication(&self, w: &Workload) -> PeerAuthMode {
        self.inner
            .by_namespace
            .get(w.key.namespace.as_str())
            .and_then(|ns| ns.peer.iter().find(|p| p.selector.selects(&w.labels)))
            .map_or(PeerAuthMode::Permissive, |p| p.mode)
    }
}
