//! Opaque TCP streams to a pod: authorized at admission, then bytes both ways.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Admitted, Inbound};
use crate::proxy::copy::{CopyEnd, copy_bidirectional};

impl Inbound {
    pub(super) async fn serve_tcp<S>(self: Arc<Self>, mut stream: S, admitted: Admitted)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut pod = match self.connect_pod(&admitted).await {
            Ok(pod) => pod,
            Err(e) => return self.log_stream(&admitted, &e, 0, 0),
        };
        let copied = copy_bidirectional(
            &mut stream,
            &mut pod,
            self.config.idle_timeout,
            self.aborted(),
        )
        .await;
        let outcome = match copied.end {
            CopyEnd::Done => "ok".to_owned(),
            CopyEnd::Idle => "idle_timeout".to_owned(),
            CopyEnd::Io(e) => format!("io_error: {e}"),
            CopyEnd::Aborted => "shutdown".to_owned(),
        };
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
