//! The local state file (`--config mesh.yaml`): its YAML schema and how it becomes a
//! [`MeshState`].
//!
//! Parsing is strict (camelCase keys, unknown fields rejected) and stops at the first syntax or
//! shape error, which then carries the field path and the line and column. Everything the schema
//! cannot express (names, addresses, ports, references, conflicts) is checked afterwards by
//! [`super::validate`], which reports every problem at once. Route objects (`routes:`) are kept
//! as untyped values here and read by [`super::routes`] with the Gateway API's own types, so
//! that each route's problems are reported with the others.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_path_to_error::Segment;

use super::model::{Labels, MeshState};
use super::validate;

/// Every problem found in a state file, each naming the field and the reason.
///
/// `problems` hold `<field path>: <reason>`; `Display` prints one `<file>: <problem>` per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.lines())]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl ConfigError {
    fn lines(&self) -> Lines<'_> {
        Lines {
            file: &self.file,
            problems: &self.problems,
        }
    }
}

struct Lines<'a> {
    file: &'a Path,
    problems: &'a [String],
}

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {problem}", self.file.display())?;
        }
        Ok(())
    }
}

/// Reads, parses and validates a state file, and builds the snapshot (endpoints resolved,
/// indexes built). Cgroup ids are left to [`super::resolve_cgroups`].
pub fn load_file(path: &Path) -> Result<MeshState, ConfigError> {
    let yaml = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        problems: vec![format!("cannot read the file: {e}")],
    })?;
    parse_str(path, &yaml)
}

/// [`load_file`] for text already in memory; `name` is the file name errors print.
pub fn parse_str(name: &Path, yaml: &str) -> Result<MeshState, ConfigError> {
    let fail = |problems| ConfigError {
        file: name.to_path_buf(),
        problems,
    };
    let file = parse_yaml(yaml).map_err(|problem| fail(vec![problem]))?;
    validate::build(&file).map_err(fail)
}

/// Deserializes the document, turning a failure into `<path>: <reason at line, column>`.
fn parse_yaml(yaml: &str) -> Result<MeshFile, String> {
    let mut path = None;
    // The parser's default budget (250,000 nodes) stops near 15,000 workloads. The file is the
    // operator's, so its node and event budget grows with its size; the alias limits, which
    // keep a small document from expanding into a huge one, stay at their defaults.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: yaml.len().max(250_000),
            max_events: yaml.len().saturating_mul(2).max(1_000_000),
        },
    };
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(yaml, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().clone());
            e.into_inner()
        })
    });
    // An empty document (or one holding only comments) is an empty mesh.
    let file: Option<MeshFile> = parsed.map_err(|e| {
        // One line, worded for whoever edits the file (no snippet, no API hints).
        let reason = e.render_with_options(serde_saphyr::render_options! {
            formatter: &serde_saphyr::UserMessageFormatter,
            snippets: serde_saphyr::SnippetMode::Off,
        });
        // For an unknown key the path ends at the key itself; the message names it already.
        let unknown_key = matches!(
            e.without_snippet(),
            serde_saphyr::Error::SerdeUnknownField { .. }
        );
        match path.map(|p| render_path(&p, unknown_key)) {
            Some(p) if !p.is_empty() => format!("{p}: {reason}"),
            _ => reason,
        }
    })?;
    Ok(file.unwrap_or_default())
}

/// `services[0].ports[1]`, `namespaces[0].labels["weft.dev/mesh"]`: the form validation uses.
pub(super) fn render_path(path: &serde_path_to_error::Path, drop_last_key: bool) -> String {
    let mut segments: Vec<&Segment> = path.iter().collect();
    if drop_last_key && matches!(segments.last(), Some(Segment::Map { .. })) {
        segments.pop();
    }
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => push_key(&mut out, key),
            // Serde cannot name the key (a duplicate key, for example); the position in the
            // message still locates it.
            Segment::Unknown => break,
        }
    }
    out
}

/// Appends `.key`, or `["key"]` when the key is not a plain identifier (label keys).
pub(super) fn push_key(out: &mut String, key: &str) {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
    } else {
        out.push_str(&format!("[{key:?}]"));
    }
}

/// The whole file. Every list is optional; `key:` with nothing after it counts as empty.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct MeshFile {
    pub namespaces: Option<Vec<NamespaceSpec>>,
    pub nodes: Option<Vec<NodeSpec>>,
    pub workloads: Option<Vec<WorkloadSpec>>,
    pub services: Option<Vec<ServiceSpec>>,
    /// Gateway API HTTPRoute and GRPCRoute objects, whole (`apiVersion`, `kind`, ...).
    pub routes: Option<Vec<serde_json::Value>>,
    /// `AuthorizationPolicy` and `PeerAuthentication` specs with their `name` and
    /// `namespace`, read by [`super::policies`] with the policy module's own types.
    pub authorization_policies: Option<Vec<serde_json::Value>>,
    pub peer_authentications: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct NamespaceSpec {
    pub name: String,
    pub labels: Option<Labels>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct NodeSpec {
    pub name: String,
    pub addresses: Option<Vec<String>>,
}

/// A pod. Addresses, ports and paths stay text here so that validation can report every bad
/// one with its own path instead of stopping at the first.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct WorkloadSpec {
    pub name: String,
    pub namespace: String,
    pub uid: Option<String>,
    pub service_account: Option<String>,
    pub node: String,
    pub ips: Option<Vec<String>>,
    pub labels: Option<Labels>,
    pub cgroup: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ServiceSpec {
    pub name: String,
    pub namespace: String,
    pub vips: Option<Vec<String>>,
    pub selector: Option<Labels>,
    pub ports: Option<Vec<ServicePortSpec>>,
    pub traffic_policy: Option<TrafficPolicySpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ServicePortSpec {
    pub name: Option<String>,
    pub port: i64,
    pub target_port: Option<i64>,
    pub protocol: Option<String>,
    pub app_protocol: Option<String>,
}

/// A service's traffic policy. Every field is optional (defaults in [`super::model`]); enums
/// and durations stay text so that validation reports each bad value with its path.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct TrafficPolicySpec {
    pub load_balancer: Option<LoadBalancerSpec>,
    pub circuit_breaker: Option<CircuitBreakerSpec>,
    pub outlier_detection: Option<OutlierDetectionSpec>,
    pub retry: Option<RetrySpec>,
    pub retry_budget: Option<RetryBudgetSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct LoadBalancerSpec {
    pub policy: Option<String>,
    pub hash: Option<HashSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct HashSpec {
    pub header: Option<String>,
    pub cookie: Option<String>,
    pub source_workload: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CircuitBreakerSpec {
    pub max_connections: Option<i64>,
    pub max_pending_requests: Option<i64>,
    pub max_requests: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct OutlierDetectionSpec {
    #[serde(rename = "consecutive5xx")]
    pub consecutive_5xx: Option<i64>,
    pub consecutive_gateway_errors: Option<i64>,
    pub base_ejection_time: Option<String>,
    pub max_ejection_time: Option<String>,
    pub max_ejection_percent: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RetrySpec {
    pub attempts: Option<i64>,
    pub on: Option<Vec<String>>,
    pub grpc_statuses: Option<Vec<String>>,
    pub per_try_timeout: Option<String>,
    pub backoff: Option<BackoffSpec>,
    pub max_replay_bytes: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct BackoffSpec {
    pub base: Option<String>,
    pub max: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RetryBudgetSpec {
    pub ratio: Option<f64>,
    pub min_retries_per_second: Option<i64>,
}

#[cfg(test)]
mod tests;
