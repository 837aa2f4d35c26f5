#!/usr/bin/env bash
# Builds the binary that ships, target/dist/wasmkube: optimised for size and
# whole-program, stripped ([profile.dist] in Cargo.toml), then bundled with its built-in
# plugins compiled for this machine (`wasmkube bundle`), so a node on a fresh
# data dir places its first pod without compiling them.
#
# Relative relocations are packed (DT_RELR, glibc 2.36 and later): the
# dynamic loader then reads a few kilobytes at start instead of megabytes of
# relocation entries, which stayed resident in every process of the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-z,pack-relative-relocs" \
    cargo build --profile dist --bin wasmkube
target/dist/wasmkube bundle --output target/dist/wasmkube.bundled
mv target/dist/wasmkube.bundled target/dist/wasmkube
