//! `mesh-agent`: parses the command line, sets up logging and the runtime, and maps errors to
//! exit codes (1 for failures, 2 for configuration that cannot be used).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mesh_agent::cli::{self, Cli, Command};
use mesh_agent::config::{AgentConfig, ConfigProblem, LogFormat};
use mesh_agent::{agent, state};
use tracing_subscriber::EnvFilter;

const EXIT_FAILURE: u8 = 1;
const EXIT_CONFIG: u8 = 2;
/// Blocking work (a reload in progress) gets this long once the agent has returned.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("{}", cli::version());
            ExitCode::SUCCESS
        }
        Command::Validate(args) => match cli::validate(&args.config) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(problems) => {
                eprintln!("{problems}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
        Command::Run(config) => run(*config),
        Command::Probe(args) => {
            let (out, ok) = cli::probe::run(&args);
            print!("{out}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
        Command::Ca(args) => ca(*args),
        Command::Tap(args) => match cli::tap::run(&args, &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
        Command::Inspect(command) => match cli::inspect::run(&command) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
    }
}

fn ca(args: cli::ca::CaArgs) -> ExitCode {
    init_tracing(args.log_format());
    match cli::ca::run(args) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            let usage = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<mesh_agent::ca::CaError>(),
                    Some(
                        mesh_agent::ca::CaError::Usage(_) | mesh_agent::ca::CaError::Exists { .. }
                    )
                )
            });
            ExitCode::from(if usage { EXIT_CONFIG } else { EXIT_FAILURE })
        }
    }
}

fn run(config: AgentConfig) -> ExitCode {
    init_tracing(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(agent::run(config));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let config_error = e
                .chain()
                .any(|c| c.is::<state::ConfigError>() || c.is::<ConfigProblem>());
            ExitCode::from(if config_error {
                EXIT_CONFIG
            } else {
                EXIT_FAILURE
            })
        }
    }
}

/// Logs to stdout, filtered by `RUST_LOG` (default `info`).
fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, never into log files or collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    if let Err(e) = installed {
        eprintln!("warning: logging not set up: {e}");
    }
}
