//! Cost of choosing a route rule: `RouteTable::select()` on a service port with 52 rules
//! (exact paths, prefixes, header matches, regular expressions) spread over five HTTPRoutes,
//! built through the state file as the agent builds it. Small sample sizes keep the whole run
//! to a few seconds.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Uri};
use mesh_agent::state::{MeshState, parse_str};

const MESH: &str = r#"
namespaces: [{name: shop}]
services:
  - {name: web, namespace: shop, vips: [10.96.0.20], ports: [{port: 80}]}
  - {name: v1, namespace: shop, vips: [10.96.0.21], ports: [{port: 80}]}
  - {name: v2, namespace: shop, vips: [10.96.0.22], ports: [{port: 80}]}
routes:
"#;

/// One HTTPRoute on `shop/web:80` holding `rules` (each a flow-style rule).
fn route(name: &str, rules: &[String]) -> String {
    format!(
        "  - apiVersion: gateway.networking.k8s.io/v1\n    kind: HTTPRoute\n    metadata: \
         {{name: {name}, namespace: shop}}\n    spec:\n      parentRefs: [{{group: \"\", kind: \
         Service, name: web, port: 80}}]\n      rules:\n{}",
        rules
            .iter()
            .map(|r| format!("        - {r}\n"))
            .collect::<String>()
    )
}

fn rule(matches: &str) -> String {
    format!(
        "{{matches: [{matches}], backendRefs: [{{name: v1, port: 80, weight: 9}}, {{name: v2, port: 80}}]}}"
    )
}

fn mesh() -> MeshState {
    let exact: Vec<String> = (0..15)
        .map(|i| {
            rule(&format!(
                "{{path: {{type: Exact, value: /exact/{i}/item}}}}"
            ))
        })
        .collect();
    let prefix: Vec<String> = (0..15)
        .map(|i| {
            rule(&format!(
                "{{path: {{type: PathPrefix, value: /svc{i}/api}}}}"
            ))
        })
        .collect();
    let short: Vec<String> = (0..5)
        .map(|i| rule(&format!("{{path: {{value: /svc{i}}}}}")))
        .collect();
    let header: Vec<String> = (0..10)
        .map(|i| {
            rule(&format!(
                "{{path: {{value: /svc{i}}}, headers: [{{name: x-tenant, value: t{i}}}, {{name: x-env, value: canary}}]}}"
            ))
        })
        .collect();
    let regex: Vec<String> = (0..7)
        .map(|i| {
            rule(&format!(
                "{{path: {{type: RegularExpression, value: \"/users/[0-9]+/orders/{i}[a-z]*\"}}}}"
            ))
        })
        .collect();
    let yaml = format!(
        "{MESH}{}{}{}{}{}",
        route("exact", &exact),
        route("prefix", &prefix),
        route("short", &short),
        route("header", &header),
        route("regex", &regex)
    );
    match parse_str(Path::new("bench.yaml"), &yaml) {
        Ok(state) => state,
        Err(e) => panic!("the bench mesh does not load:\n{e}"),
    }
}

fn select(c: &mut Criterion) {
    let state = mesh();
    let table = state
        .routes_for(&("shop".to_string(), "web".to_string()), 80)
        .expect("routes attached");
    assert_eq!(table.rules().len(), 52);
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_static("t7"));
    headers.insert("x-env", HeaderValue::from_static("canary"));
    headers.insert("user-agent", HeaderValue::from_static("bench/1.0"));
    let cases = [
        ("exact", "/exact/14/item"),
        ("regex", "/users/12345/orders/6abc"),
        ("header", "/svc7/other"),
        ("prefix_long", "/svc14/api/items/42?page=2"),
        ("prefix_short", "/svc3/static/app.js"),
        ("no_match", "/nowhere/at/all"),
    ];
    let mut group = c.benchmark_group("select_52_rules");
    for (name, uri) in cases {
        let uri: Uri = uri.parse().expect("uri");
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    table
                        .select(&Method::GET, black_box(&uri), &headers)
                        .is_some(),
                )
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = select
}
criterion_main!(benches);
