//! Cost of an authorization decision: `MeshState::authorize()` for a workload selected by four
//! DENY and eight ALLOW policies (principal, namespace, path, method and header matches),
//! built through the state file as the agent builds it. The allowed request is matched by the
//! last ALLOW policy, so every policy is looked at. Small sample sizes keep the run short.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use mesh_agent::identity::SpiffeId;
use mesh_agent::policy::{HttpAttrs, Request, Source};
use mesh_agent::state::{MeshState, WorkloadKey, parse_str};

const MESH: &str = "
namespaces: [{name: shop}, {name: frontend}]
nodes: [{name: node-a}]
workloads: [{name: api, namespace: shop, node: node-a, labels: {app: api}}]
authorizationPolicies:
";

fn mesh() -> MeshState {
    let mut yaml = MESH.to_string();
    for i in 0..4 {
        yaml.push_str(&format!(
            "  - {{name: deny-{i}, namespace: shop, action: DENY, rules: [{{from: \
             [{{principals: [\"cluster.local/ns/bad-{i}/*\"]}}], to: [{{paths: [/admin/{i}/*]}}]}}]}}\n"
        ));
    }
    for i in 0..8 {
        yaml.push_str(&format!(
            "  - {{name: allow-{i}, namespace: shop, selector: {{matchLabels: {{app: api}}}}, rules: \
             [{{from: [{{namespaces: [team-{i}, frontend]}}], to: [{{methods: [GET, HEAD], \
             paths: [/v{i}/*, \"*.json\"]}}], when: [{{header: x-tenant, values: [t{i}]}}]}}]}}\n"
        ));
    }
    match parse_str(Path::new("bench.yaml"), &yaml) {
        Ok(state) => state,
        Err(e) => panic!("the bench mesh does not load:\n{e}"),
    }
}

fn authorize(c: &mut Criterion) {
    let state = mesh();
    let key = WorkloadKey {
        namespace: "shop".into(),
        name: "api".into(),
    };
    let api = state.workloads.get(&key).expect("workload").clone();
    let web = SpiffeId::new("cluster.local", "frontend", "web");
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_static("t7"));
    headers.insert("user-agent", HeaderValue::from_static("bench/1.0"));
    let cases = [
        ("l7_last_allow", "/v7/items/1", true),
        ("l7_denied", "/nowhere", false),
    ];
    let mut group = c.benchmark_group("authorize_12_policies");
    for (name, path, expected) in cases {
        let req = Request {
            source: Source { id: Some(&web) },
            port: 8080,
            http: Some(HttpAttrs {
                method: &Method::GET,
                path,
                headers: &headers,
            }),
        };
        let decision = state.authorize(&api, &req);
        assert_eq!(decision.allow, expected, "{name}: {decision}");
        group.bench_function(name, |b| {
            b.iter(|| {
                let req = Request {
                    source: Source { id: Some(&web) },
                    port: 8080,
                    http: Some(HttpAttrs {
                        method: &Method::GET,
                        path: black_box(path),
                        headers: &headers,
                    }),
                };
                black_box(state.authorize(&api, &req).allow)
            })
        });
    }
    group.bench_function("l4", |b| {
        b.iter(|| {
            let req = Request {
                source: Source { id: Some(&web) },
                port: black_box(8080),
                http: None,
            };
            black_box(state.authorize(&api, &req).allow)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = authorize
}
criterion_main!(benches);
