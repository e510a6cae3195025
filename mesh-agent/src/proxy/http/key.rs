//! Keys for the balancers: the registry key of a service port (`namespace/name:port`, built
//! without allocating, and the service of a key, to prune removed services), and the
//! consistent-hash key of a request.

use std::fmt::{self, Write as _};

use http::HeaderMap;

use crate::balance;
use crate::state::{HashKey, LoadBalancer, Workload};

/// A short string built on the stack (balancer keys such as `shop/backend:80`), so the per
/// request lookup does not allocate. Longer text spills to the heap.
pub struct StackStr {
    buf: [u8; 160],
    len: usize,
    spill: Option<String>,
}

impl StackStr {
    pub fn balancer_key(service: &(String, String), port: u16) -> Self {
        let mut s = StackStr {
            buf: [0; 160],
            len: 0,
            spill: None,
        };
        let _ = write!(s, "{}/{}:{port}", service.0, service.1);
        s
    }

    pub fn as_str(&self) -> &str {
        match &self.spill {
            Some(s) => s,
            // Only whole `&str`s are copied in, so the bytes are UTF-8.
            None => std::str::from_utf8(&self.buf[..self.len]).unwrap_or(""),
        }
    }
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(spill) = &mut self.spill {
            spill.push_str(s);
            return Ok(());
        }
        let end = self.len + s.len();
        if end <= self.buf.len() {
            self.buf[self.len..end].copy_from_slice(s.as_bytes());
            self.len = end;
        } else {
            let mut spill = String::with_capacity(end);
            spill.push_str(std::str::from_utf8(&self.buf[..self.len]).unwrap_or(""));
            spill.push_str(s);
            self.spill = Some(spill);
        }
        Ok(())
    }
}

/// The service of a balancer key, for pruning keys of removed services.
pub fn service_of_key(key: &str) -> Option<(&str, &str)> {
    let (service, _port) = key.rsplit_once(':')?;
    service.split_once('/')
}

/// The hash key of a source workload, for balancers that hash on it.
pub fn source_hash(source: &Workload) -> u64 {
    balance::hash_key(source.key.to_string().as_bytes())
}

/// The consistent-hash key of a request, when the service balances by one.
pub fn request_hash(lb: &LoadBalancer, headers: &HeaderMap, source: Option<u64>) -> Option<u64> {
    let LoadBalancer::ConsistentHash { hash } = lb else {
        return None;
    };
    match hash {
        HashKey::Header(name) => headers.get(name).map(|v| balance::hash_key(v.as_bytes())),
        HashKey::Cookie(name) => cookie(headers, name).map(balance::hash_key),
        HashKey::SourceWorkload => source,
    }
}

/// The value of cookie `name` in the request's `Cookie` fields.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let (k, v) = pair.split_at(pair.iter().position(|b| *b == b'=')?);
            (k == name.as_bytes()).then_some(&v[1..])
        })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn cookies_and_headers_hash() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; session=xyz"),
        );
        h.append(http::header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, "session"), Some(&b"xyz"[..]));
        assert_eq!(cookie(&h, "b"), Some(&b"2"[..]));
        assert_eq!(cookie(&h, "sess"), None);
        let lb = LoadBalancer::ConsistentHash {
            hash: HashKey::Cookie("session".into()),
        };
        assert_eq!(request_hash(&lb, &h, None), Some(balance::hash_key(b"xyz")));
        assert_eq!(request_hash(&LoadBalancer::RoundRobin, &h, Some(1)), None);
        let by_source = LoadBalancer::ConsistentHash {
            hash: HashKey::SourceWorkload,
        };
        assert_eq!(request_hash(&by_source, &h, Some(7)), Some(7));
    }

    #[test]
    fn balancer_keys_are_built_without_allocating() {
        let svc = ("shop".to_owned(), "backend".to_owned());
        let key = StackStr::balancer_key(&svc, 80);
        assert!(key.spill.is_none());
        assert_eq!(key.as_str(), "shop/backend:80");
        assert_eq!(service_of_key(key.as_str()), Some(("shop", "backend")));
        let long = ("n".repeat(100), "s".repeat(100));
        let key = StackStr::balancer_key(&long, 8080);
        assert_eq!(key.as_str().len(), 206);
        assert!(key.as_str().ends_with("s:8080"));
    }
}
