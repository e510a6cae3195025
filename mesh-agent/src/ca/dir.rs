//! The CA directory: file names, atomic replacement with owner-only modes, and reading.
//!
//! Every file is replaced by writing a temporary file beside it and renaming it over the old
//! one, so a running `ca serve` (which polls the directory) never reads half a file. Steps that
//! touch several files are ordered so that each intermediate state is one `serve` can refuse
//! or use safely (see `rotate`).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::CaError;

/// The active signing root.
pub(super) const ROOT_CERT: &str = "root.pem";
pub(super) const ROOT_KEY: &str = "root.key";
/// Roots every node should trust (PEM, one or two certificates).
pub(super) const BUNDLE: &str = "bundle.pem";
/// A root being introduced (`rotate begin`), not yet signing.
pub(super) const NEXT_CERT: &str = "next.pem";
pub(super) const NEXT_KEY: &str = "next.key";
/// The root replaced by `rotate activate`, still trusted until `rotate finish`.
pub(super) const PREVIOUS_CERT: &str = "previous.pem";
pub(super) const PREVIOUS_KEY: &str = "previous.key";
/// Trust domain and other settings fixed at `init`.
pub(super) const SETTINGS: &str = "ca.yaml";
/// SHA-256 of each node's bootstrap token.
pub(super) const NODES: &str = "nodes.yaml";
/// The tokens themselves, one file per node, to hand to the nodes.
pub(super) const TOKENS: &str = "nodes";

pub(super) const SECRET: u32 = 0o600;
pub(super) const PUBLIC: u32 = 0o644;

#[derive(Clone, Debug)]
pub(super) struct CaDir {
    root: PathBuf,
}

impl CaDir {
    pub(super) fn new(root: &Path) -> Self {
        CaDir {
            root: root.to_path_buf(),
        }
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Creates the directory (and `sub`, if given) with mode 0700.
    pub(super) fn create(&self, sub: Option<&str>) -> Result<(), CaError> {
        let dir = sub.map_or_else(|| self.root.clone(), |s| self.path(s));
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|e| io(&dir, e))
    }

    pub(super) fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// Replaces `name` atomically with `contents`, created with `mode`.
    pub(super) fn write(&self, name: &str, contents: &[u8], mode: u32) -> Result<(), CaError> {
        let path = self.path(name);
        let tmp = self.path(&format!("{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| io(&tmp, e))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(|e| io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }

    /// The file's text, or `None` when it does not exist.
    pub(super) fn read(&self, name: &str) -> Result<Option<String>, CaError> {
        let path = self.path(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    /// The file's text; its absence is an error naming it.
    pub(super) fn need(&self, name: &str) -> Result<String, CaError> {
        self.read(name)?.ok_or_else(|| CaError::Invalid {
            path: self.path(name),
            reason: "missing (run `mesh-agent ca init` first)".into(),
        })
    }

    pub(super) fn remove(&self, name: &str) -> Result<(), CaError> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path, e)),
        }
    }

    pub(super) fn invalid(&self, name: &str, reason: impl Into<String>) -> CaError {
        CaError::Invalid {
            path: self.path(name),
            reason: reason.into(),
        }
    }
}

pub(super) fn io(path: &Path, source: std::io::Error) -> CaError {
    CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}
