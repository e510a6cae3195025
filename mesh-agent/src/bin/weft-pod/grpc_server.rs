//! The gRPC side of `http-serve`: the `weft.echo.Echo` service, whose replies (and error
//! statuses, through `x-served-by` metadata) name the serving pod. A request can ask for a
//! status code or a delay; the persistent delay of [`crate::control`] applies too.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::net::TcpListener;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

use crate::control::{MAX_DELAY_MS, Pod};
use crate::echo::echo_server::{Echo, EchoServer};
use crate::echo::{EchoReply, EchoRequest};

/// Most replies one server-streaming call may ask for.
pub const MAX_STREAM: u32 = 100_000;

/// Serves until the listener fails.
pub async fn serve(listener: TcpListener, pod: Arc<Pod>) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .add_service(EchoServer::new(EchoService { pod }))
        .serve_with_incoming(TcpIncoming::from(listener))
        .await
}

struct EchoService {
    pod: Arc<Pod>,
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

impl EchoService {
    /// The common part of both calls: the delay, then the requested status if any.
    async fn prologue(&self, request: &EchoRequest) -> Result<(), Status> {
        let delay = match request.delay_ms {
            0 => self.pod.control.delay(),
            ms => Duration::from_millis(u64::from(ms).min(MAX_DELAY_MS)),
        };
        tokio::time::sleep(delay).await;
        match request.status {
            0 => Ok(()),
            code => Err(Status::with_metadata(
                Code::from(i32::try_from(code).unwrap_or(i32::MAX)),
                format!("{} answers status {code} as asked", self.pod.name),
                self.served_by(),
            )),
        }
    }

    fn served_by(&self) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        // The name was checked as a header value at startup; a failure here only loses the label.
        if let Ok(value) = MetadataValue::try_from(self.pod.name.as_str()) {
            metadata.insert("x-served-by", value);
        }
        metadata
    }

    fn respond<T>(&self, message: T) -> Response<T> {
        let mut response = Response::new(message);
        *response.metadata_mut() = self.served_by();
        response
    }
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let request = request.into_inner();
        self.prologue(&request).await?;
        let reply = EchoReply {
            message: request.message,
            server: self.pod.name.clone(),
            index: 0,
        };
        Ok(self.respond(reply))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        let request = request.into_inner();
        if request.count > MAX_STREAM {
            return Err(Status::invalid_argument(format!(
                "count {}: at most {MAX_STREAM}",
                request.count
            )));
        }
        self.prologue(&request).await?;
        let (message, server) = (request.message, self.pod.name.clone());
        let replies = (0..request.count).map(move |index| {
            Ok(EchoReply {
                message: message.clone(),
                server: server.clone(),
                index,
            })
        });
        let stream: ReplyStream = Box::pin(futures_util::stream::iter(replies));
        Ok(self.respond(stream))
    }
}
