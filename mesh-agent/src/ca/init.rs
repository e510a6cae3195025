//! `ca init` and `ca node-token`: create (or take) the root, write the bundle, and hand out
//! node bootstrap tokens, of which the CA keeps only a SHA-256.

use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;

use super::CaError;
use super::authority::{NodeTokens, Settings, token_digest};
use super::dir::{
    BUNDLE, CaDir, NEXT_CERT, NEXT_KEY, NODES, PREVIOUS_CERT, PREVIOUS_KEY, PUBLIC, ROOT_CERT,
    ROOT_KEY, SECRET, SETTINGS, TOKENS,
};
use super::root::{Signer, generate};
use crate::state::names::dns_subdomain;

#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    pub dir: PathBuf,
    pub trust_domain: String,
    /// Nodes to create a bootstrap token for.
    pub nodes: Vec<String>,
    /// An existing root (PEM certificate and PKCS#8 key) to take instead of generating one.
    pub root_cert: Option<PathBuf>,
    pub root_key: Option<PathBuf>,
    /// Replace an existing root (and its bundle) and existing tokens.
    pub force: bool,
}

/// What `init` created, for the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InitReport {
    /// SHA-256 of the root certificate.
    pub root: String,
    pub bundle: PathBuf,
    pub tokens: Vec<PathBuf>,
}

pub fn init(options: &InitOptions) -> Result<InitReport, CaError> {
    dns_subdomain(&options.trust_domain)
        .map_err(|e| CaError::Usage(format!("--trust-domain {:?} {e}", options.trust_domain)))?;
    for node in &options.nodes {
        check_node(node)?;
    }
    let dir = CaDir::new(&options.dir);
    dir.create(None)?;
    for existing in [ROOT_KEY, ROOT_CERT] {
        if dir.exists(existing) && !options.force {
            return Err(CaError::Exists {
                path: dir.path(existing),
            });
        }
    }
    let (cert_pem, key_pem) = match (&options.root_cert, &options.root_key) {
        (Some(cert), Some(key)) => (read(cert)?, read(key)?),
        (None, None) => generate(&options.trust_domain)?,
        _ => {
            return Err(CaError::Usage(
                "--root-cert and --root-key go together".into(),
            ));
        }
    };
    let signer = Signer::load(&cert_pem, &key_pem).map_err(|reason| CaError::Invalid {
        path: options
            .root_cert
            .clone()
            .unwrap_or_else(|| dir.path(ROOT_CERT)),
        reason,
    })?;
    let settings = Settings {
        trust_domain: options.trust_domain.clone(),
    };
    let yaml =
        serde_saphyr::to_string(&settings).map_err(|e| dir.invalid(SETTINGS, e.to_string()))?;
    dir.write(SETTINGS, yaml.as_bytes(), PUBLIC)?;
    dir.write(ROOT_KEY, key_pem.as_bytes(), SECRET)?;
    dir.write(ROOT_CERT, cert_pem.as_bytes(), PUBLIC)?;
    dir.write(BUNDLE, cert_pem.as_bytes(), PUBLIC)?;
    // A rotation in progress belonged to the replaced root.
    for stale in [NEXT_KEY, NEXT_CERT, PREVIOUS_KEY, PREVIOUS_CERT] {
        dir.remove(stale)?;
    }
    let tokens = options
        .nodes
        .iter()
        .map(|node| node_token(&options.dir, node, options.force))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InitReport {
        root: signer.fingerprint,
        bundle: dir.path(BUNDLE),
        tokens,
    })
}

/// Creates `node`'s bootstrap token in `<dir>/nodes/<node>.token` (0600) and records its
/// SHA-256; refuses to replace an existing one unless `force`.
pub fn node_token(ca_dir: &Path, node: &str, force: bool) -> Result<PathBuf, CaError> {
    check_node(node)?;
    let dir = CaDir::new(ca_dir);
    Settings::load(&dir)?;
    let mut tokens = NodeTokens::parse(&dir, dir.read(NODES)?.as_deref())?;
    let file = format!("{TOKENS}/{node}.token");
    if tokens.nodes.contains_key(node) && !force {
        return Err(CaError::Exists {
            path: dir.path(&file),
        });
    }
    let mut secret = [0u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| CaError::Usage("no randomness from the system".into()))?;
    let token = crate::identity::hex(&secret);
    dir.create(Some(TOKENS))?;
    dir.write(&file, format!("{token}\n").as_bytes(), SECRET)?;
    tokens.nodes.insert(node.to_owned(), token_digest(&token));
    let yaml = serde_saphyr::to_string(&tokens).map_err(|e| dir.invalid(NODES, e.to_string()))?;
    dir.write(NODES, yaml.as_bytes(), SECRET)?;
    Ok(dir.path(&file))
}

fn check_node(node: &str) -> Result<(), CaError> {
    dns_subdomain(node).map_err(|e| CaError::Usage(format!("node {node:?} {e}")))
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|e| super::dir::io(path, e))
}
