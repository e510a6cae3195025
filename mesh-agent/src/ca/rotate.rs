//! Root rotation in three commands, each editing the CA directory so that a running `ca serve`
//! picks the step up on its next poll:
//!
//! 1. [`begin`]: a new root is generated (`next.*`) and added to the bundle; the CA still
//!    signs with the old one. Nodes learn the new root from their next bundle poll.
//! 2. [`activate`]: the new root becomes `root.*` and signs from now on; the old one moves to
//!    `previous.*` and stays in the bundle, so certificates it signed stay valid.
//! 3. [`finish`]: the old root leaves the bundle and its key is deleted.
//!
//! docs/identity.md explains the waits between the steps. Each step can be run again after an
//! interruption and completes what was left.

use std::path::Path;

use super::CaError;
use super::authority::Settings;
use super::dir::{
    BUNDLE, CaDir, NEXT_CERT, NEXT_KEY, PREVIOUS_CERT, PREVIOUS_KEY, PUBLIC, ROOT_CERT, ROOT_KEY,
    SECRET,
};
use super::root::{Signer, generate};
use crate::identity::{fingerprint, pem_certs, pem_encode};

/// Step 1: generates the next root and publishes it in the bundle. Returns its fingerprint.
pub fn begin(ca_dir: &Path) -> Result<String, CaError> {
    let dir = CaDir::new(ca_dir);
    let settings = Settings::load(&dir)?;
    if dir.exists(PREVIOUS_CERT) {
        return Err(CaError::Rotation(
            "the previous rotation is not finished: run `ca rotate finish` first".into(),
        ));
    }
    let next = match (dir.read(NEXT_CERT)?, dir.read(NEXT_KEY)?) {
        // Begun before and interrupted, or run twice: publish the same next root.
        (Some(cert), Some(key)) => pair(&dir, NEXT_KEY, &cert, &key)?,
        _ => {
            let (cert, key) = generate(&settings.trust_domain)?;
            dir.write(NEXT_KEY, key.as_bytes(), SECRET)?;
            dir.write(NEXT_CERT, cert.as_bytes(), PUBLIC)?;
            pair(&dir, NEXT_KEY, &cert, &key)?
        }
    };
    let active = pair(&dir, ROOT_KEY, &dir.need(ROOT_CERT)?, &dir.need(ROOT_KEY)?)?;
    write_bundle(&dir, &[&active, &next])?;
    Ok(next.fingerprint)
}

/// Step 2: the next root signs from now on; the old one is kept as `previous.*` (and stays in
/// the bundle). Returns the new active root's fingerprint.
pub fn activate(ca_dir: &Path) -> Result<String, CaError> {
    let dir = CaDir::new(ca_dir);
    Settings::load(&dir)?;
    let Some(next_cert) = dir.read(NEXT_CERT)? else {
        return Err(CaError::Rotation(
            "no root to activate: run `ca rotate begin` first".into(),
        ));
    };
    let bundle = pem_certs(&dir.need(BUNDLE)?).map_err(|e| dir.invalid(BUNDLE, e))?;
    let next_der = pem_certs(&next_cert).map_err(|e| dir.invalid(NEXT_CERT, e))?;
    if !next_der.iter().all(|c| bundle.contains(c)) {
        return Err(CaError::Rotation(
            "the next root is not in the bundle: run `ca rotate begin` again".into(),
        ));
    }
    let (root_cert, root_key) = (dir.need(ROOT_CERT)?, dir.need(ROOT_KEY)?);
    // Keep the old root, unless an interrupted run already replaced part of it: then the
    // pair does not match, and previous.* was written before anything was replaced.
    if root_cert != next_cert && Signer::load(&root_cert, &root_key).is_ok() {
        dir.write(PREVIOUS_KEY, root_key.as_bytes(), SECRET)?;
        dir.write(PREVIOUS_CERT, root_cert.as_bytes(), PUBLIC)?;
    }
    if let Some(next_key) = dir.read(NEXT_KEY)? {
        pair(&dir, NEXT_KEY, &next_cert, &next_key)?;
        dir.write(ROOT_KEY, next_key.as_bytes(), SECRET)?;
    }
    dir.write(ROOT_CERT, next_cert.as_bytes(), PUBLIC)?;
    let active = pair(&dir, ROOT_KEY, &next_cert, &dir.need(ROOT_KEY)?)?;
    dir.remove(NEXT_KEY)?;
    dir.remove(NEXT_CERT)?;
    Ok(active.fingerprint)
}

/// Step 3: the bundle holds the active root only; the previous root's key is deleted.
/// Returns the fingerprints of the roots dropped from the bundle.
pub fn finish(ca_dir: &Path) -> Result<Vec<String>, CaError> {
    let dir = CaDir::new(ca_dir);
    Settings::load(&dir)?;
    if dir.exists(NEXT_CERT) {
        return Err(CaError::Rotation(
            "a new root is not active yet: run `ca rotate activate` first".into(),
        ));
    }
    let active = pair(&dir, ROOT_KEY, &dir.need(ROOT_CERT)?, &dir.need(ROOT_KEY)?)?;
    let before = pem_certs(&dir.need(BUNDLE)?).map_err(|e| dir.invalid(BUNDLE, e))?;
    write_bundle(&dir, &[&active])?;
    dir.remove(PREVIOUS_KEY)?;
    dir.remove(PREVIOUS_CERT)?;
    Ok(before
        .iter()
        .filter(|c| **c != active.cert)
        .map(|c| fingerprint(c))
        .collect())
}

fn pair(dir: &CaDir, key_file: &str, cert: &str, key: &str) -> Result<Signer, CaError> {
    Signer::load(cert, key).map_err(|e| dir.invalid(key_file, e))
}

fn write_bundle(dir: &CaDir, roots: &[&Signer]) -> Result<(), CaError> {
    let text: String = roots
        .iter()
        .map(|r| pem_encode("CERTIFICATE", &r.cert))
        .collect();
    dir.write(BUNDLE, text.as_bytes(), PUBLIC)
}
