//! `mesh-agent probe`: the kernel-feature table `mesh-agent run` checks at start, for a node
//! that is about to get the agent (exit 1 when anything is missing).

use clap::ValueEnum;

use crate::datapath::probe::{self, Host, Report};

#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// Output format: a table for people, json for scripts.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ProbeOutput::Table)]
    pub output: ProbeOutput,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeOutput {
    Table,
    Json,
}

/// Probes this host's kernel; the rendered report, and whether every requirement is met.
pub fn run(args: &ProbeArgs) -> (String, bool) {
    let report = probe::probe(&Host);
    (render(&report, args.output), report.require().is_ok())
}

fn render(report: &Report, output: ProbeOutput) -> String {
    match output {
        ProbeOutput::Table => report.table(),
        ProbeOutput::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
    }
}
