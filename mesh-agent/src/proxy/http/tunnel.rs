//! Upgraded connections (WebSocket and any other `Upgrade`): once the upstream answered
//! `101 Switching Protocols` and the client got that answer, both sides are plain byte streams
//! and the proxy copies between them, half-closes included, like the L4 path.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::server::ServeEnd;
use super::upstream::chain;
use crate::proxy::connection::Outcome;
use crate::proxy::io::ConnStats;
use crate::proxy::outbound::Outbound;

/// Both halves of an upgrade in progress, kept by the request that upgraded.
pub struct PendingTunnel {
    pub client: OnUpgrade,
    pub upstream: OnUpgrade,
}

/// Copies bytes between the two upgraded connections until both are done, the tunnel idles
/// for `idle`, or the proxy shuts down. Traffic is counted on the client connection's stats.
pub async fn run(
    pending: PendingTunnel,
    stats: &ConnStats,
    idle: std::time::Duration,
    outbound: &Outbound,
) -> ServeEnd {
    let failed = |e: &hyper::Error| ServeEnd {
        outcome: Outcome::HttpError,
        error: format!("upgrade: {}", chain(e)),
    };
    let (client, upstream) = match tokio::try_join!(pending.client, pending.upstream) {
        Ok(both) => both,
        Err(e) => return failed(&e),
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::select! {
        copied = copy => match copied {
            Ok(_) => ServeEnd { outcome: Outcome::Ok, error: String::new() },
            Err(e) => ServeEnd { outcome: Outcome::IoError, error: format!("upgraded: {e}") },
        },
        _ = stats.activity.idle_for(idle) => ServeEnd {
            outcome: Outcome::IdleTimeout,
            error: String::new(),
        },
        _ = outbound.aborted() => ServeEnd { outcome: Outcome::Shutdown, error: String::new() },
    }
}
