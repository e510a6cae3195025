//! The CA directory: init, node tokens, rotation steps.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::super::authority::token_digest;
use super::super::root::{Signer, generate};
use super::super::{CaError, InitOptions, activate, begin, finish, init, node_token};
use super::{Scratch, TD};
use crate::identity::{fingerprint, parse_cert, pem_certs};

fn options(dir: &Path, nodes: &[&str]) -> InitOptions {
    InitOptions {
        dir: dir.to_path_buf(),
        trust_domain: TD.into(),
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
        ..InitOptions::default()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777)
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

fn bundle(dir: &Path) -> Vec<String> {
    let certs = pem_certs(&read(dir, "bundle.pem")).expect("bundle parses");
    certs.iter().map(|c| fingerprint(c)).collect()
}

fn root(dir: &Path) -> String {
    first_fingerprint(&read(dir, "root.pem"))
}

fn first_fingerprint(pem: &str) -> String {
    pem_certs(pem)
        .ok()
        .and_then(|c| c.first().map(|c| fingerprint(c)))
        .unwrap_or_default()
}

#[test]
fn init_writes_a_root_bundle_and_owner_only_secrets() -> Result<(), CaError> {
    let scratch = Scratch::new("ca-init");
    let dir = scratch.0.join("ca");
    let report = init(&options(&dir, &["node-a", "node-b"]))?;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("root.key")), 0o600);
    assert_eq!(mode(&dir.join("nodes")), 0o700);
    assert_eq!(mode(&dir.join("nodes.yaml")), 0o600);
    assert_eq!(bundle(&dir), std::slice::from_ref(&report.root));
    assert_eq!(root(&dir), report.root);

    let token = read(&dir, "nodes/node-a.token");
    let token = token.trim();
    assert_eq!(mode(&dir.join("nodes/node-a.token")), 0o600);
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    let nodes = read(&dir, "nodes.yaml");
    assert!(
        nodes.contains(&token_digest(token)) && !nodes.contains(token),
        "{nodes}"
    );

    let der = pem_certs(&read(&dir, "root.pem")).expect("root").remove(0);
    let parsed = parse_cert(&der).expect("parses");
    assert!(parsed.is_ca() && parsed.subject() == parsed.issuer());
    assert!(parsed.verify_signature(None).is_ok(), "self-signed");
    assert!(!read(&dir, "bundle.pem").contains("PRIVATE KEY"));

    let again = init(&options(&dir, &[]));
    assert!(matches!(again, Err(CaError::Exists { .. })), "{again:?}");
    let forced = init(&InitOptions {
        force: true,
        ..options(&dir, &[])
    })?;
    assert_ne!(forced.root, report.root);
    assert_eq!(bundle(&dir), [forced.root]);
    Ok(())
}

#[test]
fn init_takes_a_given_root_only_with_its_key() -> Result<(), CaError> {
    let scratch = Scratch::new("ca-take");
    let (cert, key) = generate(TD)?;
    let (_, other_key) = generate(TD)?;
    for (name, text) in [("r.pem", &cert), ("r.key", &key), ("o.key", &other_key)] {
        std::fs::write(scratch.0.join(name), text)
            .map_err(|e| super::super::dir::io(&scratch.0, e))?;
    }
    let take = |key: &str| {
        init(&InitOptions {
            root_cert: Some(scratch.0.join("r.pem")),
            root_key: Some(scratch.0.join(key)),
            ..options(&scratch.0.join(format!("ca-{key}")), &[])
        })
    };
    let report = take("r.key")?;
    assert_eq!(report.root, first_fingerprint(&cert));
    let mismatched = take("o.key");
    assert!(
        matches!(&mismatched, Err(CaError::Invalid { reason, .. }) if reason.contains("does not match")),
        "{mismatched:?}"
    );
    Ok(())
}

#[test]
fn node_tokens_are_added_and_only_replaced_on_request() -> Result<(), CaError> {
    let scratch = Scratch::new("ca-tokens");
    let dir = scratch.0.join("ca");
    assert!(node_token(&dir, "node-a", false).is_err(), "no CA yet");
    init(&options(&dir, &["node-a"]))?;
    let first = read(&dir, "nodes/node-a.token");
    let path = node_token(&dir, "node-c", false)?;
    assert_eq!(path, dir.join("nodes/node-c.token"));
    assert!(matches!(
        node_token(&dir, "node-a", false),
        Err(CaError::Exists { .. })
    ));
    node_token(&dir, "node-a", true)?;
    assert_ne!(read(&dir, "nodes/node-a.token"), first);
    assert!(node_token(&dir, "../evil", false).is_err());
    let nodes = read(&dir, "nodes.yaml");
    assert!(
        nodes.contains("node-a") && nodes.contains("node-c"),
        "{nodes}"
    );
    Ok(())
}

#[test]
fn rotation_steps_edit_the_directory_in_order() -> Result<(), CaError> {
    let scratch = Scratch::new("ca-rotate");
    let dir = scratch.0.join("ca");
    let old = init(&options(&dir, &[]))?.root;
    assert!(matches!(activate(&dir), Err(CaError::Rotation(_))));

    let next = begin(&dir)?;
    assert_eq!(
        begin(&dir)?,
        next,
        "begin again publishes the same next root"
    );
    assert_eq!(bundle(&dir), [old.clone(), next.clone()]);
    assert_eq!(root(&dir), old, "the old root still signs");
    assert!(matches!(finish(&dir), Err(CaError::Rotation(_))));

    assert_eq!(activate(&dir)?, next);
    assert_eq!(root(&dir), next);
    assert_eq!(bundle(&dir), [old.clone(), next.clone()]);
    assert!(!dir.join("next.key").exists() && dir.join("previous.key").exists());
    assert!(Signer::load(&read(&dir, "root.pem"), &read(&dir, "root.key")).is_ok());
    assert!(matches!(begin(&dir), Err(CaError::Rotation(_))));

    assert_eq!(finish(&dir)?, [old]);
    assert_eq!(bundle(&dir), [next]);
    assert!(!dir.join("previous.key").exists() && !dir.join("previous.pem").exists());
    assert_eq!(finish(&dir)?, Vec::<String>::new());
    Ok(())
}

#[test]
fn an_interrupted_activate_completes_when_run_again() -> Result<(), CaError> {
    let scratch = Scratch::new("ca-interrupted");
    let dir = scratch.0.join("ca");
    let old = init(&options(&dir, &[]))?.root;
    let next = begin(&dir)?;
    // As if activate stopped after saving the old root and moving the new key in.
    std::fs::copy(dir.join("root.pem"), dir.join("previous.pem"))
        .map_err(|e| super::super::dir::io(&dir, e))?;
    std::fs::copy(dir.join("root.key"), dir.join("previous.key"))
        .map_err(|e| super::super::dir::io(&dir, e))?;
    std::fs::copy(dir.join("next.key"), dir.join("root.key"))
        .map_err(|e| super::super::dir::io(&dir, e))?;
    assert_eq!(activate(&dir)?, next);
    assert_eq!(first_fingerprint(&read(&dir, "previous.pem")), old);
    assert!(Signer::load(&read(&dir, "previous.pem"), &read(&dir, "previous.key")).is_ok());
    assert!(Signer::load(&read(&dir, "root.pem"), &read(&dir, "root.key")).is_ok());
    Ok(())
}
