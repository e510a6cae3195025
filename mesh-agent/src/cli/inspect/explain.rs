//! `mesh-agent explain` for people: the source, the destination (with its route rules), the
//! request asked about, a table of endpoints with how each is reached and its verdict, and the
//! notes that say what the fields cannot.

use super::render::{backends, matches, rule_name, short};
use super::table::{Table, fields, list, yes_no};
use crate::admin::views::{ExplainEndpoint, ExplainView};

pub fn render(e: &ExplainView) -> String {
    let mut out = String::new();
    out.push_str(&source(e));
    out.push('\n');
    out.push_str(&destination(e));
    out.push('\n');
    out.push_str(&endpoints(&e.endpoints));
    if !e.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for note in &e.notes {
            out.push_str(&format!("  - {note}\n"));
        }
    }
    out
}

fn source(e: &ExplainView) -> String {
    let s = &e.source;
    let here = if s.here { " (this node)" } else { "" };
    let captured = match &s.capture {
        None => "unknown here: ask the agent of its node".to_owned(),
        Some(c) if c.captured => format!("yes ({})", list(&c.programs)),
        Some(c) => format!(
            "no: {}",
            c.problem.as_deref().unwrap_or("no program attached")
        ),
    };
    let certificate = match &s.certificate {
        Some(c) => format!(
            "serial {}, valid until {}, root {}",
            short(&c.serial),
            c.not_after,
            c.root
                .as_deref()
                .map_or_else(|| "unknown!".to_owned(), short)
        ),
        None if e.mtls && s.here && s.enrolled => "none held yet".to_owned(),
        None => "-".to_owned(),
    };
    fields(&[
        ("source", format!("{} on node {}{here}", s.workload, s.node)),
        ("enrolled", yes_no(s.enrolled).to_owned()),
        ("captured", captured),
        (
            "identity",
            s.identity.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        ("certificate", certificate),
        ("mTLS", if e.mtls { "on" } else { "off" }.to_owned()),
    ])
}

fn destination(e: &ExplainView) -> String {
    let d = &e.destination;
    let what = match (&d.service, &d.workload) {
        (Some(s), _) => format!(
            "service {} port {} -> {} ({})",
            s.name, s.port, s.target_port, s.protocol
        ),
        (None, Some(w)) => format!("pod {w} (not a service: forwarded as opaque TCP)"),
        (None, None) => "outside the mesh model (forwarded as addressed)".to_owned(),
    };
    let mut pairs = vec![("destination", format!("{} = {what}", d.address))];
    if let Some(why) = &d.excluded {
        pairs.push(("excluded", why.clone()));
    }
    let request = match (&e.request.method, &e.request.path) {
        (Some(m), Some(p)) => format!("{m} {p} to port {} (L7)", e.request.port),
        _ => format!("a connection to port {} (L4)", e.request.port),
    };
    pairs.push(("asked about", request));
    if d.service.is_some() {
        let routes = if d.routes.is_empty() {
            "none: requests go to the service itself".to_owned()
        } else {
            format!("{} rule(s):", d.routes.len())
        };
        pairs.push(("routes", routes));
    }
    let mut out = fields(&pairs);
    if !d.routes.is_empty() {
        let mut t = Table::new(&["route", "rule", "matches", "backends"]);
        for r in &d.routes {
            t.row([
                r.route.clone(),
                rule_name(r),
                matches(&r.matches),
                backends(r),
            ]);
        }
        for line in t.render().lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// `next` for the balancer's choice, then the endpoint's health when the balancer tracks it.
fn balancer(ep: &ExplainEndpoint) -> String {
    let mut parts = Vec::new();
    if ep.chosen {
        parts.push("next".to_owned());
    }
    if let Some(h) = &ep.health {
        match h.ejected_for_ms {
            Some(ms) => parts.push(format!("ejected {:.1}s", ms as f64 / 1000.0)),
            None => parts.push(format!("{:.2}ms", h.latency_ms)),
        }
        if h.in_flight > 0 {
            parts.push(format!("{} in flight", h.in_flight));
        }
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

fn endpoints(rows: &[ExplainEndpoint]) -> String {
    if rows.is_empty() {
        return "Endpoints: none\n".to_owned();
    }
    let mut t = Table::new(&[
        "endpoint",
        "address",
        "node",
        "via",
        "mode",
        "authorization",
        "verdict",
        "balancer",
    ]);
    for ep in rows {
        let authorization = match &ep.authorization {
            None => "-".to_owned(),
            Some(d) if ep.enforced => d.reason.clone(),
            Some(d) => format!("not enforced ({})", d.reason),
        };
        t.row([
            ep.workload.clone().unwrap_or_else(|| "-".to_owned()),
            ep.address.to_string(),
            ep.node.clone().unwrap_or_else(|| "-".to_owned()),
            ep.via.clone(),
            ep.peer_authentication
                .map_or_else(|| "-".to_owned(), |m| format!("{m:?}").to_uppercase()),
            authorization,
            ep.verdict.to_uppercase(),
            balancer(ep),
        ]);
    }
    format!("Endpoints:\n{}", t.render())
}
