//! `GET /tap?namespace=&workload=&service=`: the records of requests and connections as they
//! finish, one JSON object per line, for as long as the client stays. Fed by the same event as
//! the access log (`telemetry::Events`); while nobody taps, no record is even built.
//!
//! A tap that reads too slowly misses records rather than slowing the proxy; it is told so in
//! a `{"missed": n}` line.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::broadcast::{Receiver, error::RecvError};

use super::AdminError;
use super::query::Query;
use crate::telemetry::{Events, Record, ReplyBody};

/// Which records a tap wants; an empty field matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapFilter {
    /// Either end's namespace.
    pub namespace: Option<String>,
    /// Either end's workload name.
    pub workload: Option<String>,
    /// The destination service, `namespace/name` or `name`.
    pub service: Option<String>,
}

impl TapFilter {
    pub fn parse(query: Option<&str>) -> Result<Self, AdminError> {
        let q = Query::parse(query, &["namespace", "workload", "service"])?;
        let get = |name| q.get(name).filter(|v| !v.is_empty()).map(str::to_owned);
        Ok(TapFilter {
            namespace: get("namespace"),
            workload: get("workload"),
            service: get("service"),
        })
    }

    pub fn matches(&self, r: &Record) -> bool {
        let either = |want: &Option<String>, a: &str, b: &str| {
            want.as_deref().is_none_or(|w| w == a || w == b)
        };
        let service = self.service.as_deref().is_none_or(|s| {
            r.destination_service == s
                || r.destination_service
                    .rsplit_once('/')
                    .is_some_and(|(_, n)| n == s)
        });
        either(
            &self.namespace,
            &r.source_namespace,
            &r.destination_namespace,
        ) && either(&self.workload, &r.source_workload, &r.destination_workload)
            && service
    }
}

/// The streamed answer of a tap.
pub fn stream(events: &Events, filter: TapFilter) -> Response<ReplyBody> {
    let lines = stream::unfold(
        (events.subscribe(), filter),
        |(mut rx, filter)| async move {
            let line = next_line(&mut rx, &filter).await?;
            Some((Ok::<_, Infallible>(Frame::data(line)), (rx, filter)))
        },
    );
    let mut response = Response::new(StreamBody::new(lines).boxed_unsync());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// The next line for this tap; `None` when the agent's event hub is gone.
async fn next_line(rx: &mut Receiver<Arc<Record>>, filter: &TapFilter) -> Option<Bytes> {
    loop {
        match rx.recv().await {
            Ok(record) if filter.matches(&record) => {
                let mut line = serde_json::to_vec(&*record).unwrap_or_default();
                line.push(b'\n');
                return Some(Bytes::from(line));
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                return Some(Bytes::from(format!("{{\"missed\":{n}}}\n")));
            }
            Err(RecvError::Closed) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(src: (&str, &str), dst: (&str, &str), service: &str) -> Record {
        let mut r: Record = serde_json::from_value(serde_json::json!({
            "time": "", "kind": "request", "reporter": "source",
            "source_workload": src.1, "source_namespace": src.0, "source_principal": "",
            "destination_workload": dst.1, "destination_namespace": dst.0,
            "destination_principal": "", "destination_service": service, "route": "",
            "upstream": "", "method": "GET", "authority": "", "path": "/", "protocol": "http",
            "response_code": 200, "grpc_status": null, "response_flags": "-",
            "connection_security_policy": "none", "bytes_received": 0, "bytes_sent": 0,
            "duration_ms": 0, "upstream_duration_ms": null
        }))
        .expect("a record");
        r.kind = "request".into();
        r
    }

    #[test]
    fn filters_match_either_end_and_the_service() -> Result<(), AdminError> {
        let r = record(("frontend", "web"), ("shop", "api-b"), "shop/api");
        let yes = [
            "",
            "namespace=frontend",
            "namespace=shop",
            "workload=api-b",
            "service=api",
            "service=shop/api&namespace=shop&workload=web",
        ];
        for q in yes {
            assert!(TapFilter::parse(Some(q))?.matches(&r), "{q}");
        }
        for q in [
            "namespace=legacy",
            "workload=api-a",
            "service=shop/other",
            "service=sho",
        ] {
            assert!(!TapFilter::parse(Some(q))?.matches(&r), "{q}");
        }
        assert!(TapFilter::parse(Some("verb=x")).is_err());
        Ok(())
    }
}
