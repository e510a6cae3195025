//! weft-pod: the workload the netns test bed runs inside pods, for the tests, the demo and the
//! benchmarks.
//!
//! Servers say who they are and can be told to misbehave; clients report precisely what happened
//! as one JSON object on stdout. Every wait is bounded.
//!
//! - `serve`, `connect`, `udp` ([`tcp`]): plain TCP/UDP with a caller-chosen reply.
//! - `http-serve` ([`http_server`]): HTTP/1.1 + h2c, WebSocket echo ([`ws`]), and optionally the
//!   gRPC echo service ([`grpc_server`]); behaviour controlled per request or persistently
//!   ([`control`]).
//! - `http-load` ([`http_client`]), `grpc-call` ([`grpc_client`]), `ws` ([`ws`]), `raw`
//!   ([`raw`]): clients that summarize many exchanges.

mod bulk;
mod control;
mod errors;
mod grpc_client;
mod grpc_server;
mod http_client;
mod http_server;
mod load_report;
mod oneway;
mod raw;
mod tcp;
mod ws;

/// Code generated from `proto/echo.proto`.
mod echo {
    tonic::include_proto!("weft.echo");
}

use std::io::{self, Write};
use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "weft-pod",
    about = "Test workload: servers that name themselves, clients that report as JSON"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer each connection with `<reply> peer=<peer> got=<first line>`; runs until killed.
    Serve(tcp::ServeArgs),
    /// Make sequential connections and print one JSON summary.
    Connect(tcp::ConnectArgs),
    /// Send one UDP datagram and print a JSON summary.
    Udp(tcp::UdpArgs),
    /// HTTP/1.1 + h2c server (and optionally gRPC) that names itself; runs until killed.
    HttpServe(http_server::ServeArgs),
    /// Run N HTTP requests over C keep-alive connections and print one JSON summary.
    HttpLoad(http_client::LoadArgs),
    /// Make K gRPC calls (unary or server-streaming) and print one JSON summary.
    GrpcCall(grpc_client::CallArgs),
    /// Send N WebSocket messages, check every echo and print one JSON summary.
    Ws(ws::WsArgs),
    /// Send raw (usually malformed) bytes over TCP and print what came back as JSON.
    Raw(raw::RawArgs),
    /// Send every received byte back, then close; runs until killed.
    Echo(bulk::EchoArgs),
    /// Send N pattern bytes through an echo, check what comes back and print one JSON summary.
    Bulk(bulk::BulkArgs),
    /// Leave each connection unread for a while, then read and check it; runs until killed.
    Sink(oneway::SinkArgs),
    /// Write N pattern bytes to a sink, noting when the path first pushes back; print JSON.
    Push(oneway::PushArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Serve(args) if args.udp => tcp::serve_udp(&args),
        Command::Serve(args) => tcp::serve_tcp(args),
        Command::Connect(args) => tcp::connect(&args),
        Command::Udp(args) => tcp::udp(&args),
        Command::HttpServe(args) => runtime()?.block_on(http_server::serve(args)),
        Command::HttpLoad(args) => print(runtime()?.block_on(http_client::run(args))?),
        Command::GrpcCall(args) => print(runtime()?.block_on(grpc_client::run(args))?),
        Command::Ws(args) => print(runtime()?.block_on(ws::run(args))),
        Command::Raw(args) => print(runtime()?.block_on(raw::run(args))),
        Command::Echo(args) => bulk::echo(&args),
        Command::Bulk(args) => print(bulk::bulk(&args)?),
        Command::Sink(args) => oneway::sink(&args),
        Command::Push(args) => print(oneway::push(&args)?),
    }
}

/// The runtime of the HTTP-family commands; the TCP ones keep their own simpler model.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Prints a client's summary as the one line of JSON the tests parse.
fn print(report: serde_json::Value) -> Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{report}")?;
    stdout.flush().context("writing to stdout")
}

/// Tells the test (which waits for this line) that the socket is bound.
fn announce(what: &str, addr: SocketAddr) -> Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{what} {addr}")?;
    stdout.flush().context("writing to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `weft-pod <argv...>`, panicking with clap's message on error.
    pub(crate) fn parse(argv: &[&str]) -> Command {
        let argv = std::iter::once("weft-pod").chain(argv.iter().copied());
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.command,
            Err(err) => panic!("{err}"),
        }
    }

    pub(crate) fn parse_err(argv: &[&str]) -> String {
        let full: Vec<&str> = std::iter::once("weft-pod")
            .chain(argv.iter().copied())
            .collect();
        match Cli::try_parse_from(&full) {
            Ok(_) => panic!("{full:?} parsed"),
            Err(err) => err.to_string(),
        }
    }
}
