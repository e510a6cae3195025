//! Error keys for the JSON summaries: short, stable names a test can assert on. The errno name
//! when the kernel gave one, `timeout` for our own limits, else the protocol layer's category.

use std::error::Error;
use std::io;

/// Whether `err` is one of our own time limits (a socket timeout or `tokio::time::timeout`), as
/// opposed to the kernel's `ETIMEDOUT` (retransmissions gave up).
pub fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) && err.raw_os_error() != Some(libc::ETIMEDOUT)
}

/// `timeout` for our own time limits, the errno name when the kernel gave one, else the kind.
pub fn error_key(err: &io::Error) -> String {
    if is_timeout(err) {
        return "timeout".to_owned();
    }
    match err.raw_os_error() {
        Some(errno) => errno_name(errno).map_or_else(|| format!("errno{errno}"), str::to_owned),
        None => format!("{:?}", err.kind()),
    }
}

/// Key of any error from the HTTP, gRPC or WebSocket stacks: the first `io::Error` in the source
/// chain wins (a reset is a reset whichever layer saw it), then hyper's own categories, then the
/// innermost message.
pub fn chain_key(err: &(dyn Error + 'static)) -> String {
    let mut innermost = err;
    let mut hyper_key = None;
    let mut current = Some(err);
    while let Some(layer) = current {
        if let Some(io_err) = layer.downcast_ref::<io::Error>() {
            return error_key(io_err);
        }
        if let Some(hyper_err) = layer.downcast_ref::<hyper::Error>() {
            hyper_key = hyper_key.or_else(|| hyper_category(hyper_err));
        }
        innermost = layer;
        current = layer.source();
    }
    hyper_key.map_or_else(|| innermost.to_string(), str::to_owned)
}

fn hyper_category(err: &hyper::Error) -> Option<&'static str> {
    let key = if err.is_timeout() {
        "timeout"
    } else if err.is_incomplete_message() {
        "incomplete_message"
    } else if err.is_parse_too_large() {
        "parse_too_large"
    } else if err.is_parse_status() {
        "parse_status"
    } else if err.is_parse() {
        "parse"
    } else if err.is_canceled() {
        "canceled"
    } else if err.is_closed() {
        "closed"
    } else if err.is_body_write_aborted() {
        "body_write_aborted"
    } else {
        return None;
    };
    Some(key)
}

fn errno_name(errno: i32) -> Option<&'static str> {
    macro_rules! names {
        ($($name:ident)*) => {
            match errno {
                $(libc::$name => Some(stringify!($name)),)*
                _ => None,
            }
        };
    }
    names!(
        EPERM ENOENT EINTR EBADF EACCES EINVAL EMFILE EPIPE EPROTO EMSGSIZE EOPNOTSUPP
        EAFNOSUPPORT EADDRINUSE EADDRNOTAVAIL ENETDOWN ENETUNREACH ENETRESET ECONNABORTED
        ECONNRESET ENOBUFS ENOTCONN ETIMEDOUT ECONNREFUSED EHOSTDOWN EHOSTUNREACH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_keys() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(error_key(&refused), "ECONNREFUSED");
        assert_eq!(
            error_key(&io::Error::from_raw_os_error(libc::EPERM)),
            "EPERM"
        );
        assert_eq!(
            error_key(&io::Error::from_raw_os_error(libc::EAGAIN)),
            "timeout"
        );
        assert_eq!(
            error_key(&io::Error::from_raw_os_error(libc::ETIMEDOUT)),
            "ETIMEDOUT"
        );
        assert_eq!(
            error_key(&io::Error::new(io::ErrorKind::TimedOut, "x")),
            "timeout"
        );
        assert_eq!(
            error_key(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            "UnexpectedEof"
        );
        assert_eq!(error_key(&io::Error::from_raw_os_error(4095)), "errno4095");
    }

    #[derive(Debug)]
    struct Wrapper(io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("request failed")
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chain_keys_find_the_errno_and_fall_back_to_the_message() {
        let wrapped = Wrapper(io::Error::from_raw_os_error(libc::ECONNRESET));
        assert_eq!(chain_key(&wrapped), "ECONNRESET");
        let plain = io::Error::other("odd").into_inner().expect("custom error");
        assert_eq!(chain_key(plain.as_ref()), "odd");
    }
}
