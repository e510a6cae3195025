//! Kubernetes name rules (RFC 1123), shared by every source that builds the model.

/// RFC 1123 label: 1-63 of `a-z0-9-`, starting and ending alphanumeric.
pub(crate) fn dns_label(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("is not a DNS-1123 label (1-63 of a-z, 0-9, '-', alphanumeric at both ends)".into())
    }
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub(crate) fn dns_subdomain(name: &str) -> Result<(), String> {
    let ok = (1..=253).contains(&name.len()) && name.split('.').all(|l| dns_label(l).is_ok());
    if ok {
        Ok(())
    } else {
        Err("is not a DNS-1123 subdomain (dot-separated DNS labels, at most 253 characters)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_rules() {
        for ok in ["a", "a-b", "0", &"a".repeat(63)] {
            assert!(dns_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(dns_label(bad).is_err(), "{bad}");
        }
        assert!(dns_subdomain("node-b.example.com").is_ok());
        for bad in [
            "a..b",
            ".a",
            "a.",
            "a.-b",
            &format!("{}.a", "a".repeat(252)),
        ] {
            assert!(dns_subdomain(bad).is_err(), "{bad}");
        }
    }
}
