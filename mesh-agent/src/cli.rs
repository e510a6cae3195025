//! The `mesh-agent` command line: `run` (the node agent), `validate` (check a state file without
//! touching the kernel) and `version`.

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
    /// Print the agent's version.
    Version,
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
        "ok: {} namespaces, {} workloads, {} services",
        state.namespaces.len(),
        state.workloads.len(),
        state.services.len()
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
