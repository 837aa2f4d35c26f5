#!/usr/bin/env bash
# A single-node cluster on the embedded store, running an example: installs what
# is needed, builds wasmkube and the example components, starts `wasmkube up`
# (node edge-1, data in wasmkube-data/), runs examples/hello.yaml (a command that
# runs to its end) and `wasmkube run hello-http` (a wasi:http server pushed to the
# cluster's built-in registry, behind a Service), and prints the URL it answers
# on. The cluster keeps running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${WASMKUBE_DATA:-wasmkube-data}
listen=${WASMKUBE_LISTEN:-127.0.0.1:6443}

scripts/install-deps.sh
scripts/build-examples.sh
cargo build --release --quiet --bin wasmkube
bin=${CARGO_TARGET_DIR:-target}/release/wasmkube
wasm=examples/wasi/target/wasm32-wasip2/release
for name in hello fail hog spin sleep http-hello; do
    "$bin" image import --data-dir "$data" "$wasm/${name//-/_}.wasm" "examples/$name:1" >/dev/null
done

"$bin" up --data-dir "$data" --listen "$listen" --node-name edge-1 2>"$data/up.log" &
server=$!
trap 'kill $server 2>/dev/null' EXIT
export KUBECONFIG="$data/kubeconfig"
until [ -f "$KUBECONFIG" ] && "$bin" get node edge-1 >/dev/null 2>&1; do sleep 0.2; done

"$bin" apply -f examples/hello.yaml
until [ "$("$bin" get pod hello -o json 2>/dev/null | grep -c '"phase": "Succeeded"')" = 1 ]; do
    sleep 0.2
done
echo "--- wasmkube logs hello:"
"$bin" logs hello

# Pushes the component to the built-in registry, makes a Deployment and a
# Service, waits for a ready pod and prints the Service's URL.
ran=$("$bin" run hello-http --wasm "$wasm/http_hello.wasm" --port 8080 --replicas 2)
echo "$ran"
url=$(echo "$ran" | sed -n 's/.* is answering at //p')
"$bin" get nodes,pods,services -o wide
echo "--- curl ${url}demo:"
curl -s "${url}demo"
echo "--- hello-http answers at $url (logs: $data/up.log; KUBECONFIG=$KUBECONFIG); Ctrl-C stops the cluster."
wait $server
