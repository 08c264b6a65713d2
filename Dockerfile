# The dnslens node agent. Build from the repository root:
#
#   docker build -t dnslens:0.1.0 .
#
# docs/kubernetes.md takes it from there: push, deploy with deploy/, find who resolves what.

# The build is the README's, nothing added (a test compares the RUN line with it). This image
# has no clang, so crates/probe/build.rs embeds the committed bpf/dnslens.bpf.o (cargo prints a
# warning saying so); to rebuild the object from bpf/dnslens.bpf.c instead, install `clang llvm`
# in this stage first. The Rust version is the workspace's rust-version.
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release

# Same Debian release as the builder, so the glibc the binary was linked against is there.
# The slim image keeps a shell for `kubectl exec` when something on a node needs looking at.
FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="dnslens" \
      org.opencontainers.image.description="Which process, container and pod resolved which domain, captured with eBPF" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
# Everything is readable and executable by any user and nothing is written at run time except
# where --output points, so the root filesystem can be mounted read-only. Capturing needs uid 0
# with the capabilities deploy/daemonset.yaml lists; `dnslens detect` on a saved trace runs as
# any user.
COPY --from=build /src/target/release/dnslens /usr/local/bin/dnslens
# deploy/configmap.yaml is mounted here (agent.toml, detect.toml).
RUN mkdir -p /etc/dnslens
WORKDIR /
ENTRYPOINT ["/usr/local/bin/dnslens"]
CMD ["agent", "--config", "/etc/dnslens/agent.toml"]
