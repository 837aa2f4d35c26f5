#!/usr/bin/env bash
# Builds the scheduler plugins (plugins/, with the SDK in sdk/) into Wasm
# components: plugins/target/wasm32-wasip2/release/<name>.wasm. Their own
# workspace and target directory: they build for another target.
#
# With --guests, also the example scheduler plugin PreferEdge and the example
# admission policy AllowedRegistries in Python (examples/*/python,
# componentize-py -> prefer_edge_python.wasm, allowed_registries_python.wasm)
# and JavaScript (examples/*/js, componentize-js -> prefer_edge_js.wasm,
# allowed_registries_js.wasm), in the same folder, installing those tools if
# missing; a component whose sources have not changed is not built again.
set -euo pipefail
cd "$(dirname "$0")/../plugins"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2

[ "${1:-}" = "--guests" ] || exit 0

root="$(cd .. && pwd)"
out="$root/plugins/target/wasm32-wasip2/release"

# Whether $1 is missing or older than any of the other files.
stale() {
    local target=$1
    shift
    [ ! -f "$target" ] || [ -n "$(find "$@" -newer "$target" -print -quit)" ]
}

command -v componentize-py >/dev/null || python3 -m pip install --quiet componentize-py==0.25.1

# guest NAME WIT-DIR WORLD: builds examples/NAME's Python and JavaScript
# versions into NAME_python.wasm and NAME_js.wasm.
guest() {
    local name=$1 wit="$root/wit/$2" world=$3
    local file=${name//-/_} python="$root/examples/$name/python" js="$root/examples/$name/js"
    if stale "$out/${file}_python.wasm" "$python"/*.py "$wit"; then
        componentize-py -d "$wit" -w "$world" componentize -p "$python" app \
            -o "$out/${file}_python.wasm" >/dev/null
    fi
    cd "$js"
    if stale "$out/${file}_js.wasm" ./*.js package.json package-lock.json "$wit"; then
        [ -d node_modules ] || npm ci --no-audit --no-fund --silent
        # StarlingMonkey brings wasi:http (a fetch event handler and its
        # client) unless told not to: the plugin host links no wasi:http.
        npx componentize-js ./*.js --wit "$wit" --world-name "$world" \
            --disable http fetch-event -o "$out/${file}_js.wasm" >/dev/null
    fi
}

guest prefer-edge scheduler scheduler-plugin
guest allowed-registries admission admission-policy
