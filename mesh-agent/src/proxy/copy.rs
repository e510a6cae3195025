//! Moving bytes between a client and its upstream.
//!
//! Two one-way copies run side by side. When one side finishes sending (EOF), its peer gets a
//! FIN (`shutdown(Write)`) and the other direction keeps running, so request/response protocols
//! that half-close work. The connection ends when both directions are done, on the first I/O
//! error, when no byte has moved either way for the idle timeout, or when the proxy shuts down.
//! Byte counts are kept however it ends.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::io::Activity;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const BUF_SIZE: usize = 16 * 1024;

/// How a proxied connection ended.
#[derive(Debug)]
pub enum CopyEnd {
    /// Both sides finished sending.
    Done,
    /// No bytes in either direction for the idle timeout.
    Idle,
    /// A read, write or shutdown failed.
    Io(io::Error),
    /// The proxy stopped the connection (shutdown grace period over).
    Aborted,
}

/// The end of a connection and what moved through it.
#[derive(Debug)]
pub struct Copied {
    pub end: CopyEnd,
    /// Client -> upstream.
    pub sent: u64,
    /// Upstream -> client.
    pub received: u64,
}

/// Copies in both directions until the connection ends (see the module docs). Both streams are
/// left open; dropping them closes what is left.
pub async fn copy_bidirectional<C, U>(
    client: &mut C,
    upstream: &mut U,
    idle_timeout: Duration,
    abort: impl Future<Output = ()>,
) -> Copied
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let sent = AtomicU64::new(0);
    let received = AtomicU64::new(0);
    // Halves of any stream (TCP, tunnel, in-process); their shared lock is never contended,
    // as each half is driven by one direction only.
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut upstream_r, mut upstream_w) = tokio::io::split(upstream);

    let both = async {
        tokio::try_join!(
            one_way(&mut client_r, &mut upstream_w, &sent, &activity),
            one_way(&mut upstream_r, &mut client_w, &received, &activity),
        )
    };
    let end = tokio::select! {
        res = both => match res {
            Ok(_) => CopyEnd::Done,
            Err(e) => CopyEnd::Io(e),
        },
        _ = activity.idle_for(idle_timeout) => CopyEnd::Idle,
        _ = abort => CopyEnd::Aborted,
    };
    Copied {
        end,
        sent: sent.load(Ordering::Relaxed),
        received: received.load(Ordering::Relaxed),
    }
}

/// Copies `from` into `to` until EOF, then half-closes `to`.
async fn one_way<R, W>(
    from: &mut R,
    to: &mut W,
    count: &AtomicU64,
    activity: &Activity,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return match to.shutdown().await {
                // The peer is already gone; the other direction will report what happened.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                other => other,
            };
        }
        activity.touch();
        to.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        activity.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::pending;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair of real TCP sockets on loopback.
    async fn pair() -> io::Result<(TcpStream, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let (a, b) = tokio::join!(
            TcpStream::connect(listener.local_addr()?),
            listener.accept()
        );
        Ok((a?, b?.0))
    }

    /// Client <-> [proxy copy] <-> upstream, with the copy running in its own task.
    async fn proxied(
        idle: Duration,
    ) -> io::Result<(TcpStream, TcpStream, tokio::task::JoinHandle<Copied>)> {
        let (client, mut proxy_client_side) = pair().await?;
        let (mut proxy_upstream_side, upstream) = pair().await?;
        let task = tokio::spawn(async move {
            copy_bidirectional(
                &mut proxy_client_side,
                &mut proxy_upstream_side,
                idle,
                pending(),
            )
            .await
        });
        Ok((client, upstream, task))
    }

    #[tokio::test]
    async fn half_close_keeps_the_other_direction_open() -> anyhow::Result<()> {
        let (mut client, mut upstream, task) = proxied(Duration::from_secs(10)).await?;
        // An echo upstream that answers only after the request is complete (EOF).
        let echo = tokio::spawn(async move {
            let mut request = Vec::new();
            upstream.read_to_end(&mut request).await?;
            upstream.write_all(b"echo:").await?;
            upstream.write_all(&request).await?;
            upstream.shutdown().await?;
            io::Result::Ok(())
        });
        let request = vec![7u8; 100_000];
        client.write_all(&request).await?;
        client.shutdown().await?;
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut reply)).await??;
        assert_eq!(reply.len(), 5 + request.len());
        assert!(reply.starts_with(b"echo:"));
        echo.await??;
        let copied = tokio::time::timeout(Duration::from_secs(5), task).await??;
        assert!(matches!(copied.end, CopyEnd::Done), "{:?}", copied.end);
        assert_eq!((copied.sent, copied.received), (100_000, 100_005));
        Ok(())
    }

    #[tokio::test]
    async fn idle_connection_is_closed_on_both_sides() -> anyhow::Result<()> {
        let idle = Duration::from_millis(200);
        let (mut client, mut upstream, task) = proxied(idle).await?;
        client.write_all(b"hi").await?;
        let mut buf = [0u8; 2];
        upstream.read_exact(&mut buf).await?;
        let started = std::time::Instant::now();
        let copied = tokio::time::timeout(Duration::from_secs(5), task).await??;
        assert!(matches!(copied.end, CopyEnd::Idle), "{:?}", copied.end);
        assert!(started.elapsed() >= idle - Duration::from_millis(50));
        assert_eq!((copied.sent, copied.received), (2, 0));
        // The proxy dropped both sockets: each peer sees EOF.
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await??;
        tokio::time::timeout(Duration::from_secs(5), upstream.read_to_end(&mut rest)).await??;
        assert!(rest.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn traffic_keeps_a_connection_alive_past_the_idle_timeout() -> anyhow::Result<()> {
        let idle = Duration::from_millis(300);
        let (mut client, mut upstream, task) = proxied(idle).await?;
        let mut buf = [0u8; 1];
        for _ in 0..6 {
            client.write_all(b"x").await?;
            upstream.read_exact(&mut buf).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!task.is_finished(), "closed while bytes were moving");
        drop(client);
        drop(upstream);
        let copied = tokio::time::timeout(Duration::from_secs(5), task).await??;
        assert_eq!(copied.sent, 6);
        Ok(())
    }

    #[tokio::test]
    async fn abort_stops_the_copy() -> anyhow::Result<()> {
        let (mut a, mut b) = pair().await?;
        let (mut c, mut d) = pair().await?;
        let copied = copy_bidirectional(&mut b, &mut c, Duration::from_secs(60), async {}).await;
        assert!(matches!(copied.end, CopyEnd::Aborted), "{:?}", copied.end);
        drop((b, c));
        let mut rest = Vec::new();
        a.read_to_end(&mut rest).await?;
        d.read_to_end(&mut rest).await?;
        Ok(())
    }
}
