//! `cargo xtask image`: builds `Dockerfile` with the first container engine that answers.

use std::process::{Command, Stdio};

use anyhow::{Result, bail};

use crate::{run_cmd, step, workspace_root};

pub const DEFAULT_TAG: &str = "ghcr.io/weft-mesh/mesh-agent:0.1.0";

/// Engines in order of preference, and the arguments that build a Dockerfile with each.
const ENGINES: &[(&str, &[&str])] = &[
    ("docker", &["build", "-f", "Dockerfile", "-t"]),
    ("podman", &["build", "-f", "Dockerfile", "-t"]),
    ("buildah", &["bud", "-f", "Dockerfile", "-t"]),
];

pub fn build(tag: &str) -> Result<()> {
    let Some((engine, args)) = ENGINES.iter().find(|(engine, _)| answers(engine)) else {
        let silent: Vec<&str> = ENGINES
            .iter()
            .map(|(e, _)| *e)
            .filter(|e| crate::deploy::which(e).is_some())
            .collect();
        bail!(
            "no container engine answers here (tried {}; installed but not answering, e.g. no \
             daemon: {}): start or install one, or build the image elsewhere from Dockerfile",
            ENGINES
                .iter()
                .map(|(e, _)| *e)
                .collect::<Vec<_>>()
                .join(", "),
            if silent.is_empty() {
                "none".to_string()
            } else {
                silent.join(", ")
            }
        );
    };
    step(&format!("{engine} {} {tag} .", args.join(" ")));
    run_cmd(
        Command::new(engine)
            .current_dir(workspace_root())
            .args(*args)
            .arg(tag)
            .arg("."),
    )
}

/// Installed and able to reach its daemon or storage (`docker version` fails without a daemon).
fn answers(engine: &str) -> bool {
    Command::new(engine)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
