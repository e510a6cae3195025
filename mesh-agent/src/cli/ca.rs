//! `mesh-agent ca ...`: the mesh CA's commands (`init`, `node-token`, `serve`, `rotate`),
//! mapped onto [`crate::ca`].

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use crate::ca::{self, InitOptions, KubernetesAuth, NodeAuth, ServeOptions, StateSource};
use crate::config::{HumanDuration, LogFormat, trust_domain};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:15012";
pub const DEFAULT_CERT_TTL: &str = "24h";

#[derive(clap::Args, Debug)]
pub struct CaArgs {
    #[command(subcommand)]
    pub command: CaCommand,
}

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Create the CA directory: the root (generated, or taken with --root-cert/--root-key),
    /// the bundle and one bootstrap token per --node.
    Init(InitArgs),
    /// Create a node's bootstrap token (--force replaces an existing one).
    NodeToken(NodeTokenArgs),
    /// Serve the CA's HTTPS API until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Rotate the root in three steps: begin, activate, finish (see docs/identity.md).
    Rotate {
        #[command(subcommand)]
        step: RotateStep,
    },
}

#[derive(clap::Args, Debug)]
pub struct DirArg {
    /// The CA directory (created 0700; holds the signing keys).
    #[arg(long, env = "WEFT_CA_DIR", value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    pub dir: DirArg,
    #[arg(long, default_value = crate::config::defaults::TRUST_DOMAIN, value_parser = trust_domain)]
    pub trust_domain: String,
    /// A node to create a bootstrap token for (repeatable).
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Take this root certificate (PEM, ECDSA P-256 CA) instead of generating one.
    #[arg(long, value_name = "PEM", requires = "root_key")]
    pub root_cert: Option<PathBuf>,
    /// The key of --root-cert (PEM PKCS#8).
    #[arg(long, value_name = "PEM", requires = "root_cert")]
    pub root_key: Option<PathBuf>,
    /// Replace an existing root, bundle and tokens.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args, Debug)]
pub struct NodeTokenArgs {
    #[command(flatten)]
    pub dir: DirArg,
    #[arg(long, value_name = "NAME")]
    pub node: String,
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Address of the HTTPS API.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Where the CA learns which workloads run on which node (certificates are signed only
    /// for workloads scheduled on the asking node): `file` (`--state`) or `kubernetes` (the
    /// cluster's pods and namespaces, watched through the in-cluster or kubeconfig credentials)
    /// [default: file].
    #[arg(long, value_enum, env = "WEFT_CA_STATE_SOURCE")]
    pub state_source: Option<StateSourceMode>,
    /// Mesh state file, with `--state-source file`.
    #[arg(long, value_name = "FILE", required_unless_present = "state_source")]
    pub state: Option<PathBuf>,
    /// How a request's bearer token names its node: `token` (bootstrap tokens of the CA
    /// directory) or `kubernetes` (the agent's projected service-account token, checked with
    /// TokenReview through the in-cluster or kubeconfig credentials).
    #[arg(long, value_enum, default_value_t = NodeAuthMode::Token, env = "WEFT_CA_NODE_AUTH")]
    pub node_auth: NodeAuthMode,
    /// With `--node-auth kubernetes`: the audience agents' tokens must be valid for.
    #[arg(long, default_value = ca::DEFAULT_AUDIENCE)]
    pub token_audience: String,
    /// With `--node-auth kubernetes`: the only user accepted (the agents' service account).
    #[arg(long, default_value = ca::DEFAULT_AGENT_USERNAME)]
    pub agent_username: String,
    /// Lifetime of workload certificates.
    #[arg(long, default_value = DEFAULT_CERT_TTL, value_parser = positive_duration)]
    pub cert_ttl: HumanDuration,
    /// Address of the CA's Prometheus metrics (`/metrics`); none by default.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// How often the CA directory and the state file are checked for changes.
    #[arg(long, default_value = "1s", value_parser = positive_duration)]
    pub reload_interval: HumanDuration,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateSourceMode {
    File,
    Kubernetes,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeAuthMode {
    Token,
    Kubernetes,
}

#[derive(Subcommand, Debug)]
pub enum RotateStep {
    /// Generate the next root and add it to the bundle; the old root still signs.
    Begin(DirArg),
    /// Sign with the next root from now on; the old root stays in the bundle.
    Activate(DirArg),
    /// Drop the old root from the bundle and delete its key.
    Finish(DirArg),
}

impl CaArgs {
    pub fn log_format(&self) -> LogFormat {
        match &self.command {
            CaCommand::Serve(args) => args.log_format,
            _ => LogFormat::Text,
        }
    }
}

/// Runs a CA command; the text is for stdout.
pub fn run(args: CaArgs) -> anyhow::Result<String> {
    match args.command {
        CaCommand::Init(args) => init(args),
        CaCommand::NodeToken(args) => {
            let path = ca::node_token(&args.dir.dir, &args.node, args.force)
                .with_context(|| format!("ca node-token {}", args.node))?;
            Ok(format!("token {}", path.display()))
        }
        CaCommand::Serve(args) => serve(args),
        CaCommand::Rotate { step } => rotate(step),
    }
}

fn init(args: InitArgs) -> anyhow::Result<String> {
    let report = ca::init(&InitOptions {
        dir: args.dir.dir,
        trust_domain: args.trust_domain,
        nodes: args.nodes,
        root_cert: args.root_cert,
        root_key: args.root_key,
        force: args.force,
    })
    .context("ca init")?;
    let mut out = format!("root {}\nbundle {}", report.root, report.bundle.display());
    for token in &report.tokens {
        let _ = write!(out, "\ntoken {}", token.display());
    }
    Ok(out)
}

fn serve(args: ServeArgs) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(async {
            // The Kubernetes client spawns tasks: it is built inside the runtime.
            let node_auth = match args.node_auth {
                NodeAuthMode::Token => NodeAuth::Token,
                NodeAuthMode::Kubernetes => NodeAuth::Kubernetes(KubernetesAuth {
                    client: kube::Client::try_default()
                        .await
                        .context("--node-auth kubernetes: no Kubernetes client configuration")?,
                    audience: args.token_audience,
                    username: args.agent_username,
                }),
            };
            let mode = args.state_source.unwrap_or(StateSourceMode::File);
            let state = match (mode, args.state) {
                (StateSourceMode::File, Some(path)) => StateSource::File(path),
                (StateSourceMode::File, None) => {
                    anyhow::bail!("--state-source file needs --state FILE")
                }
                (StateSourceMode::Kubernetes, _) => StateSource::Kubernetes(
                    kube::Client::try_default()
                        .await
                        .context("--state-source kubernetes: no Kubernetes client configuration")?,
                ),
            };
            ca::serve(ServeOptions {
                dir: args.dir.dir,
                listen: args.listen,
                state,
                node_auth,
                cert_ttl: args.cert_ttl.get(),
                metrics_addr: args.metrics_addr,
                reload_interval: args.reload_interval.get(),
            })
            .await
        })
        .context("ca serve")?;
    Ok(String::new())
}

fn rotate(step: RotateStep) -> anyhow::Result<String> {
    Ok(match step {
        RotateStep::Begin(dir) => {
            let next = ca::begin(&dir.dir).context("ca rotate begin")?;
            format!(
                "next root {next} added to the bundle; the old root still signs.\n\
                 Activate once every node has refreshed its bundle (at least one poll interval)."
            )
        }
        RotateStep::Activate(dir) => {
            let active = ca::activate(&dir.dir).context("ca rotate activate")?;
            format!(
                "root {active} signs from now on; the old root stays in the bundle.\n\
                 Finish once every certificate of the old root has expired (at least one --cert-ttl)."
            )
        }
        RotateStep::Finish(dir) => {
            let dropped = ca::finish(&dir.dir).context("ca rotate finish")?;
            if dropped.is_empty() {
                "nothing to drop: the bundle holds the active root only".to_owned()
            } else {
                format!("dropped from the bundle: {}", dropped.join(", "))
            }
        }
    })
}

fn positive_duration(s: &str) -> Result<HumanDuration, String> {
    let d: HumanDuration = s.parse()?;
    if d.get().is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
