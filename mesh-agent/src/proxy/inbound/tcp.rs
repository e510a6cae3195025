//! Opaque TCP streams to a pod: authorized at admission, then bytes both ways.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Admitted, Inbound};
use crate::proxy::copy::{CopyEnd, copy_bidirectional};
use crate::telemetry::flags;

impl Inbound {
    pub(super) async fn serve_tcp<S>(self: Arc<Self>, mut stream: S, admitted: Admitted)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let recorder = self.recorder(&admitted);
        let endpoint = Some(admitted.addr);
        let mut pod = match self.connect_pod(&admitted).await {
            Ok(pod) => pod,
            Err(e) => {
                recorder.closed(flags::UF, endpoint, 0, 0);
                return self.log_stream(&admitted, &e, 0, 0);
            }
        };
        let copied = copy_bidirectional(
            &mut stream,
            &mut pod,
            self.config.idle_timeout,
            self.aborted(),
        )
        .await;
        let (outcome, flag) = match copied.end {
            CopyEnd::Done => ("ok".to_owned(), flags::NONE),
            CopyEnd::Idle => ("idle_timeout".to_owned(), flags::SI),
            CopyEnd::Io(e) => (format!("io_error: {e}"), flags::UC),
            CopyEnd::Aborted => ("shutdown".to_owned(), flags::NONE),
        };
        // `sent` went from the calling workload to the pod.
        recorder.closed(flag, endpoint, copied.sent, copied.received);
        self.log_stream(&admitted, &outcome, copied.sent, copied.received);
    }

    /// A plaintext connection to the pod, from this node (which STRICT mode lets in).
    pub(super) async fn connect_pod(&self, admitted: &Admitted) -> Result<TcpStream, String> {
        let connect = TcpStream::connect(admitted.addr);
        match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(pod)) => {
                let _ = pod.set_nodelay(true);
                Ok(pod)
            }
            Ok(Err(e)) => Err(format!("connect_error: {e}")),
            Err(_) => Err("connect_timeout".to_owned()),
        }
    }
}
