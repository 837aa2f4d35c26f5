#!/usr/bin/env bash
# Builds the example workloads (examples/wasi) into wasi:cli components:
# examples/wasi/target/wasm32-wasip2/release/<name>.wasm.
set -euo pipefail
cd "$(dirname "$0")/../examples/wasi"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2
