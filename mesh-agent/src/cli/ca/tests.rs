//! `mesh-agent ca ...` argument parsing: defaults and usage errors.

use std::time::Duration;

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};

fn ca(args: &[&str]) -> Result<CaCommand, clap::Error> {
    let cli = Cli::try_parse_from([&["mesh-agent", "ca"][..], args].concat())?;
    match cli.command {
        Command::Ca(args) => Ok(args.command),
        other => panic!("parsed {other:?}"),
    }
}

#[test]
fn ca_commands_parse_with_defaults() -> Result<(), clap::Error> {
    let CaCommand::Init(init) = ca(&["init", "--dir", "/d", "--node", "a", "--node", "b"])? else {
        panic!("not init");
    };
    assert_eq!(init.trust_domain, "cluster.local");
    assert_eq!(init.nodes, ["a", "b"]);
    assert!(!init.force && init.root_cert.is_none());
    let CaCommand::Serve(serve) = ca(&[
        "serve",
        "--dir",
        "/d",
        "--state",
        "m.yaml",
        "--cert-ttl",
        "500ms",
    ])?
    else {
        panic!("not serve");
    };
    assert_eq!(serve.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(serve.cert_ttl.get(), Duration::from_millis(500));
    assert_eq!(serve.reload_interval.get(), Duration::from_secs(1));
    assert!(serve.metrics_addr.is_none());
    assert_eq!(serve.node_auth, NodeAuthMode::Token);
    let CaCommand::Serve(serve) = ca(&["serve", "--dir", "/d", "--state", "m.yaml"])? else {
        panic!("not serve");
    };
    assert_eq!(serve.cert_ttl.get(), Duration::from_secs(86_400));
    let CaCommand::Serve(serve) = ca(&[
        "serve",
        "--dir",
        "/d",
        "--state",
        "m.yaml",
        "--node-auth",
        "kubernetes",
    ])?
    else {
        panic!("not serve");
    };
    assert_eq!(serve.node_auth, NodeAuthMode::Kubernetes);
    assert_eq!(serve.token_audience, "weft-ca");
    assert_eq!(
        serve.agent_username,
        "system:serviceaccount:weft-system:weft-agent"
    );
    assert!(matches!(
        ca(&["rotate", "activate", "--dir", "/d"])?,
        CaCommand::Rotate {
            step: RotateStep::Activate(_)
        }
    ));
    Ok(())
}

#[test]
fn bad_ca_arguments_are_usage_errors() {
    for args in [
        &["init", "--dir", "/d", "--trust-domain", "Not_A_Domain"][..],
        &["init", "--dir", "/d", "--root-cert", "r.pem"],
        &[
            "serve",
            "--dir",
            "/d",
            "--state",
            "m.yaml",
            "--cert-ttl",
            "0",
        ],
        &["serve", "--dir", "/d"],
        &[
            "serve",
            "--dir",
            "/d",
            "--state",
            "m.yaml",
            "--node-auth",
            "tokenreview",
        ],
        &["rotate", "rewind", "--dir", "/d"],
    ] {
        assert!(ca(args).is_err(), "{args:?}");
    }
}
