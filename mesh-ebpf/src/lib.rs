#![no_std]
// The programs live in the `mesh-ebpf` binary (src/main.rs); this empty library lets
// mesh-agent declare a build-dependency so cargo rebuilds the object when they change.
