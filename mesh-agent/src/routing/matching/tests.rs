use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::*;

fn re(pattern: &str) -> regex::Regex {
    regex::Regex::new(&format!("^(?:{pattern})$")).expect("test regex")
}

fn bytes_re(pattern: &str) -> regex::bytes::Regex {
    regex::bytes::Regex::new(&format!("^(?:{pattern})$")).expect("test regex")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    map
}

fn only_path(path: PathMatch) -> RequestMatch {
    RequestMatch {
        path,
        method: None,
        headers: Vec::new(),
        query: Vec::new(),
    }
}

fn hits(m: &RequestMatch, path: &str) -> bool {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    m.matches(&Method::GET, path, query, &HeaderMap::new())
}

#[test]
fn exact_path_is_the_whole_path() {
    let m = only_path(PathMatch::Exact("/api/v1".into()));
    assert!(hits(&m, "/api/v1"));
    assert!(hits(&m, "/api/v1?x=1"), "the query is not part of the path");
    for miss in ["/api/v1/", "/api/v", "/api/v1/x", "/API/v1"] {
        assert!(!hits(&m, miss), "{miss}");
    }
}

#[test]
fn prefix_matches_whole_segments() {
    for written in ["/abc", "/abc/"] {
        let m = only_path(PathMatch::prefix(written));
        for hit in ["/abc", "/abc/", "/abc/def"] {
            assert!(hits(&m, hit), "{written} should match {hit}");
        }
        for miss in ["/abcd", "/ab", "/", "/x/abc"] {
            assert!(!hits(&m, miss), "{written} should not match {miss}");
        }
    }
    let root = only_path(PathMatch::prefix("/"));
    for hit in ["/", "/anything", "/a/b/c"] {
        assert!(hits(&root, hit), "{hit}");
    }
    assert_eq!(root.path.matched_prefix(), Some(""));
    assert_eq!(PathMatch::prefix("/abc/").matched_prefix(), Some("/abc"));
    assert_eq!(PathMatch::Exact("/a".into()).matched_prefix(), None);
}

#[test]
fn regex_path_must_match_entirely() {
    let m = only_path(PathMatch::Regex(re("/users/[0-9]+")));
    assert!(hits(&m, "/users/42"));
    assert!(!hits(&m, "/users/42/orders"), "anchored at the end");
    assert!(!hits(&m, "/v1/users/42"), "anchored at the start");
}

#[test]
fn grpc_method_matches_service_and_method_parts() {
    let both = only_path(PathMatch::GrpcMethod {
        service: Some("shop.Cart".into()),
        method: Some("Add".into()),
    });
    assert!(hits(&both, "/shop.Cart/Add"));
    assert!(!hits(&both, "/shop.Cart/Remove"));
    assert!(!hits(&both, "/shop.Cart/Add/x"));
    let service = only_path(PathMatch::GrpcMethod {
        service: Some("shop.Cart".into()),
        method: None,
    });
    assert!(hits(&service, "/shop.Cart/Remove"));
    assert!(!hits(&service, "/shop.Carts/Remove"));
    assert!(!hits(&service, "/shop.Cart/"), "a method is required");
    let method = only_path(PathMatch::GrpcMethod {
        service: None,
        method: Some("Check".into()),
    });
    assert!(hits(&method, "/grpc.health.v1.Health/Check"));
    assert!(!hits(&method, "/Check"));
}

#[test]
fn header_matches_ignore_name_case_and_join_repeats() {
    let m = RequestMatch {
        headers: vec![HeaderMatch {
            name: HeaderName::from_static("x-env"),
            value: BytesMatch::Exact(b"canary".as_slice().into()),
        }],
        ..RequestMatch::everything()
    };
    let get = |h: &HeaderMap| m.matches(&Method::GET, "/", None, h);
    assert!(get(&headers(&[("X-Env", "canary")])));
    assert!(
        !get(&headers(&[("x-env", "Canary")])),
        "values are case-sensitive"
    );
    assert!(!get(&headers(&[])));
    assert!(!get(&headers(&[("x-env", "canary"), ("x-env", "prod")])));

    let joined = RequestMatch {
        headers: vec![HeaderMatch {
            name: HeaderName::from_static("x-env"),
            value: BytesMatch::Exact(b"canary,prod".as_slice().into()),
        }],
        ..RequestMatch::everything()
    };
    let repeated = headers(&[("x-env", "canary"), ("x-env", "prod")]);
    assert!(joined.matches(&Method::GET, "/", None, &repeated));
}

#[test]
fn header_regex_matches_the_whole_value() {
    let m = RequestMatch {
        headers: vec![HeaderMatch {
            name: HeaderName::from_static("user-agent"),
            value: BytesMatch::Regex(bytes_re("curl/.*")),
        }],
        ..RequestMatch::everything()
    };
    let get = |ua: &str| m.matches(&Method::GET, "/", None, &headers(&[("user-agent", ua)]));
    assert!(get("curl/8.5.0"));
    assert!(!get("Mozilla curl/8.5.0"));
}

#[test]
fn query_params_match_decoded_first_values() {
    let m = RequestMatch {
        query: vec![
            QueryMatch {
                name: "animal".into(),
                value: TextMatch::Exact("killer whale".into()),
            },
            QueryMatch {
                name: "id".into(),
                value: TextMatch::Regex(re("[0-9]{3}")),
            },
        ],
        ..RequestMatch::everything()
    };
    assert!(hits(&m, "/?animal=killer%20whale&id=123"));
    assert!(hits(&m, "/?id=123&x&animal=killer%20whale"));
    assert!(!hits(&m, "/?animal=killer%20whale"), "both must hold");
    assert!(!hits(&m, "/?animal=killer%20whale&id=1234"));
    assert!(
        !hits(&m, "/?id=12&id=123&animal=killer%20whale"),
        "first value only"
    );
    assert!(!hits(&m, "/"));
    assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
}

#[test]
fn method_and_conditions_are_anded() {
    let m = RequestMatch {
        path: PathMatch::prefix("/api"),
        method: Some(Method::POST),
        headers: vec![HeaderMatch {
            name: HeaderName::from_static("x-team"),
            value: BytesMatch::Exact(b"a".as_slice().into()),
        }],
        query: Vec::new(),
    };
    let h = headers(&[("x-team", "a")]);
    assert!(m.matches(&Method::POST, "/api/x", None, &h));
    assert!(!m.matches(&Method::GET, "/api/x", None, &h), "method");
    assert!(!m.matches(&Method::POST, "/other", None, &h), "path");
    assert!(
        !m.matches(&Method::POST, "/api/x", None, &HeaderMap::new()),
        "header"
    );
}
