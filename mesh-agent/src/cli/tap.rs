//! `mesh-agent tap [--namespace --workload --service] [-o json]`: prints each request and
//! connection the local agent finishes while the command runs, from the admin API's `/tap`
//! stream. A line per record: aligned text by default, the record's JSON with `-o json`.

use std::io::Write;

use http_body_util::BodyExt;

use super::inspect::{ClientArgs, InspectError, Output};
use crate::admin::encode_query_value as enc;
use crate::telemetry::Record;

#[derive(clap::Args, Debug)]
pub struct TapArgs {
    /// Only traffic from or to workloads of this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only traffic from or to this workload (its name).
    #[arg(long)]
    pub workload: Option<String>,
    /// Only traffic to this service (namespace/name, or name).
    #[arg(long)]
    pub service: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl TapArgs {
    fn path(&self) -> String {
        let mut q = Vec::new();
        for (name, value) in [
            ("namespace", &self.namespace),
            ("workload", &self.workload),
            ("service", &self.service),
        ] {
            if let Some(v) = value {
                q.push(format!("{name}={}", enc(v)));
            }
        }
        format!("/tap?{}", q.join("&"))
    }
}

/// Streams records to `out` until the agent ends the stream (or the process is stopped).
pub fn run(args: &TapArgs, out: &mut dyn Write) -> Result<(), InspectError> {
    let addr = args.client.admin.clone();
    let unreachable = |reason: String| InspectError::Unreachable {
        addr: addr.clone(),
        reason,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| unreachable(format!("starting the async runtime: {e}")))?;
    runtime.block_on(stream(args, out))
}

async fn stream(args: &TapArgs, out: &mut dyn Write) -> Result<(), InspectError> {
    let addr = args.client.admin.as_str();
    let path = args.path();
    let unexpected = |reason: String| InspectError::Unexpected {
        addr: addr.to_owned(),
        path: path.clone(),
        reason,
    };
    let response = super::inspect::client::open(addr, &path).await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(InspectError::Refused {
            status: status.as_u16(),
            message: String::from_utf8_lossy(&text).trim().to_owned(),
        });
    }
    if args.client.output == Output::Table {
        let _ = writeln!(out, "{}", header());
    }
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| unexpected(format!("reading the stream: {e}")))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let _ = out.write_all(&render(&line[..end], args.client.output));
            let _ = out.flush();
        }
    }
    Ok(())
}

fn header() -> String {
    format!(
        "{:<11} {:<4} {:<25} {:<25} {:<22} {:<6} {:<7} {:<5} {:>8} {:>8} {:>7}  REQUEST",
        "REPORTER",
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "SERVICE",
        "STATUS",
        "GRPC",
        "FLAGS",
        "BYTES_IN",
        "BYTES_OUT",
        "MS"
    )
}

/// One line of output for one NDJSON line of the stream.
fn render(line: &[u8], output: Output) -> Vec<u8> {
    if output != Output::Table {
        let mut v = line.to_vec();
        v.push(b'\n');
        return v;
    }
    let Ok(r) = serde_json::from_slice::<Record>(line) else {
        // Not a record (`{"missed": n}`): shown as it came.
        return format!("# {}\n", String::from_utf8_lossy(line)).into_bytes();
    };
    let status = if r.kind == "connection" {
        "-".to_owned()
    } else {
        r.response_code.to_string()
    };
    let request = if r.kind == "connection" {
        format!("-> {}", r.upstream)
    } else {
        format!("{} {}{}", r.method, r.authority, r.path)
    };
    format!(
        "{:<11} {:<4} {:<25} {:<25} {:<22} {:<6} {:<7} {:<5} {:>8} {:>8} {:>7}  {}\n",
        r.reporter,
        r.protocol,
        format!("{}/{}", r.source_namespace, r.source_workload),
        format!("{}/{}", r.destination_namespace, r.destination_workload),
        r.destination_service,
        status,
        r.grpc_status
            .map_or_else(|| "-".to_owned(), |s| s.to_string()),
        r.response_flags,
        r.bytes_received,
        r.bytes_sent,
        r.duration_ms,
        request
    )
    .into_bytes()
}
