#!/usr/bin/env bash
# Builds the scheduler plugins (plugins/, with the SDK in sdk/) into Wasm
# components: plugins/target/wasm32-wasip2/release/<name>.wasm. Their own
# workspace and target directory: they build for another target.
#
# With --guests, also the example plugin PreferEdge in Python
# (examples/prefer-edge/python, componentize-py -> prefer_edge_python.wasm)
# and JavaScript (examples/prefer-edge/js, componentize-js ->
# prefer_edge_js.wasm), in the same folder, installing those tools if missing;
# a component whose sources have not changed is not built again.
set -euo pipefail
cd "$(dirname "$0")/../plugins"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2

[ "${1:-}" = "--guests" ] || exit 0

root="$(cd .. && pwd)"
out="$root/plugins/target/wasm32-wasip2/release"
wit="$root/wit/scheduler"
world=scheduler-plugin

# Whether $1 is missing or older than any of the other files.
stale() {
    local target=$1
    shift
    [ ! -f "$target" ] || [ -n "$(find "$@" -newer "$target" -print -quit)" ]
}

python="$root/examples/prefer-edge/python"
if stale "$out/prefer_edge_python.wasm" "$python"/*.py "$wit"; then
    command -v componentize-py >/dev/null || python3 -m pip install --quiet componentize-py==0.25.1
    componentize-py -d "$wit" -w "$world" componentize -p "$python" app \
        -o "$out/prefer_edge_python.wasm" >/dev/null
fi

cd "$root/examples/prefer-edge/js"
if stale "$out/prefer_edge_js.wasm" plugin.js package.json package-lock.json "$wit"; then
    [ -d node_modules ] || npm ci --no-audit --no-fund --silent
    # StarlingMonkey brings wasi:http (a fetch event handler and its client)
    # unless told not to: the plugin host links no wasi:http.
    npx componentize-js plugin.js --wit "$wit" --world-name "$world" \
        --disable http fetch-event -o "$out/prefer_edge_js.wasm" >/dev/null
fi
