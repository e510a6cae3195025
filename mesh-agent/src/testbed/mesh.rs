//! Writes the local mesh state file (`mesh.yaml`) for a test bed: the bed knows each pod's
//! node, address and cgroup, the caller says which namespace, labels and services.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::TestBed;

/// A mesh described in terms of the bed's short pod names.
#[derive(Default, Clone)]
pub struct MeshSpec {
    /// Namespace name -> enrolled (labelled `weft.dev/mesh: enabled`).
    pub namespaces: BTreeMap<String, bool>,
    pub workloads: Vec<WorkloadSpec>,
    pub services: Vec<ServiceSpec>,
    /// Gateway API route objects, as YAML list items (`- apiVersion: ...`), appended under `routes:`.
    pub routes: Vec<String>,
    /// Pod -> service account (default: the state file's default).
    pub service_accounts: BTreeMap<String, String>,
    /// Top-level YAML sections appended as they are (`authorizationPolicies:` ...).
    pub sections: Vec<String>,
}

#[derive(Clone)]
pub struct WorkloadSpec {
    pub pod: String,
    pub namespace: String,
    pub labels: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub namespace: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub target_port: u16,
    pub selector: Vec<(String, String)>,
    /// Port name (`http`, `grpc`, `tcp-...`): declares the protocol like Kubernetes port names.
    pub port_name: Option<String>,
    pub app_protocol: Option<String>,
    /// Extra YAML for the service item (e.g. a `trafficPolicy:` block), indented by 4 spaces.
    pub extra: String,
}

impl MeshSpec {
    pub fn namespace(mut self, name: &str, enrolled: bool) -> Self {
        self.namespaces.insert(name.into(), enrolled);
        self
    }

    /// Declares the bed's pod `pod` as a workload in `namespace` with label `app=<app>`.
    pub fn workload(self, pod: &str, namespace: &str, app: &str) -> Self {
        self.workload_with(pod, namespace, &[("app", app)])
    }

    /// Declares the bed's pod `pod` as a workload with these labels.
    pub fn workload_with(mut self, pod: &str, namespace: &str, labels: &[(&str, &str)]) -> Self {
        self.workloads.push(WorkloadSpec {
            pod: pod.into(),
            namespace: namespace.into(),
            labels: pairs(labels),
        });
        self
    }

    /// A TCP service `namespace/name` at `vip:port` selecting `app=<app>` on `target_port`.
    pub fn service(
        mut self,
        namespace: &str,
        name: &str,
        vip: Ipv4Addr,
        port: u16,
        target_port: u16,
        app: &str,
    ) -> Self {
        self.services.push(ServiceSpec {
            name: name.into(),
            namespace: namespace.into(),
            vip,
            port,
            target_port,
            selector: vec![("app".into(), app.into())],
            port_name: None,
            app_protocol: None,
            extra: String::new(),
        });
        self
    }

    /// Adds a fully described service.
    pub fn service_spec(mut self, spec: ServiceSpec) -> Self {
        self.services.push(spec);
        self
    }

    /// Adds a Gateway API route object (YAML of one list item, starting with `- `).
    pub fn route(mut self, yaml: &str) -> Self {
        self.routes.push(yaml.trim_end().to_string());
        self
    }

    /// Runs `pod` as service account `sa` (its SPIFFE identity).
    pub fn service_account(mut self, pod: &str, sa: &str) -> Self {
        self.service_accounts.insert(pod.into(), sa.into());
        self
    }

    /// Appends a top-level section, e.g. `authorizationPolicies:\n- name: ...`.
    pub fn section(mut self, yaml: &str) -> Self {
        self.sections.push(yaml.into());
        self
    }

    /// Renders the YAML for this bed.
    pub fn render(&self, bed: &TestBed) -> String {
        let mut y = String::from("namespaces:\n");
        for (ns, enrolled) in &self.namespaces {
            let _ = writeln!(y, "  - name: {ns}");
            if *enrolled {
                let _ = writeln!(y, "    labels: {{weft.dev/mesh: enabled}}");
            }
        }
        y.push_str("nodes:\n");
        for node in bed.nodes() {
            let _ = writeln!(y, "  - name: {}\n    addresses: [{}]", node.name, node.ip);
        }
        y.push_str("workloads:\n");
        for w in &self.workloads {
            let pod = bed.pod(&w.pod);
            let node = bed.node(&pod.node);
            let _ = writeln!(
                y,
                "  - name: {}\n    namespace: {}\n    node: {}\n    ips: [{}]\n    cgroup: {}\n    labels: {}",
                w.pod,
                w.namespace,
                node.name,
                pod.ip,
                pod.cgroup.display(),
                flow_map(&w.labels)
            );
            if let Some(sa) = self.service_accounts.get(&w.pod) {
                let _ = writeln!(y, "    serviceAccount: {sa}");
            }
        }
        y.push_str("services:\n");
        for s in &self.services {
            let _ = writeln!(
                y,
                "  - name: {}\n    namespace: {}\n    vips: [{}]\n    selector: {}\n    ports:\n      - port: {}\n        targetPort: {}",
                s.name,
                s.namespace,
                s.vip,
                flow_map(&s.selector),
                s.port,
                s.target_port
            );
            if let Some(name) = &s.port_name {
                let _ = writeln!(y, "        name: {name}");
            }
            if let Some(proto) = &s.app_protocol {
                let _ = writeln!(y, "        appProtocol: {proto}");
            }
            for line in s.extra.lines() {
                let _ = writeln!(y, "    {line}");
            }
        }
        if !self.routes.is_empty() {
            y.push_str("routes:\n");
            for route in &self.routes {
                for line in route.lines() {
                    let _ = writeln!(y, "  {line}");
                }
            }
        }
        for section in &self.sections {
            y.push_str(section.trim_end());
            y.push('\n');
        }
        y
    }

    /// Writes the YAML to `<bed work dir>/<file name>` and returns the path.
    pub fn write(&self, bed: &TestBed, file_name: &str) -> Result<PathBuf> {
        let path = bed.work_dir().join(file_name);
        write_atomically(&path, &self.render(bed))?;
        Ok(path)
    }
}

/// Replaces a file in one step, so a watching agent never reads half of it.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {tmp:?}"))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {path:?}"))
}

fn pairs(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn flow_map(pairs: &[(String, String)]) -> String {
    let items: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", items.join(", "))
}
