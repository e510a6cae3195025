//! Header rules of a forwarding proxy: hop-by-hop fields stay on their hop (RFC 9110 §7.6.1),
//! the client's address is appended to `x-forwarded-for`, every request carries an
//! `x-request-id`. Tracing context (`traceparent`, `tracestate`) is never touched.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{
    CONNECTION, HeaderMap, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE,
};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Marks a response the proxy generated itself; the value names the mechanism.
pub static X_WEFT_RESPONSE: HeaderName = HeaderName::from_static("x-weft-response");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether a request asks for a protocol upgrade (`Connection: upgrade` plus `Upgrade`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) && connection_has(headers, "upgrade")
}

/// Whether any `Connection` field lists `token`.
fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(token)))
}

fn tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes the hop-by-hop fields of a message. With `upgrading`, `Upgrade` and a plain
/// `Connection: upgrade` are kept so the next hop sees the upgrade request (or its 101).
/// `TE: trailers` is kept: gRPC needs it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    if let Some(first) = headers.get(CONNECTION) {
        // Fast path: no listed fields beyond the standard tokens (keep-alive, close, upgrade).
        let simple = headers.get_all(CONNECTION).iter().count() == 1
            && tokens(first).all(|t| {
                ["close", "keep-alive", "upgrade"]
                    .iter()
                    .any(|s| t.eq_ignore_ascii_case(s))
            });
        if !simple {
            let listed: Vec<HeaderName> = headers
                .get_all(CONNECTION)
                .iter()
                .flat_map(tokens)
                .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
                .collect();
            for name in listed {
                // A client cannot use Connection to strip what this proxy adds or must keep.
                if name != X_FORWARDED_FOR && name != X_REQUEST_ID && name != TE {
                    headers.remove(&name);
                }
            }
        }
        headers.remove(CONNECTION);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(TRANSFER_ENCODING);
    keep_only_trailers_te(headers);
    if upgrading {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

/// `TE` may only say `trailers` beyond this hop.
fn keep_only_trailers_te(headers: &mut HeaderMap) {
    let Some(te) = headers.get(TE) else { return };
    let only_trailers = headers.get_all(TE).iter().count() == 1 && te.as_bytes() == b"trailers";
    if only_trailers {
        return;
    }
    let trailers = headers
        .get_all(TE)
        .iter()
        .flat_map(tokens)
        .any(|t| t.eq_ignore_ascii_case("trailers"));
    headers.remove(TE);
    if trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// The form of the client's address appended to `x-forwarded-for`; built once per connection.
pub fn client_address_value(ip: IpAddr) -> HeaderValue {
    let mut text = String::with_capacity(39);
    let _ = write!(text, "{}", ip.to_canonical());
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Appends `client` to `x-forwarded-for`, folding earlier fields into one list.
pub fn append_forwarded_for(headers: &mut HeaderMap, client: &HeaderValue) {
    let mut existing = headers.get_all(&X_FORWARDED_FOR).iter();
    let Some(first) = existing.next() else {
        headers.insert(X_FORWARDED_FOR.clone(), client.clone());
        return;
    };
    let mut list = Vec::with_capacity(first.len() + client.len() + 16);
    list.extend_from_slice(first.as_bytes());
    for more in existing {
        list.extend_from_slice(b", ");
        list.extend_from_slice(more.as_bytes());
    }
    list.extend_from_slice(b", ");
    list.extend_from_slice(client.as_bytes());
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(list)) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
}

/// Adds an `x-request-id` (a random UUID v4) unless the request has one; returns it.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID) {
        return id.clone();
    }
    let id = new_request_id();
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

/// A random UUID v4 in its canonical text form.
pub fn new_request_id() -> HeaderValue {
    let mut bytes = fastrand::u128(..).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 36];
    let mut at = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text[at] = b'-';
            at += 1;
        }
        text[at] = HEX[usize::from(b >> 4)];
        text[at + 1] = HEX[usize::from(b & 0x0f)];
        at += 2;
    }
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_fields_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret, X-Other"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip, trailers"),
            ("upgrade", "h2c"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["te", "traceparent", "x-kept"], "{h:?}");
        assert_eq!(h["te"], "trailers");
        assert_eq!(
            h["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }

    #[test]
    fn upgrades_keep_their_fields_and_te_without_trailers_goes() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
        ]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(!h.contains_key(TE));
        assert!(!wants_upgrade(&map(&[("upgrade", "websocket")])));
    }

    #[test]
    fn forwarded_for_is_appended_and_folded() {
        let client = client_address_value("::ffff:10.1.2.3".parse().expect("ip"));
        assert_eq!(client, "10.1.2.3");
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, &client);
        assert_eq!(h[&X_FORWARDED_FOR], "10.1.2.3");
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        append_forwarded_for(&mut h, &client);
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[&X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 10.1.2.3");
    }

    #[test]
    fn request_ids_are_kept_or_generated() {
        let mut h = map(&[("x-request-id", "abc")]);
        assert_eq!(ensure_request_id(&mut h), "abc");
        let mut h = HeaderMap::new();
        let id = ensure_request_id(&mut h);
        let text = id.to_str().expect("ascii");
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4", "{text}");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
        assert_ne!(new_request_id(), new_request_id());
    }
}
