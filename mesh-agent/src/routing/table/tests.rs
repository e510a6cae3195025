use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::routing::matching::{BytesMatch, HeaderMatch, QueryMatch, TextMatch};
use crate::routing::model::{RouteName, Timeouts};

fn rule(route: &str, index: usize) -> RouteRule {
    let (namespace, name) = route.split_once('/').expect("ns/name");
    RouteRule {
        route: RouteName {
            kind: RouteKind::Http,
            namespace: namespace.into(),
            name: name.into(),
        },
        name: None,
        index,
        backends: Vec::new(),
        filters: Vec::new(),
        timeouts: Timeouts::default(),
        retry: None,
    }
}

fn order(route: &str, created: Option<&str>) -> RouteOrder {
    RouteOrder {
        created: created.map(|t| Time(t.parse().expect("timestamp"))),
        key: route.into(),
    }
}

fn path(p: PathMatch) -> RequestMatch {
    RequestMatch {
        path: p,
        ..RequestMatch::everything()
    }
}

fn header(name: &'static str, value: &str) -> HeaderMatch {
    HeaderMatch {
        name: HeaderName::from_static(name),
        value: BytesMatch::Exact(value.as_bytes().into()),
    }
}

/// `route#rule` of the rule selected for `GET uri` with `headers`.
fn chosen(
    table: &RouteTable,
    method: Method,
    uri: &str,
    headers: &[(&'static str, &str)],
) -> String {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    let uri: Uri = uri.parse().expect("uri");
    match table.select(&method, &uri, &map) {
        Some(s) => format!(
            "{}/{}#{}",
            s.rule.route.namespace, s.rule.route.name, s.rule.index
        ),
        None => "none".into(),
    }
}

fn get(table: &RouteTable, uri: &str) -> String {
    chosen(table, Method::GET, uri, &[])
}

#[test]
fn path_kinds_rank_exact_then_regex_then_longest_prefix() {
    let mut b = TableBuilder::new(RouteKind::Http, 80);
    let o = order("shop/r", None);
    b.add(rule("shop/r", 0), vec![path(PathMatch::prefix("/"))], &o);
    b.add(rule("shop/r", 1), vec![path(PathMatch::prefix("/api"))], &o);
    b.add(
        rule("shop/r", 2),
        vec![path(PathMatch::prefix("/api/v1"))],
        &o,
    );
    let any_api = regex::Regex::new("^(?:/api/v1/o.*)$").expect("regex");
    b.add(rule("shop/r", 3), vec![path(PathMatch::Regex(any_api))], &o);
    b.add(
        rule("shop/r", 4),
        vec![path(PathMatch::Exact("/api/v1/items".into()))],
        &o,
    );
    let table = b.build();

    assert_eq!(get(&table, "/api/v1/items"), "shop/r#4", "exact first");
    assert_eq!(get(&table, "/api/v1/other"), "shop/r#3", "then regex");
    assert_eq!(
        get(&table, "/api/v1"),
        "shop/r#2",
        "then the longest prefix"
    );
    assert_eq!(get(&table, "/api"), "shop/r#1");
    assert_eq!(
        get(&table, "/apix"),
        "shop/r#0",
        "prefixes are segment-wise"
    );
    assert_eq!(table.rules().len(), 5);
    assert_eq!(table.port(), 80);
}

#[test]
fn on_equal_paths_method_then_headers_then_query_decide() {
    let mut b = TableBuilder::new(RouteKind::Http, 80);
    let o = order("shop/r", None);
    let with = |f: &dyn Fn(&mut RequestMatch)| {
        let mut m = path(PathMatch::prefix("/x"));
        f(&mut m);
        m
    };
    b.add(rule("shop/r", 0), vec![with(&|_| {})], &o);
    b.add(
        rule("shop/r", 1),
        vec![with(&|m| {
            m.query = vec![QueryMatch {
                name: "q".into(),
                value: TextMatch::Exact("1".into()),
            }]
        })],
        &o,
    );
    b.add(
        rule("shop/r", 2),
        vec![with(&|m| m.headers = vec![header("x-a", "1")])],
        &o,
    );
    b.add(
        rule("shop/r", 3),
        vec![with(&|m| {
            m.headers = vec![header("x-a", "1"), header("x-b", "1")]
        })],
        &o,
    );
    b.add(
        rule("shop/r", 4),
        vec![with(&|m| m.method = Some(Method::POST))],
        &o,
    );
    let table = b.build();

    let both = [("x-a", "1"), ("x-b", "1")];
    assert_eq!(
        chosen(&table, Method::POST, "/x?q=1", &both),
        "shop/r#4",
        "method"
    );
    assert_eq!(
        chosen(&table, Method::GET, "/x?q=1", &both),
        "shop/r#3",
        "two headers"
    );
    assert_eq!(
        chosen(&table, Method::GET, "/x?q=1", &both[..1]),
        "shop/r#2",
        "one header"
    );
    assert_eq!(
        chosen(&table, Method::GET, "/x?q=1", &[]),
        "shop/r#1",
        "query"
    );
    assert_eq!(chosen(&table, Method::GET, "/x", &[]), "shop/r#0");
    assert_eq!(
        chosen(&table, Method::GET, "/y", &[]),
        "none",
        "no rule: 404"
    );
}

#[test]
fn ties_go_to_the_oldest_route_then_the_first_name_then_rule_order() {
    let mut b = TableBuilder::new(RouteKind::Http, 80);
    let m = || vec![path(PathMatch::prefix("/"))];
    b.add(
        rule("shop/young", 0),
        m(),
        &order("shop/young", Some("2025-02-01T00:00:00Z")),
    );
    b.add(rule("shop/ageless", 0), m(), &order("shop/ageless", None));
    b.add(
        rule("shop/old", 1),
        m(),
        &order("shop/old", Some("2024-01-01T00:00:00Z")),
    );
    b.add(
        rule("shop/old", 0),
        m(),
        &order("shop/old", Some("2024-01-01T00:00:00Z")),
    );
    let table = b.build();
    assert_eq!(
        get(&table, "/"),
        "shop/old#0",
        "oldest route, then its first rule"
    );

    let mut b = TableBuilder::new(RouteKind::Http, 80);
    b.add(rule("shop/b", 0), m(), &order("shop/b", None));
    b.add(rule("a/z", 0), m(), &order("a/z", None));
    b.add(rule("a-b/c", 0), m(), &order("a-b/c", None));
    let table = b.build();
    // "a-b/c" < "a/z" as text ('-' sorts before '/').
    assert_eq!(
        get(&table, "/"),
        "a-b/c#0",
        "alphabetical by {{namespace}}/{{name}}"
    );
}

#[test]
fn every_match_of_a_rule_is_an_entry_of_its_own() {
    let mut b = TableBuilder::new(RouteKind::Http, 80);
    let o = order("shop/r", None);
    b.add(rule("shop/r", 0), vec![path(PathMatch::prefix("/a"))], &o);
    b.add(
        rule("shop/r", 1),
        vec![
            path(PathMatch::prefix("/b")),
            path(PathMatch::Exact("/a/x".into())),
        ],
        &o,
    );
    let table = b.build();
    assert_eq!(get(&table, "/a/x"), "shop/r#1", "the exact match of rule 1");
    assert_eq!(get(&table, "/a/y"), "shop/r#0");
    assert_eq!(get(&table, "/b/y"), "shop/r#1");
    let selected = table
        .select(
            &Method::GET,
            &"/b/y".parse().expect("uri"),
            &HeaderMap::new(),
        )
        .expect("matches");
    assert_eq!(selected.matched_prefix(), Some("/b"));
    assert_eq!(selected.port, 80);
}

#[test]
fn grpc_ranks_service_then_method_then_headers() {
    let mut b = TableBuilder::new(RouteKind::Grpc, 9090);
    let o = order("shop/g", None);
    let method = |s: Option<&str>, m: Option<&str>| {
        path(PathMatch::GrpcMethod {
            service: s.map(Into::into),
            method: m.map(Into::into),
        })
    };
    b.add(rule("shop/g", 0), vec![RequestMatch::everything()], &o);
    b.add(rule("shop/g", 1), vec![method(None, Some("Add"))], &o);
    b.add(rule("shop/g", 2), vec![method(Some("shop.Cart"), None)], &o);
    b.add(
        rule("shop/g", 3),
        vec![method(Some("shop.Cart"), Some("Add"))],
        &o,
    );
    let mut with_header = method(Some("shop.Cart"), Some("Add"));
    with_header.headers = vec![header("x-a", "1")];
    b.add(rule("shop/g", 4), vec![with_header], &o);
    let table = b.build();

    let post = |uri: &str, h: &[(&'static str, &str)]| chosen(&table, Method::POST, uri, h);
    assert_eq!(post("/shop.Cart/Add", &[("x-a", "1")]), "shop/g#4");
    assert_eq!(post("/shop.Cart/Add", &[]), "shop/g#3");
    assert_eq!(post("/shop.Cart/Remove", &[]), "shop/g#2");
    assert_eq!(post("/other.Svc/Add", &[]), "shop/g#1");
    assert_eq!(post("/other.Svc/List", &[]), "shop/g#0");
}

/// The path index finds what a walk over the whole table finds, on random tables and paths
/// built from a few segments so that prefixes, trailing slashes and exact paths collide.
#[test]
fn the_path_index_agrees_with_a_full_walk() {
    let mut rng = fastrand::Rng::with_seed(11);
    let segments = ["a", "b", "ab"];
    let random_path = |rng: &mut fastrand::Rng| {
        let depth = rng.usize(0..4);
        let mut p: String = (0..depth)
            .map(|_| format!("/{}", segments[rng.usize(..segments.len())]))
            .collect();
        if p.is_empty() || rng.bool() {
            p.push('/');
        }
        p
    };
    for round in 0..200 {
        let mut b = TableBuilder::new(RouteKind::Http, 80);
        for r in 0..rng.usize(1..12) {
            let route = format!("shop/r{}", rng.usize(0..3));
            let created = ["2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"];
            let o = order(&route, rng.bool().then(|| created[rng.usize(..2)]));
            let value = random_path(&mut rng);
            let mut m = path(match rng.usize(0..4) {
                0 => PathMatch::Exact(value.into()),
                1 => {
                    let pattern = format!("^(?:{}.*)$", value.trim_end_matches('/'));
                    PathMatch::Regex(regex::Regex::new(&pattern).expect("regex"))
                }
                _ => PathMatch::prefix(&value),
            });
            if rng.bool() {
                m.method = Some(Method::POST);
            }
            if rng.bool() {
                m.headers = vec![header("x-a", "1")];
            }
            b.add(rule(&route, r), vec![m], &o);
        }
        let table = b.build();
        assert!(table.index.is_some());
        for _ in 0..50 {
            let uri: Uri = random_path(&mut rng).parse().expect("uri");
            let method = if rng.bool() {
                Method::GET
            } else {
                Method::POST
            };
            let mut headers = HeaderMap::new();
            if rng.bool() {
                headers.insert("x-a", HeaderValue::from_static("1"));
            }
            let walked = table
                .entries
                .iter()
                .find(|e| {
                    e.matcher
                        .matches(&method, uri.path(), uri.query(), &headers)
                })
                .map(|e| &table.rules[e.rule] as *const RouteRule);
            let indexed = table
                .select(&method, &uri, &headers)
                .map(|s| s.rule as *const RouteRule);
            assert_eq!(indexed, walked, "round {round}: {method} {uri}");
        }
    }
}
