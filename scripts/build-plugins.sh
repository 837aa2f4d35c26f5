#!/usr/bin/env bash
# Builds the scheduler plugins (plugins/, with the SDK in sdk/) into Wasm
# components: plugins/target/wasm32-wasip2/release/<name>.wasm. Their own
# workspace and target directory: they build for another target.
set -euo pipefail
cd "$(dirname "$0")/../plugins"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2
