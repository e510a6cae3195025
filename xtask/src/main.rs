//! `cargo xtask <task>`: everything a developer or CI runs, from a bare Debian machine with only
//! rustup stable, gcc and python3.
//!
//! - `setup`: installs what the build and the tests need (idempotent, prints every step).
//! - `test`:  setup, then every test: unit tests and the root-only network-namespace suites.
//! - `demo`:  setup, then a two-node mesh in network namespaces with real eBPF capture.
//! - `bench`: the path benchmark (weft against the direct path, iptables capture and an HAProxy
//!   TLS pair) and the scale benchmark (a large cluster through the Kubernetes source);
//!   `--scale` only the latter, `--micro` criterion.
//! - `crds`:  renders weft's CRDs from the Rust types into `deploy/crds/`.
//! - `image`: builds the container image (`Dockerfile`) with docker, podman or buildah.

mod deploy;
mod image;
mod setup;

use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "weft project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain pieces the build needs (apt packages, BPF nightly, bpf-linker).
    Setup,
    /// Run every test (needs root: the suites create network namespaces and load BPF programs).
    Test {
        /// Extra arguments passed to `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the local demo: two nodes, enrolled and non-enrolled pods, real eBPF capture.
    Demo,
    /// Write weft's CRDs (generated from the policy types) to deploy/crds/.
    Crds,
    /// Build the mesh-agent container image with docker, podman or buildah.
    Image {
        /// Image name and tag.
        #[arg(long, default_value = image::DEFAULT_TAG)]
        tag: String,
    },
    /// Formatting and clippy (-D warnings), the kernel crate with the BPF nightly.
    Lint,
    /// Benchmarks: the request path through weft against the direct path, iptables capture and
    /// an HAProxy TLS pair (netns, release build; target/bench/paths.{json,md}), or with --micro
    /// the criterion micro-benchmarks.
    Bench {
        /// The criterion micro-benchmarks (route matching, balancing, policy, protocol detection).
        #[arg(long)]
        micro: bool,
        /// Short phases (one or two seconds each, under 3 minutes): checks every path still runs.
        #[arg(long)]
        quick: bool,
        /// Only the scale benchmark: 10,000 services and 100,000 endpoints through the
        /// Kubernetes source and the state file of a real agent (1,000 services with --quick).
        #[arg(long)]
        scale: bool,
        /// Only these paths of the path benchmark (repeatable: `--path weft-l7 --path direct`);
        /// the scale benchmark is skipped then.
        #[arg(long = "path", value_name = "PATH")]
        paths: Vec<String>,
        /// Extra arguments for criterion (e.g. a benchmark name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Test { args } => test(&args),
        Task::Demo => demo(),
        Task::Crds => crds(),
        Task::Lint => lint(),
        Task::Image { tag } => image::build(&tag),
        Task::Bench {
            micro: true, args, ..
        } => micro_bench(&args),
        Task::Bench {
            scale: true, quick, ..
        } => scale_bench(quick),
        Task::Bench { quick, paths, .. } if !paths.is_empty() => path_bench(quick, &paths),
        Task::Bench { quick, .. } => {
            path_bench(quick, &[])?;
            scale_bench(quick)
        }
    }
}

fn test(args: &[String]) -> Result<()> {
    setup::run()?;
    require_root("the tests create network namespaces, cgroups and BPF programs")?;
    // Default members only: mesh-ebpf is built for the BPF target by mesh-agent's build script.
    // Offline and quick: before the long suites, so a broken manifest is reported early.
    deploy::check()?;
    step("cargo test");
    let mut test_args = vec!["test"];
    test_args.extend(args.iter().map(String::as_str));
    cargo(&test_args)
}

fn demo() -> Result<()> {
    setup::run()?;
    require_root("the demo creates network namespaces, cgroups and BPF programs")?;
    step("building the agent (release)");
    cargo(&[
        "build",
        "--release",
        "-p",
        "mesh-agent",
        "--bins",
        "--example",
        "demo",
    ])?;
    step("running the demo");
    let status = Command::new("target/release/examples/demo")
        .env("WEFT_BIN_DIR", "target/release")
        .status()
        .context("starting target/release/examples/demo")?;
    if !status.success() {
        bail!("demo failed ({status})");
    }
    Ok(())
}

/// The CRDs come from mesh-agent's types, so an example of that crate renders them: xtask
/// itself stays free of mesh-agent, whose build needs what `setup` installs.
fn crds() -> Result<()> {
    setup::run()?;
    let out = workspace_root().join("deploy/crds");
    step(&format!("rendering the CRDs into {}", out.display()));
    let out = out
        .to_str()
        .with_context(|| format!("{} is not UTF-8", out.display()))?
        .to_owned();
    cargo(&[
        "run",
        "--quiet",
        "-p",
        "mesh-agent",
        "--example",
        "crds",
        "--",
        &out,
    ])
}

pub(crate) fn workspace_root() -> std::path::PathBuf {
    // xtask lives one level below the workspace root.
    let xtask = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

fn path_bench(quick: bool, paths: &[String]) -> Result<()> {
    let args: Vec<&str> = paths.iter().flat_map(|p| ["--path", p.as_str()]).collect();
    release_example("bench", "the path benchmark", quick, &args)
}

fn scale_bench(quick: bool) -> Result<()> {
    release_example("scale", "the scale benchmark", quick, &[])
}

/// Builds the agent and `examples/<example>` in release mode and runs it as root, with `args`.
fn release_example(example: &str, what: &str, quick: bool, args: &[&str]) -> Result<()> {
    setup::run()?;
    require_root("the benchmark creates network namespaces, cgroups and BPF programs")?;
    step(&format!("building the agent and {what} (release)"));
    cargo(&[
        "build",
        "--release",
        "-p",
        "mesh-agent",
        "--bins",
        "--example",
        example,
    ])?;
    step(&format!("running {what}"));
    let path = format!("target/release/examples/{example}");
    let mut cmd = Command::new(&path);
    cmd.env("WEFT_BIN_DIR", "target/release");
    if quick {
        cmd.arg("--quick");
    }
    cmd.args(args);
    let status = cmd.status().with_context(|| format!("starting {path}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn micro_bench(args: &[String]) -> Result<()> {
    setup::run()?;
    step("criterion micro-benchmarks (mesh-agent/benches/)");
    let mut bench_args = vec!["bench", "-p", "mesh-agent", "--benches", "--"];
    bench_args.extend(args.iter().map(String::as_str));
    cargo(&bench_args)?;
    println!("==> reports: target/criterion/");
    Ok(())
}

fn lint() -> Result<()> {
    setup::run()?;
    step("cargo fmt --check");
    cargo(&["fmt", "--all", "--", "--check"])?;
    step("cargo clippy (host crates)");
    cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
    step("cargo clippy (kernel programs)");
    let toolchain = format!("+{}", setup::BPF_NIGHTLY);
    run_cmd(Command::new("cargo").current_dir("mesh-ebpf").args([
        toolchain.as_str(),
        "clippy",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]))
}

pub(crate) fn step(what: &str) {
    println!("==> {what}");
}

fn require_root(why: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("run as root: {why}");
    }
    Ok(())
}

pub(crate) fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_cmd(Command::new(cargo).args(args))
}

pub(crate) fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}
