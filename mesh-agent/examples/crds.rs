//! Writes weft's CRDs (`mesh_agent::crd::render`) into the directory given as the only
//! argument; `cargo xtask crds` runs it with `deploy/crds`.

use std::path::PathBuf;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        bail!("usage: crds <output directory>");
    };
    let dir = PathBuf::from(dir);
    let written =
        mesh_agent::crd::write(&dir).with_context(|| format!("writing {}", dir.display()))?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
