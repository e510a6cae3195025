//! The one model of the mesh (`model`) and the sources that build it.
mod model;

pub use model::*;
