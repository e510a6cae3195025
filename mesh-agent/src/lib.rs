//! weft's node agent: the eBPF datapath loader, the node-local proxy, the mesh state model and
//! its sources, telemetry and the CLI. `main.rs` only parses arguments and calls in here.

pub mod admin;
pub mod agent;
pub mod balance;
pub mod ca;
pub mod cli;
pub mod config;
pub mod crd;
pub mod datapath;
pub mod discovery;
pub mod identity;
pub mod kubernetes;
pub mod mounts;
pub mod policy;
pub mod proxy;
pub mod resilience;
pub mod routing;
pub mod state;
pub mod telemetry;
#[cfg(feature = "testbed")]
pub mod testbed;
pub mod tunnel;
