# mesh-agent image: the node agent (`mesh-agent run`, as root with BPF and NET_ADMIN, set by the
# DaemonSet) and the CA (`mesh-agent ca serve`, as the image's non-root user 65532).
# Build: cargo xtask image  (or: docker build -t ghcr.io/weft-mesh/mesh-agent:0.1.0 .)

# Same toolchain as `cargo xtask setup`: stable for the agent, the pinned nightly (LLVM 22) and
# bpf-linker built against LLVM 22 for the kernel programs that build.rs embeds.
FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
RUN rustup toolchain install nightly-2026-05-19 --profile minimal --component rust-src
RUN PATH=/usr/lib/llvm-22/bin:$PATH LLVM_PREFIX=/usr/lib/llvm-22 \
    cargo install bpf-linker --locked --version 0.13.0 --no-default-features --features llvm-22
WORKDIR /src
COPY . .
RUN cargo build --release --locked --no-default-features -p mesh-agent --bin mesh-agent \
 && cp target/release/mesh-agent /mesh-agent

# glibc and libgcc only: the binary links nothing else (ring, not OpenSSL).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /mesh-agent /usr/local/bin/mesh-agent
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/mesh-agent"]
