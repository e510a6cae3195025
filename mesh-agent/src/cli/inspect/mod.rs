//! The inspect commands: `status`, `workloads`, `services`, `routes`, `certs`, `policy list`,
//! `policy check`, `config dump` and `explain`. Each asks the node agent's admin API (`crate::admin`, by
//! default on 127.0.0.1:15000) one question and prints the answer: an aligned table for people
//! (`render`, `explain`), or the API's own document with `-o json` or `-o yaml` for scripts.

pub(crate) mod client;
mod explain;
mod render;
mod table;

use clap::{Subcommand, ValueEnum};
use serde::de::DeserializeOwned;

pub use client::InspectError;

use crate::admin::encode_query_value as enc;
use crate::config::defaults::ADMIN_ADDR;

#[derive(Subcommand, Debug)]
pub enum InspectCommand {
    /// This node's agent: readiness, mTLS, what the mesh holds, the datapath's counters.
    Status(ClientArgs),
    /// Every workload (pod) of the mesh; for this node's pods, whether they are captured.
    Workloads(ClientArgs),
    /// Every service, its ports (with the protocol the proxy assumes) and endpoints.
    Services(ClientArgs),
    /// The route rules attached to each service port.
    Routes(ClientArgs),
    /// The workload certificates this node holds and the trust bundle (never a key).
    Certs(ClientArgs),
    /// Authorization questions.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The agent's configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The whole path of a connection from a workload to host:port, as the mesh model sees
    /// it: capture, service and routes, endpoints and how they are reached, the authorization
    /// verdict of each, certificates.
    Explain(ExplainArgs),
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Every authorization policy and peer authentication, with the workloads each selects.
    List(ClientArgs),
    /// Whether <SOURCE> (namespace/pod) may reach the pod at <DESTINATION> (ip:port), and which
    /// policy decides. With --method or --path the question is an HTTP request (L7), else a
    /// connection (L4).
    Check(CheckArgs),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// The configuration, the mesh state and the certificates (public parts) the agent runs
    /// with. No table: YAML unless -o json.
    Dump(ClientArgs),
}

/// How to reach the agent and how to print its answer; every inspect command takes them.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// The agent's admin API address.
    #[arg(long, env = "WEFT_ADMIN", value_name = "HOST:PORT", default_value = ADMIN_ADDR)]
    pub admin: String,
    /// Output format: a table for people, json or yaml for scripts.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The calling workload, namespace/pod.
    #[arg(value_name = "SOURCE")]
    pub src: String,
    /// The destination pod's ip:port.
    #[arg(value_name = "DESTINATION")]
    pub dst: String,
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// The calling workload, namespace/pod.
    #[arg(value_name = "SOURCE")]
    pub src: String,
    /// Where it connects: ip:port, or a service as name.namespace:port.
    #[arg(value_name = "DESTINATION")]
    pub dst: String,
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// An HTTP request to ask about instead of a connection.
#[derive(clap::Args, Debug)]
pub struct RequestArgs {
    /// HTTP method of the request [default with --path: GET].
    #[arg(long)]
    pub method: Option<String>,
    /// HTTP path of the request [default with --method: /].
    #[arg(long)]
    pub path: Option<String>,
}

impl RequestArgs {
    fn query(&self) -> String {
        let mut q = String::new();
        if let Some(m) = &self.method {
            q.push_str(&format!("&method={}", enc(m)));
        }
        if let Some(p) = &self.path {
            q.push_str(&format!("&path={}", enc(p)));
        }
        q
    }
}

/// Asks the agent and returns what to print.
pub fn run(command: &InspectCommand) -> Result<String, InspectError> {
    let (client, path) = request(command);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| InspectError::Unreachable {
            addr: client.admin.clone(),
            reason: format!("starting the async runtime: {e}"),
        })?;
    let answer = runtime.block_on(client::get(&client.admin, &path))?;
    let shape = |e: serde_json::Error| InspectError::Unexpected {
        addr: client.admin.clone(),
        path: path.clone(),
        reason: e.to_string(),
    };
    print(command, client.output, answer).map_err(shape)
}

/// The client settings and the API path of a command.
fn request(command: &InspectCommand) -> (&ClientArgs, String) {
    match command {
        InspectCommand::Status(c) => (c, "/status".into()),
        InspectCommand::Workloads(c) => (c, "/workloads".into()),
        InspectCommand::Services(c) => (c, "/services".into()),
        InspectCommand::Routes(c) => (c, "/routes".into()),
        InspectCommand::Certs(c) => (c, "/certs".into()),
        InspectCommand::Config {
            command: ConfigCommand::Dump(c),
        } => (c, "/config_dump".into()),
        InspectCommand::Policy {
            command: PolicyCommand::List(c),
        } => (c, "/policies".into()),
        InspectCommand::Policy {
            command: PolicyCommand::Check(a),
        } => (&a.client, ask("/policy/check", &a.src, &a.dst, &a.request)),
        InspectCommand::Explain(a) => (&a.client, ask("/explain", &a.src, &a.dst, &a.request)),
    }
}

fn ask(endpoint: &str, src: &str, dst: &str, request: &RequestArgs) -> String {
    format!(
        "{endpoint}?src={}&dst={}{}",
        enc(src),
        enc(dst),
        request.query()
    )
}

/// The answer in the chosen format.
pub fn print(
    command: &InspectCommand,
    output: Output,
    answer: serde_json::Value,
) -> Result<String, serde_json::Error> {
    match (output, command) {
        (Output::Json, _) => Ok(serde_json::to_string_pretty(&answer)? + "\n"),
        (Output::Yaml, _) | (Output::Table, InspectCommand::Config { .. }) => {
            Ok(serde_saphyr::to_string(&answer).unwrap_or_else(|e| format!("# {e}\n")))
        }
        (Output::Table, InspectCommand::Status(_)) => Ok(render::status(&view(answer)?)),
        (Output::Table, InspectCommand::Workloads(_)) => {
            Ok(render::workloads(&view::<Vec<_>>(answer)?))
        }
        (Output::Table, InspectCommand::Services(_)) => {
            Ok(render::services(&view::<Vec<_>>(answer)?))
        }
        (Output::Table, InspectCommand::Routes(_)) => Ok(render::routes(&view::<Vec<_>>(answer)?)),
        (Output::Table, InspectCommand::Certs(_)) => Ok(render::certs(&view(answer)?)),
        (
            Output::Table,
            InspectCommand::Policy {
                command: PolicyCommand::List(_),
            },
        ) => Ok(render::policies(&view(answer)?)),
        (Output::Table, InspectCommand::Policy { .. }) => Ok(render::check(&view(answer)?)),
        (Output::Table, InspectCommand::Explain(_)) => Ok(explain::render(&view(answer)?)),
    }
}

fn view<T: DeserializeOwned>(answer: serde_json::Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(answer)
}

#[cfg(test)]
mod tests;
