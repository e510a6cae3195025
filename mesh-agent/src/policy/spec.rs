//! The policy kinds as users write them: `AuthorizationPolicy` and `PeerAuthentication`, shaped
//! like Istio's (group `weft.dev`, version `v1alpha1`).
//!
//! These types are the one definition of the schema: the state file reads them (through
//! `crate::state`, which also rejects unknown fields), the custom resources are derived from
//! them (the `#[kube]` attributes below generate `AuthorizationPolicy` and `PeerAuthentication`,
//! whose CRDs `crate::crd` renders), and [`super::compile`] turns them into the matchers
//! evaluation runs. They accept unknown fields, as Kubernetes clients must; strictness is the
//! source's job. Lists are `Option` so that an empty list written by a user reads back as
//! written.
//!
//! The derive sits on the spec structs because `CustomResource` generates the root object from
//! the struct it decorates: a separate wrapper would be a second spec type. The group and
//! version literals must equal [`API_GROUP`] and [`API_VERSION`] (tested in `crate::crd`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PeerAuthMode;

/// API group of weft's policy kinds.
pub const API_GROUP: &str = "weft.dev";
/// API version of weft's policy kinds.
pub const API_VERSION: &str = "v1alpha1";

/// A policy object of the mesh model: its name, its namespace and its spec (written flat, as in
/// the state file).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Named<S> {
    pub name: String,
    pub namespace: String,
    #[serde(flatten)]
    pub spec: S,
}

impl<S> Named<S> {
    /// `namespace/name`, the name decisions and metrics carry.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Who may do what to the workloads the policy selects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema, CustomResource)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "AuthorizationPolicy",
    namespaced,
    derive = "PartialEq",
    shortname = "authz",
    category = "weft",
    doc = "Who may reach the workloads of a namespace: ALLOW and DENY rules on the source \
           identity, the port and HTTP attributes (see docs/policy.md).",
    printcolumn(
        name = "Action",
        type_ = "string",
        json_path = ".spec.action",
        description = "ALLOW or DENY (absent: ALLOW)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    /// The workloads of the namespace it applies to; absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// What a matching rule does.
    #[serde(default)]
    pub action: Action,
    /// A request matches the policy when any rule matches. No rules: an ALLOW policy allows
    /// nothing, a DENY policy denies nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    #[default]
    Allow,
    Deny,
}

/// Selects workloads by their labels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// Every label here must be on the workload; empty: every workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// Matches when its `from`, `to` and `when` all match; an absent part matches anything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Sources: any entry may match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<RuleFrom>>,
    /// Operations: any entry may match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<RuleTo>>,
    /// Request headers: every condition must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Vec<Condition>>,
}

/// A source: every field given must match; the values of one field are alternatives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleFrom {
    /// `<trust domain>/ns/<namespace>/sa/<service account>` (or with `spiffe://`); `*` as the
    /// whole value, its first or its last character.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_principals: Option<Vec<String>>,
    /// Namespaces of the source identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_namespaces: Option<Vec<String>>,
}

/// An operation: every field given must match; the values of one field are alternatives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleTo {
    /// Destination ports (the pod's target port), as numbers or strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<IntOrString>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ports: Option<Vec<IntOrString>>,
    /// HTTP methods (case-sensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_methods: Option<Vec<String>>,
    /// URL paths without the query: exact, `/prefix/*`, `*suffix` or `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_paths: Option<Vec<String>>,
}

/// A request header condition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Header name (case-insensitive).
    pub header: String,
    /// Some value of the header matches one of these (wildcards as for paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// No value of the header matches any of these; an absent header matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_values: Option<Vec<String>>,
}

/// Whether the workloads it selects accept plaintext from other pods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, CustomResource)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "PeerAuthentication",
    namespaced,
    derive = "PartialEq",
    shortname = "peerauth",
    category = "weft",
    doc = "Whether the workloads of a namespace accept plaintext from other pods (PERMISSIVE) \
           or only mTLS (STRICT, enforced in the kernel); see docs/policy.md.",
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "STRICT or PERMISSIVE"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    /// The workloads of the namespace it applies to; absent: the whole namespace. A policy
    /// with a selector wins over the namespace-wide one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    pub mode: PeerAuthMode,
}
