use http::{HeaderMap, Method, Request, Response};

use super::*;
use crate::routing::matching::PathMatch;
use crate::routing::model::{RouteKind, RouteName, RouteRule, Timeouts};

fn rule() -> RouteRule {
    RouteRule {
        route: RouteName {
            kind: RouteKind::Http,
            namespace: "shop".into(),
            name: "web".into(),
        },
        name: None,
        index: 0,
        backends: Vec::new(),
        filters: Vec::new(),
        timeouts: Timeouts::default(),
        retry: None,
    }
}

fn parts(uri: &str, host: Option<&str>) -> request::Parts {
    let mut builder = Request::builder().method(Method::GET).uri(uri);
    if let Some(host) = host {
        builder = builder.header(header::HOST, host);
    }
    builder.body(()).expect("request").into_parts().0
}

fn name(n: &'static str) -> HeaderName {
    HeaderName::from_static(n)
}

fn value(v: &'static str) -> HeaderValue {
    HeaderValue::from_static(v)
}

/// Runs `filters` on `GET uri` (Host `web.shop:8080`) matched by `path` on port 8080.
fn run(filters: &[Filter], path: &PathMatch, uri: &str) -> (FilterOutcome, request::Parts) {
    let rule = rule();
    let selected = Selected {
        rule: &rule,
        path,
        port: 8080,
    };
    let mut req = parts(uri, Some("web.shop:8080"));
    let outcome = apply_request_filters(filters, &selected, &mut req);
    (outcome, req)
}

fn location(outcome: FilterOutcome) -> (u16, String) {
    match outcome {
        FilterOutcome::Respond(answer) => {
            let location = answer
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("<none>")
                .to_string();
            (answer.status().as_u16(), location)
        }
        FilterOutcome::Continue => (0, "<continued>".into()),
    }
}

fn redirect(f: impl FnOnce(&mut Redirect)) -> Vec<Filter> {
    let mut r = Redirect {
        scheme: None,
        hostname: None,
        path: None,
        port: None,
        status: StatusCode::FOUND,
    };
    f(&mut r);
    vec![Filter::RequestRedirect(r)]
}

