//! The inspect commands: their flags, their tables (from real admin answers), and a round trip
//! through a socket, including the agent that is not there.

use std::sync::Arc;

use clap::Parser;

use super::*;
use crate::admin::tests::{context, ok};
use crate::cli::{Cli, Command};

fn parse(args: &[&str]) -> InspectCommand {
    let mut all = vec!["mesh-agent"];
    all.extend_from_slice(args);
    match Cli::try_parse_from(all) {
        Ok(Cli {
            command: Command::Inspect(c),
        }) => c,
        other => panic!("{args:?}: {other:?}"),
    }
}

#[test]
fn commands_map_onto_api_paths() {
    let status = parse(&["status"]);
    let (client, path) = request(&status);
    assert_eq!(
        (client.admin.as_str(), client.output),
        ("127.0.0.1:15000", Output::Table)
    );
    assert_eq!(path, "/status");
    let check = parse(&[
        "policy",
        "check",
        "frontend/web",
        "10.244.2.2:8080",
        "--path",
        "/a b",
        "-o",
        "json",
        "--admin",
        "10.0.0.1:15000",
    ]);
    let (client, path) = request(&check);
    assert_eq!(
        (client.admin.as_str(), client.output),
        ("10.0.0.1:15000", Output::Json)
    );
    assert_eq!(
        path,
        "/policy/check?src=frontend/web&dst=10.244.2.2:8080&path=/a%20b"
    );
    let (_, path) = request(&parse(&[
        "explain",
        "shop/x",
        "api.shop:80",
        "--method",
        "POST",
    ]));
    assert_eq!(path, "/explain?src=shop/x&dst=api.shop:80&method=POST");
    assert_eq!(
        request(&parse(&["config", "dump", "-o", "yaml"])).1,
        "/config_dump"
    );
    assert_eq!(request(&parse(&["policy", "list"])).1, "/policies");
    for bad in [
        &["policy", "check", "a/b"][..],
        &["status", "-o", "xml"],
        &["explain"],
    ] {
        let mut all = vec!["mesh-agent"];
        all.extend_from_slice(bad);
        assert!(Cli::try_parse_from(all).is_err(), "{bad:?}");
    }
}

/// The table of `args` for the answer of `path` on the test mesh.
fn table(args: &[&str], path: &str) -> String {
    let command = parse(args);
    let answer = ok(&context(true, &[]), path);
    print(&command, Output::Table, answer).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn tables_show_the_answers() {
    let status = table(&["status"], "/status");
    assert!(
        status.contains("node:") && status.contains("captured=7"),
        "{status}"
    );
    let workloads = table(&["workloads"], "/workloads");
    let web = workloads
        .lines()
        .find(|l| l.starts_with("frontend"))
        .expect("web row");
    assert_eq!(
        web.split_whitespace().collect::<Vec<_>>(),
        [
            "frontend",
            "web",
            "a",
            "10.244.1.2",
            "web",
            "yes",
            "yes",
            "PERMISSIVE"
        ]
    );
    let services = table(&["services"], "/services");
    assert!(
        services.contains("80->8080/http") && services.contains("2 (2 meshed)"),
        "{services}"
    );
    let routes = table(&["routes"], "/routes");
    assert!(
        routes.contains("PathPrefix /beta") && routes.contains("shop/canary:80 w1"),
        "{routes}"
    );
    let policies = table(&["policy", "list"], "/policies");
    assert!(
        policies.contains("DENY") && policies.contains("shop/db"),
        "{policies}"
    );
    let check = table(
        &["policy", "check", "shop/other", "10.244.1.4:9000"],
        "/policy/check?src=shop/other&dst=10.244.1.4:9000",
    );
    assert!(check.contains("DENY: denied by shop/no-other"), "{check}");
    let explain = table(
        &["explain", "frontend/web", "10.96.0.20:80"],
        "/explain?src=frontend/web&dst=10.96.0.20:80&method=GET&path=/api/x",
    );
    assert!(
        explain.contains("service shop/api port 80 -> 8080 (http)"),
        "{explain}"
    );
    let remote = explain
        .lines()
        .find(|l| l.contains("shop/api-b"))
        .expect("api-b row");
    assert!(remote.contains("tunnel") && remote.contains("allowed by shop/api-readers"));
    assert!(explain.contains("Notes:"), "{explain}");
    let certs = table(&["certs"], "/certs");
    assert!(
        certs.contains("no workload certificate held yet"),
        "{certs}"
    );
}

#[test]
fn the_certs_table_shortens_fingerprints() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ctx = context(true, &[]);
    let ids = ctx
        .identities
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no store"))?;
    let ca = crate::identity::testca::TestCa::new("cli root");
    let web = crate::identity::SpiffeId::new("cluster.local", "frontend", "web");
    let (chain, key) = ca.issue(&web);
    ids.insert(web.clone(), chain, key)?;
    ids.set_bundle(vec![ca.root.clone()]);
    let text = print(&parse(&["certs"]), Output::Table, ok(&ctx, "/certs"))?;
    let root = crate::identity::fingerprint(&ca.root);
    let row = text
        .lines()
        .find(|l| l.starts_with("spiffe://"))
        .unwrap_or_default();
    assert!(row.contains(&root[..16]) && !row.contains(&root), "{text}");
    assert!(row.ends_with("frontend/web"), "{text}");
    assert!(text.contains("CN=cli root"), "{text}");
    Ok(())
}

#[test]
fn json_and_yaml_print_the_answer_as_is() -> anyhow::Result<()> {
    let answer = ok(&context(false, &[]), "/services");
    let json = print(&parse(&["services"]), Output::Json, answer.clone())?;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&json)?, answer);
    let yaml = print(&parse(&["config", "dump"]), Output::Table, answer.clone())?;
    let back: serde_json::Value = serde_saphyr::from_str(&yaml)?;
    assert_eq!(back, answer);
    Ok(())
}

#[test]
fn a_round_trip_through_the_admin_port_and_an_agent_that_is_not_there() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?.to_string();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let server = runtime.spawn(crate::admin::serve(
        listener,
        Arc::new(context(false, &[])),
        stop,
    ));

    let out = run(&parse(&["workloads", "-o", "json", "--admin", &addr]))?;
    let list: Vec<crate::admin::views::WorkloadView> = serde_json::from_str(&out)?;
    assert_eq!(list.len(), 7);
    let refused = run(&parse(&[
        "policy",
        "check",
        "nope/x",
        "10.244.1.4:9000",
        "--admin",
        &addr,
    ]));
    match refused {
        Err(InspectError::Refused {
            status: 404,
            message,
        }) => {
            assert!(message.contains("nope/x"), "{message}")
        }
        other => anyhow::bail!("expected a 404: {other:?}"),
    }
    stop_tx.send(true)?;
    runtime.block_on(server)?;

    // The port is closed now: one line, naming the address and what to do.
    let gone = run(&parse(&["status", "--admin", &addr]));
    let Err(e @ InspectError::Unreachable { .. }) = gone else {
        anyhow::bail!("expected unreachable: {gone:?}");
    };
    let text = e.to_string();
    assert!(
        text.contains(&addr) && text.contains("is mesh-agent running"),
        "{text}"
    );
    assert!(!text.contains('\n'));
    Ok(())
}
