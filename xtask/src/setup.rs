//! Idempotent installation of what a bare Debian machine lacks to build and test weft.
//!
//! Each step checks first and installs only what is missing, printing what it does, so running
//! `cargo xtask setup` twice is cheap and a CI log shows exactly what was installed.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{run_cmd, step};

/// The nightly that builds the kernel programs. Its LLVM major (22) must equal bpf-linker's.
pub const BPF_NIGHTLY: &str = "nightly-2026-05-19";
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Debian packages: LLVM 22 for bpf-linker, bpftool and iproute2 for the datapath and test bed,
/// protoc for the test workload's gRPC service, python3-venv for the deploy check's tools.
const APT_PACKAGES: &[&str] = &[
    "python3-venv",
    "protobuf-compiler",
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "bpftool",
    "iproute2",
    // The path benchmark (`cargo xtask bench`): HTTP/1.1 and HTTP/2 load, TCP bulk, the iptables
    // capture path and the classic-proxy reference. Debian's builds install in seconds (oha from
    // crates.io took 24 minutes to build on two busy cores).
    "wrk",
    "nghttp2-client",
    "iperf3",
    "iptables",
    "haproxy",
];

pub fn run() -> Result<()> {
    apt_packages()?;
    bpf_nightly()?;
    bpf_linker()?;
    kubectl()?;
    crate::deploy::install_tools()?;
    println!("==> setup complete");
    Ok(())
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        println!("==> apt packages present: {}", versions(APT_PACKAGES));
        return Ok(());
    }
    step(&format!("apt-get install {}", missing.join(" ")));
    run_cmd(Command::new("apt-get").arg("update").arg("-qq"))?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    println!("==> apt packages installed: {}", versions(APT_PACKAGES));
    Ok(())
}

/// `name=version` of each package, as installed (Debian's release pins the versions).
fn versions(packages: &[&str]) -> String {
    let mut cmd = Command::new("dpkg-query");
    cmd.args(["-W", "-f=${Package}=${Version} "]).args(packages);
    output(&mut cmd).unwrap_or_else(|_| packages.join(" "))
}

/// kubectl renders the kustomize base in the deploy check. A kubectl already on PATH (e.g. from
/// the Kubernetes apt repository) is used as is; otherwise Debian's `kubernetes-client`.
fn kubectl() -> Result<()> {
    if let Some(path) = crate::deploy::which("kubectl") {
        println!("==> kubectl present: {}", path.display());
        return Ok(());
    }
    step("apt-get install kubernetes-client (kubectl)");
    run_cmd(Command::new("apt-get").arg("update").arg("-qq"))?;
    run_cmd(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "kubernetes-client",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn bpf_nightly() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        BPF_NIGHTLY,
    ]))
    .unwrap_or_default();
    let has = |c: &str| installed.lines().any(|l| l.starts_with(c));
    if has("rust-src") && has("clippy") {
        println!("==> {BPF_NIGHTLY} with rust-src and clippy present");
        return Ok(());
    }
    // RUSTUP_AUTO_INSTALL=0 on these machines: a toolchain file alone installs nothing.
    step(&format!(
        "rustup toolchain install {BPF_NIGHTLY} --profile minimal --component rust-src,clippy"
    ));
    run_cmd(Command::new("rustup").args([
        "toolchain",
        "install",
        BPF_NIGHTLY,
        "--profile",
        "minimal",
        "--component",
        "rust-src,clippy",
    ]))
}

fn bpf_linker() -> Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        println!("==> bpf-linker {BPF_LINKER_VERSION} present");
        return Ok(());
    }
    step(&format!(
        "cargo install bpf-linker {BPF_LINKER_VERSION} (LLVM 22, from {LLVM_PREFIX})"
    ));
    let path = format!(
        "{LLVM_PREFIX}/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    // Without LLVM_PREFIX the build picks the first llvm-config on PATH (an older LLVM) and fails
    // to link; the default feature set targets LLVM 23, which the pinned nightly does not match.
    run_cmd(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("PATH", path)
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
