#!/usr/bin/env python3
"""Derives the patch metadata table of the built-in kinds from the Kubernetes
OpenAPI (v2) document:

    scripts/gen-patch-table.py ../shared/k8s-openapi/swagger-v1.36.0.json \
        > controlplane/types/src/patch/table.rs


For every object definition reachable from a kind of a GA version (v1, v2), it
writes each field that leads to another definition or carries patch metadata:
patch strategy and merge key (strategic merge patch), list type, list map keys
and map type (server-side apply)."""

import json
import re
import sys

REF = "#/definitions/"


def target(prop):
    """The definition a field's value (or its items, or its map values) is."""
    for holder in (prop, prop.get("items", {}), prop.get("additionalProperties") or {}):
        if isinstance(holder, dict) and "$ref" in holder:
            return holder["$ref"][len(REF):]
    return None


def shape(prop):
    if prop.get("type") == "array":
        return "list"
    if isinstance(prop.get("additionalProperties"), dict):
        return "map"
    return "object" if "$ref" in prop else "scalar"


def main(path):
    definitions = json.load(open(path))["definitions"]
    kinds = []
    for name, d in definitions.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            if re.fullmatch(r"v\d+", gvk["version"]) and not gvk["kind"].endswith("List"):
                kinds.append((gvk["group"], gvk["version"], gvk["kind"], name))
    kinds.sort()
    seen, todo = set(), [k[3] for k in kinds]
    while todo:
        name = todo.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        for prop in definitions[name].get("properties", {}).values():
            t = target(prop)
            if t:
                todo.append(t)
    rows, atomic = [], []
    for name in sorted(seen):
        d = definitions[name]
        if d.get("x-kubernetes-map-type") == "atomic":
            atomic.append(name)
        for field, prop in sorted(d.get("properties", {}).items()):
            t = target(prop)
            meta = (
                prop.get("x-kubernetes-patch-strategy", ""),
                prop.get("x-kubernetes-patch-merge-key", ""),
                prop.get("x-kubernetes-list-type", ""),
                prop.get("x-kubernetes-list-map-keys", []),
                prop.get("x-kubernetes-map-type", ""),
            )
            if t is None and not any(meta):
                continue
            rows.append((name, field, t, shape(prop)) + meta)

    q = json.dumps
    out = sys.stdout
    out.write("// Derived from the Kubernetes OpenAPI document by scripts/gen-patch-table.py;\n")
    out.write("// regenerate rather than edit.\n\n")
    out.write("use super::{Field, Kind, Shape};\n\n")
    out.write("#[rustfmt::skip]\npub(super) const KINDS: &[Kind] = &[\n")
    for g, v, k, n in kinds:
        out.write(f"    Kind {{ group: {q(g)}, version: {q(v)}, kind: {q(k)}, definition: {q(n)} }},\n")
    out.write("];\n\n")
    out.write("#[rustfmt::skip]\npub(super) const ATOMIC: &[&str] = &[\n")
    for n in atomic:
        out.write(f"    {q(n)},\n")
    out.write("];\n\n")
    out.write("#[rustfmt::skip]\npub(super) const FIELDS: &[Field] = &[\n")
    for n, f, t, s, strategy, key, list_type, map_keys, map_type in rows:
        tt = f"Some({q(t)})" if t else "None"
        keys = "&[" + ", ".join(q(k) for k in map_keys) + "]"
        out.write(
            f"    Field {{ definition: {q(n)}, name: {q(f)}, target: {tt}, shape: Shape::{s.capitalize()}, "
            f"strategy: {q(strategy)}, merge_key: {q(key)}, list_type: {q(list_type)}, map_keys: {keys}, "
            f"map_type: {q(map_type)} }},\n"
        )
    out.write("];\n")


if __name__ == "__main__":
    main(sys.argv[1])
