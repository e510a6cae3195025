//! Tables for the listings and the policy check, drawn from the admin API's views
//! (`crate::admin::views`). Cells stay short; `-o json` has every field.

use super::table::{Table, fields, list, yes_no};
use crate::admin::views::{
    CertsView, CheckView, PoliciesView, ProgramView, RouteTableView, RuleView, ServiceView,
    StatusView, WorkloadView,
};
use crate::config::HumanDuration;

pub fn status(s: &StatusView) -> String {
    let c = &s.counts;
    let uptime = HumanDuration(std::time::Duration::from_secs(s.uptime_seconds));
    let mtls = if s.mtls {
        format!("on (trust domain {})", s.trust_domain)
    } else {
        "off (no CA: plain TCP between pods)".to_owned()
    };
    let mut pairs = vec![
        ("node", s.node.clone()),
        ("version", s.version.clone()),
        ("uptime", uptime.to_string()),
        ("ready", yes_no(s.ready).to_owned()),
        ("mTLS", mtls),
        (
            "workloads",
            format!(
                "{} on this node ({} enrolled), {} in the mesh",
                c.workloads_here, c.enrolled_here, c.workloads
            ),
        ),
        ("namespaces", c.namespaces.to_string()),
        ("nodes", c.nodes.to_string()),
        ("services", c.services.to_string()),
        ("routes", c.routes.to_string()),
        (
            "policies",
            format!(
                "{} authorization, {} peer authentication",
                c.authorization_policies, c.peer_authentications
            ),
        ),
        ("certificates", c.certificates.to_string()),
    ];
    match &s.datapath.error {
        Some(e) => pairs.push(("datapath", format!("unavailable: {e}"))),
        None => {
            pairs.push(("connects", joined(&s.datapath.counters)));
            pairs.push(("map entries", joined(&s.datapath.maps)));
            pairs.push(("program runs", program_runs(&s.datapath.programs)));
        }
    }
    fields(&pairs)
}

