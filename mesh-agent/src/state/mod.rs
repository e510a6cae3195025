//! The one model of the mesh (`model`) and the sources that build it.
//!
//! Today the source is the local state file: [`load_file`] reads, validates and builds a
//! [`MeshState`] (routes compiled by [`crate::routing`]); [`resolve_cgroups`] fills in the
//! cgroup ids of this node's pods; [`watch_file`] publishes each later good version. The
//! Kubernetes source (`crate::kubernetes`) translates the cluster's objects into the same
//! [`Parts`]; both end in [`assemble`], which compiles routes and policies.
mod assemble;
mod cgroups;
mod file;
mod model;
pub(crate) mod names;
mod policies;
mod routes;
#[cfg(test)]
mod scratch;
mod validate;
mod watch;

pub use assemble::{Parts, Rejected, assemble};
pub use cgroups::resolve_cgroups;
pub use file::{ConfigError, load_file, parse_str};
pub use model::*;
pub use watch::{ReloadResult, watch_file};
