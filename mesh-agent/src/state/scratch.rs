//! A scratch directory for the tests of this module, removed on drop (also when a test fails).

use std::path::PathBuf;

pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh directory named after the test, unique per process.
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("weft-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