/// `a=1 b=2`.
fn joined<V: std::fmt::Display>(m: &std::collections::BTreeMap<String, V>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `connect4=120/85us sockops=...`: runs and total time of each program.
fn program_runs(m: &std::collections::BTreeMap<String, ProgramView>) -> String {
    m.iter()
        .map(|(name, p)| format!("{name}={}/{}us", p.run_count, p.run_time_ns / 1000))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn workloads(rows: &[WorkloadView]) -> String {
    let mut t = Table::new(&[
        "namespace",
        "name",
        "node",
        "ips",
        "account",
        "enrolled",
        "captured",
        "mode",
    ]);
    for w in rows {
        let (namespace, name) = w.name.split_once('/').unwrap_or(("", &w.name));
        let captured = match &w.capture {
            None => "-",
            Some(c) => yes_no(c.captured),
        };
        let mode = if w.enrolled {
            format!("{:?}", w.peer_authentication).to_uppercase()
        } else {
            "-".to_owned()
        };
        t.row([
            namespace.to_owned(),
            name.to_owned(),
            w.node.clone(),
            list(&w.ips),
            w.service_account.clone(),
            yes_no(w.enrolled).to_owned(),
            captured.to_owned(),
            mode,
        ]);
    }
    t.render()
}

pub fn services(rows: &[ServiceView]) -> String {
    let mut t = Table::new(&[
        "namespace",
        "name",
        "vips",
        "ports",
        "endpoints",
        "balancer",
    ]);
    for s in rows {
        let (namespace, name) = s.name.split_once('/').unwrap_or(("", &s.name));
        let ports: Vec<String> = s
            .ports
            .iter()
            .map(|p| {
                let target = if p.target_port == p.port {
                    String::new()
                } else {
                    format!("->{}", p.target_port)
                };
                let proto = if p.protocol == "TCP" {
                    p.declared.clone()
                } else {
                    p.protocol.to_lowercase()
                };
                format!("{}{target}/{proto}", p.port)
            })
            .collect();
        let meshed = s.endpoints.iter().filter(|e| e.meshed).count();
        t.row([
            namespace.to_owned(),
            name.to_owned(),
            list(&s.vips),
            list(&ports),
            format!("{} ({meshed} meshed)", s.endpoints.len()),
            s.load_balancer.clone(),
        ]);
    }
    t.render()
}

pub fn routes(tables: &[RouteTableView]) -> String {
    let mut t = Table::new(&["service", "port", "route", "rule", "matches", "backends"]);
    for table in tables {
        for rule in &table.rules {
            t.row([
                table.service.clone(),
                table.port.to_string(),
                rule.route.clone(),
                rule_name(rule),
                matches(&rule.matches),
                backends(rule),
            ]);
        }
    }
    t.render()
}

pub fn rule_name(rule: &RuleView) -> String {
    match &rule.name {
        Some(name) => format!("{} ({name})", rule.index),
        None => rule.index.to_string(),
    }
}

pub fn backends(rule: &RuleView) -> String {
    if rule.backends.is_empty() {
        return "- (no backend: 500)".to_owned();
    }
    rule.backends
        .iter()
        .map(|b| format!("{}:{} w{}", b.service, b.port, b.weight))
        .collect::<Vec<_>>()
        .join(",")
}

/// A rule's `matches` in a few words: `PathPrefix /api GET, Exact /health`; `*` for none.
pub fn matches(value: &serde_json::Value) -> String {
    let Some(all) = value.as_array().filter(|a| !a.is_empty()) else {
        return "*".to_owned();
    };
    let one = |m: &serde_json::Value| -> String {
        let mut parts = Vec::new();
        if let Some(path) = m.get("path") {
            let kind = path["type"].as_str().unwrap_or("PathPrefix");
            parts.push(format!("{kind} {}", path["value"].as_str().unwrap_or("/")));
        }
        match m.get("method") {
            Some(serde_json::Value::String(method)) => parts.push(method.clone()),
            Some(grpc) if grpc.is_object() => parts.push(format!(
                "{}/{}",
                grpc["service"].as_str().unwrap_or("*"),
                grpc["method"].as_str().unwrap_or("*")
            )),
            _ => {}
        }
        for (key, label) in [("headers", "header"), ("queryParams", "query")] {
            for h in m.get(key).and_then(|h| h.as_array()).into_iter().flatten() {
                let (n, v) = (
                    h["name"].as_str().unwrap_or("?"),
                    h["value"].as_str().unwrap_or("?"),
                );
                parts.push(format!("{label} {n}={v}"));
            }
        }
        if parts.is_empty() {
            "*".to_owned()
        } else {
            parts.join(" ")
        }
    };
    all.iter().map(one).collect::<Vec<_>>().join(", ")
}

pub fn certs(c: &CertsView) -> String {
    if !c.mtls {
        return "mTLS is off on this node (no --ca-address): no certificates\n".to_owned();
    }
    let mut roots = Table::new(&["root", "subject", "not after"]);
    for r in &c.roots {
        roots.row([
            short(&r.fingerprint),
            r.subject.clone(),
            r.not_after.clone(),
        ]);
    }
    let mut certs = Table::new(&["identity", "serial", "not after", "root", "workloads"]);
    for cert in &c.certificates {
        certs.row([
            cert.id.clone(),
            short(&cert.serial),
            cert.not_after.clone(),
            cert.root
                .as_deref()
                .map_or_else(|| "unknown!".to_owned(), short),
            list(&cert.workloads),
        ]);
    }
    let mut out = if c.roots.is_empty() {
        "trust bundle: empty (the CA has not answered yet)\n".to_owned()
    } else {
        roots.render()
    };
    out.push('\n');
    if c.certificates.is_empty() {
        out.push_str("no workload certificate held yet\n");
    } else {
        out.push_str(&certs.render());
    }
    out
}

/// The first 16 hex digits: enough to tell roots and serials apart at a glance.
pub fn short(hex: &str) -> String {
    hex.chars().take(16).collect()
}

pub fn policies(p: &PoliciesView) -> String {
    let mut t = Table::new(&["kind", "name", "action", "rules", "selects"]);
    for a in &p.authorization {
        t.row([
            "AuthorizationPolicy".to_owned(),
            a.name.clone(),
            format!("{:?}", a.action).to_uppercase(),
            a.rules.to_string(),
            list(&a.selects),
        ]);
    }
    for peer in &p.peer_authentication {
        t.row([
            "PeerAuthentication".to_owned(),
            peer.name.clone(),
            format!("{:?}", peer.mode).to_uppercase(),
            "-".to_owned(),
            list(&peer.selects),
        ]);
    }
    t.render()
}

pub fn check(c: &CheckView) -> String {
    let request = match (&c.request.method, &c.request.path) {
        (Some(m), Some(p)) => format!("{m} {p} (L7, per request)"),
        _ => "a connection (L4)".to_owned(),
    };
    let verdict = if c.decision.allow { "ALLOW" } else { "DENY" };
    fields(&[
        (
            "source",
            format!(
                "{} ({})",
                c.source,
                c.source_id
                    .as_deref()
                    .unwrap_or("no identity: not enrolled")
            ),
        ),
        ("destination", format!("{} ({})", c.destination, c.workload)),
        ("request", request),
        ("verdict", format!("{verdict}: {}", c.decision.reason)),
        ("policies", list(&c.decision.applicable)),
    ])
}
