//! What `ca serve` signs with, loaded from the CA directory: the active root, the bundle and
//! the node tokens, replaced whole when the files change.
//!
//! A directory caught between two files of a step (a new `root.pem` beside the old
//! `root.key`), or whose active root is missing from the bundle, is refused: the CA keeps the
//! authority it had, so it never signs with a root the nodes were not told to trust.

use std::collections::BTreeMap;

use ring::digest;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use super::CaError;
use super::dir::{BUNDLE, CaDir, NODES, ROOT_CERT, ROOT_KEY, SETTINGS};
use super::root::Signer;
use crate::identity::{pem_certs, pem_encode};

/// `ca.yaml`: fixed at `init`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Settings {
    pub(super) trust_domain: String,
}

impl Settings {
    pub(super) fn load(dir: &CaDir) -> Result<Self, CaError> {
        serde_saphyr::from_str(&dir.need(SETTINGS)?)
            .map_err(|e| dir.invalid(SETTINGS, e.to_string()))
    }
}

/// `nodes.yaml`: node name → SHA-256 (hex) of its bootstrap token. Tokens are not kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeTokens {
    pub(super) nodes: BTreeMap<String, String>,
}

impl NodeTokens {
    pub(super) fn parse(dir: &CaDir, text: Option<&str>) -> Result<Self, CaError> {
        match text {
            None => Ok(NodeTokens::default()),
            Some(text) => {
                serde_saphyr::from_str(text).map_err(|e| dir.invalid(NODES, e.to_string()))
            }
        }
    }

    /// The node `token` belongs to. Every entry is compared in full, so the time taken does
    /// not depend on which digest (or how much of it) matched.
    pub(super) fn node_for(&self, token: &str) -> Option<&str> {
        let digest = token_digest(token);
        let mut found = None;
        for (node, known) in &self.nodes {
            let same = known.len() == digest.len()
                && known
                    .bytes()
                    .zip(digest.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            if same {
                found = Some(node.as_str());
            }
        }
        found
    }
}

pub(super) fn token_digest(token: &str) -> String {
    crate::identity::hex(digest::digest(&digest::SHA256, token.trim().as_bytes()).as_ref())
}

/// The signing root, the bundle and the node tokens in force.
pub(super) struct Authority {
    pub(super) signer: Signer,
    pub(super) bundle: Vec<CertificateDer<'static>>,
    pub(super) tokens: NodeTokens,
    /// The file contents this was built from: a reload with the same contents is no change.
    source: [Option<String>; 4],
}

impl Authority {
    /// Loads the directory, unless its files are what `current` was built from (`Ok(None)`).
    pub(super) fn reload(
        dir: &CaDir,
        current: Option<&Authority>,
    ) -> Result<Option<Self>, CaError> {
        let source = [
            dir.read(ROOT_CERT)?,
            dir.read(ROOT_KEY)?,
            dir.read(BUNDLE)?,
            dir.read(NODES)?,
        ];
        if current.is_some_and(|c| c.source == source) {
            return Ok(None);
        }
        let [Some(cert), Some(key), Some(bundle), nodes] = &source else {
            return Err(dir.invalid(ROOT_CERT, "root.pem, root.key or bundle.pem missing"));
        };
        let signer = Signer::load(cert, key).map_err(|e| dir.invalid(ROOT_KEY, e))?;
        let bundle = pem_certs(bundle).map_err(|e| dir.invalid(BUNDLE, e))?;
        if !bundle.contains(&signer.cert) {
            return Err(dir.invalid(
                BUNDLE,
                "does not hold the active root (a rotation step in progress?)",
            ));
        }
        let tokens = NodeTokens::parse(dir, nodes.as_deref())?;
        Ok(Some(Authority {
            signer,
            bundle,
            tokens,
            source,
        }))
    }

    pub(super) fn bundle_pem(&self) -> Vec<String> {
        self.bundle
            .iter()
            .map(|c| pem_encode("CERTIFICATE", c))
            .collect()
    }
}
