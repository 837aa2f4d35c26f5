#!/usr/bin/env bash
# Builds, without network, the OCI images that OCI pods run in the tests and
# the examples: `busybox` (Debian's static busybox) and `pause`, the sandbox
# image containerd keeps each pod's namespaces with (the same busybox,
# waiting for a signal). Each is written as a docker archive that
# `ctr images import` and `skopeo copy` take, named wasmkube.local/NAME:1.
#
# Usage: scripts/oci-images.sh [OUT_DIR]   (default target/oci-images)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/oci-images}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# build NAME CONFIG-FLAGS...: an image of busybox and its applets.
build() {
    local name="$1"
    shift
    umoci init --layout "$work/layout-$name"
    umoci new --image "$work/layout-$name:1"
    umoci unpack --rootless --image "$work/layout-$name:1" "$work/bundle-$name"
    local rootfs="$work/bundle-$name/rootfs"
    mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc"
    cp /usr/bin/busybox "$rootfs/bin/busybox"
    for applet in $("$rootfs/bin/busybox" --list); do
        [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
    done
    echo "root:x:0:0:root:/root:/bin/sh" > "$rootfs/etc/passwd"
    echo "root:x:0:" > "$rootfs/etc/group"
    umoci repack --image "$work/layout-$name:1" "$work/bundle-$name"
    umoci config --image "$work/layout-$name:1" --config.env PATH=/bin "$@"
    # Written aside and renamed: tests that build at once never read half
    # an archive.
    skopeo copy --quiet "oci:$work/layout-$name:1" "docker-archive:$work/$name.tar:wasmkube.local/$name:1"
    mv "$work/$name.tar" "$out/$name.tar.$$"
    mv "$out/$name.tar.$$" "$out/$name.tar"
}

build busybox --config.cmd sh
# Waits for SIGTERM or SIGINT as the pause container does; PID 1 has no
# default handlers, so the shell traps them.
build pause --config.entrypoint sh --config.entrypoint -c \
    --config.entrypoint "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"
echo "$out/busybox.tar $out/pause.tar"
