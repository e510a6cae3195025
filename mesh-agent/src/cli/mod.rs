//! The `mesh-agent` command line: `run` (the node agent), `validate` (check a state file without
//! touching the kernel), `ca` (the mesh CA, in `cli/ca.rs`), the inspect commands that ask a
//! running agent (`status`, `explain`, ..., in `cli/inspect/`), `probe` (the kernel features the
//! datapath needs) and `version`.

pub mod ca;
pub mod inspect;
pub mod probe;
pub mod tap;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::AgentConfig;
use crate::state::{self, ConfigError};

#[derive(Parser, Debug)]
#[command(
    name = "mesh-agent",
    about = "weft node agent: eBPF capture and node-local proxy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the node agent: attach the datapath to this node's enrolled pods and proxy their
    /// captured connections.
    Run(Box<AgentConfig>),
    /// Check a mesh state file and print a summary, or every problem found.
    Validate(ValidateArgs),
    /// The mesh CA: create its root and node tokens, serve certificates, rotate the root.
    Ca(Box<ca::CaArgs>),
    /// Check that this node's kernel has every feature the datapath needs (exit 1 if not).
    Probe(probe::ProbeArgs),
    /// Print the agent's version.
    Version,
    /// Print the requests and connections this node's proxy finishes while it runs, one line
    /// each (from the admin API's live `/tap` stream).
    Tap(tap::TapArgs),
    #[command(flatten)]
    Inspect(inspect::InspectCommand),
}

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Mesh state file (YAML).
    #[arg(long = "config", value_name = "FILE")]
    pub config: PathBuf,
}

/// Loads and validates `path`: `ok: N namespaces, N workloads, N services`, or the problems.
pub fn validate(path: &Path) -> Result<String, ConfigError> {
    let state = state::load_file(path)?;
    Ok(format!(
        "ok: {} namespaces, {} workloads, {} services, {} routes, {} authorization policies, \
         {} peer authentications",
        state.namespaces.len(),
        state.workloads.len(),
        state.services.len(),
        state.routes.len(),
        state.authorization_policies.len(),
        state.peer_authentications.len()
    ))
}

pub fn version() -> String {
    format!("mesh-agent {}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFormat;
    use std::time::Duration;

    #[test]
    fn run_flags_map_onto_the_config_with_defaults() -> anyhow::Result<()> {
        let cli = Cli::try_parse_from([
            "mesh-agent",
            "run",
            "--config",
            "/etc/weft/mesh.yaml",
            "--node",
            "n1",
            "--exclude-cidr",
            "10.0.0.0/8",
            "--exclude-cidr",
            "fd00::/8",
            "--exclude-port",
            "22",
            "--idle-timeout",
            "90s",
            "--log-format",
            "json",
        ])?;
        let Command::Run(cfg) = cli.command else {
            anyhow::bail!("parsed {:?}", cli.command);
        };
        assert_eq!(cfg.node, "n1");
        assert_eq!(cfg.proxy_ip.to_string(), "169.254.7.1");
        assert_eq!(cfg.outbound_port, 15001);
        assert_eq!(cfg.connect_timeout.get(), Duration::from_secs(5));
        assert_eq!(cfg.idle_timeout.get(), Duration::from_secs(90));
        assert_eq!(cfg.reload_interval.get(), Duration::from_secs(1));
        assert_eq!(cfg.max_connections, 16384);
        assert_eq!(cfg.metrics_addr.to_string(), "127.0.0.1:15020");
        assert_eq!(cfg.exclude_cidrs.len(), 2);
        assert_eq!(cfg.exclude_ports, [22]);
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert!(!cfg.fail_closed && !cfg.keep_datapath);
        let json = serde_json::to_value(&cfg)?;
        assert_eq!(json["idle_timeout"], "1m30s");
        assert_eq!(json["exclude_cidrs"][0], "10.0.0.0/8");
        Ok(())
    }

    #[test]
    fn identity_flags_map_onto_the_ca_client() -> anyhow::Result<()> {
        let base = ["mesh-agent", "run", "--config", "m.yaml", "--node", "n1"];
        let Command::Run(cfg) = Cli::try_parse_from(base)?.command else {
            anyhow::bail!("not run");
        };
        assert_eq!(cfg.trust_domain, "cluster.local");
        assert!(cfg.ca_client().is_none(), "no CA address: no mTLS");
        let with_ca = [
            &base[..],
            &[
                "--trust-domain",
                "prod.example",
                "--ca-address",
                "weft-ca:15012",
            ],
            &[
                "--ca-bundle",
                "/etc/weft/ca/bundle.pem",
                "--ca-token",
                "/etc/weft/token",
            ],
        ]
        .concat();
        let Command::Run(cfg) = Cli::try_parse_from(with_ca)?.command else {
            anyhow::bail!("not run");
        };
        let ca = cfg
            .ca_client()
            .ok_or_else(|| anyhow::anyhow!("no CA client"))?;
        assert_eq!(ca.address, "weft-ca:15012");
        assert_eq!(
            (ca.node.as_str(), ca.trust_domain.as_str()),
            ("n1", "prod.example")
        );
        assert_eq!(ca.token, PathBuf::from("/etc/weft/token"));
        let without_token = [&base[..], &["--ca-address", "x:1", "--ca-bundle", "b"]].concat();
        assert!(Cli::try_parse_from(without_token).is_err());
        let bad_domain = [&base[..], &["--trust-domain", "a/b"]].concat();
        assert!(Cli::try_parse_from(bad_domain).is_err());
        Ok(())
    }

    #[test]
    fn the_admin_api_stays_on_loopback_unless_told() -> anyhow::Result<()> {
        let run = |extra: &[&str]| -> anyhow::Result<AgentConfig> {
            let base = ["mesh-agent", "run", "--config", "m.yaml", "--node", "n1"];
            match Cli::try_parse_from([&base[..], extra].concat())?.command {
                Command::Run(cfg) => Ok(*cfg),
                other => anyhow::bail!("parsed {other:?}"),
            }
        };
        let cfg = run(&[])?;
        assert_eq!(cfg.admin_addr.to_string(), "127.0.0.1:15000");
        assert_eq!(cfg.readiness_addr.to_string(), "127.0.0.1:15021");
        assert!(cfg.check_admin_addr().is_ok());
        assert!(
            run(&["--admin-addr", "[::1]:15000"])?
                .check_admin_addr()
                .is_ok()
        );
        let open = run(&["--admin-addr", "0.0.0.0:15000"])?;
        let refused = open.check_admin_addr().err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains("--admin-addr-unsafe")),
            "{refused:?}"
        );
        let unsafe_ok = run(&["--admin-addr", "0.0.0.0:15000", "--admin-addr-unsafe"])?;
        assert!(unsafe_ok.check_admin_addr().is_ok());
        Ok(())
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &[
                "mesh-agent",
                "run",
                "--config",
                "x",
                "--node",
                "n",
                "--idle-timeout",
                "5",
            ][..],
            &[
                "mesh-agent",
                "run",
                "--config",
                "x",
                "--node",
                "n",
                "--exclude-cidr",
                "10.0.0.0/40",
            ],
            &[
                "mesh-agent",
                "run",
                "--config",
                "x",
                "--node",
                "n",
                "--max-connections",
                "0",
            ],
            &["mesh-agent", "run", "--config", "x"],
        ] {
            // WEFT_NODE_NAME could supply --node; none of these cases depends on it.
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
