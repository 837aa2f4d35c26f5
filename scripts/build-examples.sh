#!/usr/bin/env bash
# Builds the example workloads into components, all in
# examples/wasi/target/wasm32-wasip2/release/:
# - the Rust ones (examples/wasi: wasi:cli commands and the http-hello
#   wasi:http server), with cargo for wasm32-wasip2 (the target is added if
#   missing);
# - with --guests, also the same wasi:http server in Python (examples/http-python,
#   componentize-py -> http_python.wasm) and JavaScript (examples/http-js,
#   componentize-js -> http_js.wasm), installing those tools if missing. Their
#   WIT is the wasi:http package that wasmtime-wasi-http ships.
# Components whose sources have not changed are not built again.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/examples/wasi/target/wasm32-wasip2/release"
cd "$root/examples/wasi"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2

[ "${1:-}" = "--guests" ] || exit 0

# Whether $1 is missing or older than any of the other files.
stale() {
    local target=$1
    shift
    [ ! -f "$target" ] || [ -n "$(find "$@" -newer "$target" -print -quit)" ]
}

wit=$(cd "$root" && cargo metadata --format-version 1 --locked |
    python3 -c 'import json, sys, os
packages = json.load(sys.stdin)["packages"]
http = next(p for p in packages if p["name"] == "wasmtime-wasi-http")
print(os.path.join(os.path.dirname(http["manifest_path"]), "wit"))')

if stale "$out/http_python.wasm" "$root/examples/http-python"; then
    command -v componentize-py >/dev/null || python3 -m pip install --quiet componentize-py==0.25.1
    componentize-py -d "$wit" -w wasi:http/proxy@0.2.12 componentize \
        -p "$root/examples/http-python" app -o "$out/http_python.wasm" >/dev/null
fi

cd "$root/examples/http-js"
if stale "$out/http_js.wasm" app.js package.json; then
    [ -d node_modules ] || npm ci --no-audit --no-fund --silent
    # componentize-js 0.23 embeds StarlingMonkey, which exports wasi:http 0.2.10:
    # its world is the same package at that version.
    version=0.2.10
    rm -rf wit
    mkdir -p wit/deps
    for file in "$wit"/deps/*.wit; do
        sed "s/@0\.2\.[0-9]*/@$version/g; s/version = 0\.2\.[0-9]*/version = $version/g" \
            "$file" >"wit/deps/$(basename "$file")"
    done
    printf 'package wasmkube:examples;\n\nworld http-server {\n  include wasi:http/proxy@%s;\n}\n' \
        "$version" >wit/world.wit
    npx componentize-js app.js --wit wit --world-name http-server -o "$out/http_js.wasm" >/dev/null
fi