#[test]
fn header_modifier_sets_then_adds_then_removes() {
    let m = HeaderModifier {
        set: vec![(name("x-set"), value("new"))],
        add: vec![(name("x-add"), value("two")), (name("x-gone"), value("v"))],
        remove: vec![name("x-gone")],
    };
    let mut headers = HeaderMap::new();
    headers.insert(name("x-set"), value("old"));
    headers.append(name("x-set"), value("older"));
    headers.insert(name("x-add"), value("one"));
    m.apply(&mut headers);
    assert_eq!(headers.get_all("x-set").iter().collect::<Vec<_>>(), ["new"]);
    assert_eq!(
        headers.get_all("x-add").iter().collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert!(!headers.contains_key("x-gone"), "remove wins over add");
}

#[test]
fn request_and_response_modifiers_apply_on_their_side_only() {
    let filters = vec![
        Filter::RequestHeaderModifier(HeaderModifier {
            set: vec![(name("x-req"), value("1"))],
            ..HeaderModifier::default()
        }),
        Filter::ResponseHeaderModifier(HeaderModifier {
            add: vec![(name("x-resp"), value("1"))],
            ..HeaderModifier::default()
        }),
    ];
    let (outcome, req) = run(&filters, &PathMatch::prefix("/"), "/a");
    assert!(matches!(outcome, FilterOutcome::Continue));
    assert_eq!(
        req.headers.get("x-req").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert!(!req.headers.contains_key("x-resp"));

    let mut resp = Response::new(()).into_parts().0;
    apply_response_filters(&filters, &mut resp);
    assert!(resp.headers.contains_key("x-resp"));
    assert!(!resp.headers.contains_key("x-req"));
}

#[test]
fn redirect_keeps_the_request_and_the_listener_port_by_default() {
    let root = PathMatch::prefix("/");
    let (outcome, _) = run(&redirect(|_| {}), &root, "/a/b?x=1");
    assert_eq!(
        location(outcome),
        (302, "http://web.shop:8080/a/b?x=1".into())
    );

    let (outcome, _) = run(
        &redirect(|r| r.hostname = Some("other.shop".into())),
        &root,
        "/a",
    );
    assert_eq!(location(outcome), (302, "http://other.shop:8080/a".into()));

    let moved = redirect(|r| {
        r.status = StatusCode::MOVED_PERMANENTLY;
        r.port = Some(9000);
    });
    let (outcome, _) = run(&moved, &root, "/a");
    assert_eq!(location(outcome), (301, "http://web.shop:9000/a".into()));
}

#[test]
fn a_redirect_scheme_brings_its_well_known_port() {
    let root = PathMatch::prefix("/");
    let https = redirect(|r| r.scheme = Some(Scheme::Https));
    assert_eq!(location(run(&https, &root, "/a").0).1, "https://web.shop/a");
    let http = redirect(|r| r.scheme = Some(Scheme::Http));
    assert_eq!(location(run(&http, &root, "/a").0).1, "http://web.shop/a");
    let https_port = redirect(|r| {
        r.scheme = Some(Scheme::Https);
        r.port = Some(8443);
    });
    assert_eq!(
        location(run(&https_port, &root, "/a").0).1,
        "https://web.shop:8443/a"
    );
}

#[test]
fn redirect_paths() {
    let full = redirect(|r| r.path = Some(PathModifier::ReplaceFullPath("/new".into())));
    let (outcome, _) = run(&full, &PathMatch::prefix("/old"), "/old/x?q");
    assert_eq!(location(outcome).1, "http://web.shop:8080/new?q");
    let prefix = redirect(|r| r.path = Some(PathModifier::ReplacePrefixMatch("/v2".into())));
    let (outcome, _) = run(&prefix, &PathMatch::prefix("/v1"), "/v1/items");
    assert_eq!(location(outcome).1, "http://web.shop:8080/v2/items");
}

#[test]
fn a_redirect_answers_before_later_filters() {
    let mut filters = redirect(|_| {});
    filters.push(Filter::RequestHeaderModifier(HeaderModifier {
        set: vec![(name("x-late"), value("1"))],
        ..HeaderModifier::default()
    }));
    let (outcome, req) = run(&filters, &PathMatch::prefix("/"), "/");
    assert!(matches!(outcome, FilterOutcome::Respond(_)));
    assert!(!req.headers.contains_key("x-late"));
}

#[test]
fn replace_prefix_match_follows_the_spec_table() {
    let table = [
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
        ("/foo/bar", "/", "/xyz", "/xyz/foo/bar"),
    ];
    for (request, prefix, replacement, expected) in table {
        let rewrite = vec![Filter::UrlRewrite(UrlRewrite {
            hostname: None,
            path: Some(PathModifier::ReplacePrefixMatch(replacement.into())),
        })];
        let (outcome, req) = run(&rewrite, &PathMatch::prefix(prefix), request);
        assert!(matches!(outcome, FilterOutcome::Continue));
        assert_eq!(
            req.uri.path(),
            expected,
            "{request} with prefix {prefix} and replacement {replacement:?}"
        );
    }
}

#[test]
fn rewrite_changes_path_and_host_and_keeps_the_query() {
    let rewrite = vec![Filter::UrlRewrite(UrlRewrite {
        hostname: Some(value("api.internal")),
        path: Some(PathModifier::ReplaceFullPath("/v2/all".into())),
    })];
    let (_, req) = run(&rewrite, &PathMatch::prefix("/"), "/v1/x?page=2");
    assert_eq!(req.uri.to_string(), "/v2/all?page=2");
    assert_eq!(req.headers.get(header::HOST), Some(&value("api.internal")));

    // An absolute-form URI (as HTTP/2 carries it) gets the new authority too.
    let rule = rule();
    let root = PathMatch::prefix("/");
    let selected = Selected {
        rule: &rule,
        path: &root,
        port: 80,
    };
    let mut req = parts("http://web.shop:80/x", None);
    let host_only = vec![Filter::UrlRewrite(UrlRewrite {
        hostname: Some(value("api.internal")),
        path: None,
    })];
    assert!(matches!(
        apply_request_filters(&host_only, &selected, &mut req),
        FilterOutcome::Continue
    ));
    assert_eq!(req.uri.to_string(), "http://api.internal/x");
}

#[test]
fn mirrors_are_listed_and_sampled() {
    let mirror = |n, d| Mirror {
        service: ("shop".into(), "shadow".into()),
        port: 80,
        numerator: n,
        denominator: d,
    };
    let filters = vec![
        Filter::RequestMirror(mirror(1, 4)),
        Filter::RequestHeaderModifier(HeaderModifier::default()),
        Filter::RequestMirror(mirror(100, 100)),
    ];
    let found: Vec<_> = mirrors(&filters).collect();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].percent(), 25.0);
    assert!((0..1000).all(|i| found[1].sampled(i * 4_000_000)));
    let mut rng = fastrand::Rng::with_seed(3);
    let sampled = (0..10_000)
        .filter(|_| found[0].sampled(rng.u32(..)))
        .count();
    assert!(
        (2_300..=2_700).contains(&sampled),
        "{sampled} of 10000 at 25%"
    );
    assert!(!mirror(0, 100).sampled(0));
}
