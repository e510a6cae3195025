//! Compiles the kernel programs (`mesh-ebpf`) for the BPF target with the pinned nightly and
//! bpf-linker, and leaves the object in `OUT_DIR/mesh-ebpf` for `include_bytes_aligned!`.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// The BPF toolchain: its LLVM major must match bpf-linker's (22).
const BPF_TOOLCHAIN: &str = "nightly-2026-05-19";

fn main() -> anyhow::Result<()> {
    // The test workload's gRPC service (the `testbed` feature only).
    if std::env::var_os("CARGO_FEATURE_TESTBED").is_some() {
        // prost-build prints no rerun line of its own, and aya-build's lines replace cargo's
        // default "rerun on any change".
        println!("cargo:rerun-if-changed=proto/echo.proto");
        tonic_prost_build::compile_protos("proto/echo.proto")
            .context("compiling proto/echo.proto (needs protoc: cargo xtask setup installs it)")?;
    }
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root_dir = Path::new(&manifest_dir).join("../mesh-ebpf");
    let root_dir = root_dir
        .canonicalize()
        .with_context(|| format!("kernel crate not found at {}", root_dir.display()))?;
    let root_dir = root_dir
        .to_str()
        .ok_or_else(|| anyhow!("kernel crate path is not UTF-8: {}", root_dir.display()))?;
    aya_build::build_ebpf(
        [Package {
            name: "mesh-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(BPF_TOOLCHAIN),
    )
}
