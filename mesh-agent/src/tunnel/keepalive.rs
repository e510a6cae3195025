//! HTTP/2 PING probes: a peer node that vanished (crashed, partitioned) without closing its TCP
//! connection would otherwise hold every stream on it until TCP gives up, minutes later.
//! Both ends of a tunnel run one probe per connection (`dial.rs`, `session.rs`) next to the
//! connection itself, and drop the connection when the probe returns.

use std::time::Duration;

use h2::{Ping, PingPong};

/// Pings every `interval` and returns why the peer stopped answering within `timeout`. Never
/// returns when `interval` is `None` (probing off) or there is no `PingPong` to use.
pub(crate) async fn probe(
    ping_pong: Option<PingPong>,
    interval: Option<Duration>,
    timeout: Duration,
) -> String {
    let (Some(mut ping_pong), Some(interval)) = (ping_pong, interval) else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(e)) => return format!("PING failed: {e}"),
            Err(_) => return format!("no answer to a PING within {timeout:?}"),
        }
    }
}
