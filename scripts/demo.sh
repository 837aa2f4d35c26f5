#!/usr/bin/env bash
# A single-node cluster on the embedded store, running an example: installs what
# is needed, builds wasmkube and the example components, imports them into the
# node's image store, starts `wasmkube up` (node edge-1) and applies
# examples/hello.yaml (a command that runs to its end) and examples/http.yaml (a
# wasi:http server on its own pod address). The cluster keeps running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${WASMKUBE_DATA:-wasmkube-data}
listen=${WASMKUBE_LISTEN:-127.0.0.1:6443}

scripts/install-deps.sh
scripts/build-examples.sh
cargo build --release --quiet
bin=target/release/wasmkube
for name in hello fail hog spin sleep http-hello; do
    "$bin" image import --data-dir "$data" \
        "examples/wasi/target/wasm32-wasip2/release/${name//-/_}.wasm" "examples/$name:1"
done

"$bin" up --data-dir "$data" --listen "$listen" --node-name edge-1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
export KUBECONFIG="$data/kubeconfig"
until kubectl get node edge-1 >/dev/null 2>&1; do sleep 0.2; done
kubectl apply -f examples/hello.yaml
until [ "$(kubectl get pod hello -o jsonpath='{.status.phase}')" = Succeeded ]; do sleep 0.2; done
kubectl apply -f examples/http.yaml
kubectl wait --for=condition=Ready pod/web --timeout=60s
kubectl get nodes,pods -o wide
echo "--- kubectl logs hello:"
kubectl logs hello
ip=$(kubectl get pod web -o jsonpath='{.status.podIP}')
echo "--- curl http://$ip:8080/demo:"
curl -s "http://$ip:8080/demo"
echo "--- KUBECONFIG=$data/kubeconfig; Ctrl-C stops the cluster."
wait $server
