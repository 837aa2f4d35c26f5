#!/usr/bin/env python3
"""Derives the protobuf message table of the built-in kinds from the message
definitions of the `k8s-pb` crate and the Kubernetes OpenAPI document:


    scripts/gen-protobuf-table.py ~/.cargo/registry/src/*/k8s-pb-0.9.0/src \
        ../shared/k8s-openapi/swagger-v1.36.0.json \
        > controlplane/apiserver/src/protobuf/table.rs

(k8s-pb is a dev-dependency of the API server, so cargo has fetched it).

For every message reachable from a kind of a GA version (v1, v2) it writes each
field's tag, its JSON name (the OpenAPI property it encodes) and its type, so that
protobuf bodies decode into the JSON objects the rest of the server handles."""

import json
import os
import re
import sys

SPECIAL = {
    # Messages that are scalars in JSON; the decoder knows them by name.
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Duration",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "io.k8s.apimachinery.pkg.runtime.RawExtension",
}

ATTR = re.compile(r'#\[prost\((?P<kind>[a-z0-9_]+)(?: = "(?P<spec>[^"]+)")?(?P<rest>[^\]]*)tag = "(?P<tag>\d+)"\)\]')
FIELD = re.compile(r"pub (?:r#)?(?P<name>\w+):\s*(?P<type>.*),\s*$", re.S)
STRUCT = re.compile(r"pub struct (\w+) \{(.*?)\n\}", re.S)


def package(path, root):
    parts = os.path.relpath(os.path.dirname(path), root).split(os.sep)
    return parts


def definition(parts, name):
    words = [p.replace("_", "-") for p in parts]
    return "io.k8s." + ".".join(words + [name])


def resolve(parts, type_text):
    """The definition of a message field's type."""
    paths = re.findall(r"((?:super::)*(?:[a-z_0-9]+::)*[A-Z]\w*)", type_text)
    paths = [p for p in paths if p.split("::")[-1] not in ("Option", "Vec", "Box", "String", "BTreeMap")]
    path = paths[-1].split("::")
    up = path.count("super")
    rest = [p for p in path if p != "super"]
    base = parts[: len(parts) - up] if up else parts
    return definition(base + rest[:-1], rest[-1])


def json_name(definitions, message, field):
    properties = definitions.get(message, {}).get("properties", {})
    flat = field.replace("_", "").lower()
    for prop in properties:
        if prop.lower() == flat:
            return prop
    head, *tail = field.split("_")
    return head + "".join(t[:1].upper() + t[1:] for t in tail)


def main(src, swagger):
    definitions = json.load(open(swagger))["definitions"]
    messages = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if f != "mod.rs":
                continue
            path = os.path.join(dirpath, f)
            parts = package(path, src)
            text = open(path).read()
            for name, body in STRUCT.findall(text):
                fields = []
                chunks = re.split(r"(?=#\[prost\()", body)
                for chunk in chunks:
                    chunk = "\n".join(l for l in chunk.split("\n") if not l.strip().startswith("//"))
                    attr = ATTR.search(chunk)
                    field = FIELD.search(chunk)
                    if not attr or not field:
                        continue
                    kind, spec, rest = attr["kind"], attr["spec"], attr["rest"]
                    repeated = "repeated" in rest
                    target = None
                    if kind == "btree_map":
                        value = spec.split(", ")[1]
                        kind = "map_" + value
                        if value == "message":
                            target = resolve(parts, field["type"].split(",", 1)[1])
                    elif kind == "message":
                        target = resolve(parts, field["type"])
                    fields.append((int(attr["tag"]), field["name"], kind, target, repeated))
                messages[definition(parts, name)] = fields

    roots = []
    for name, d in definitions.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            if re.fullmatch(r"v\d+", gvk["version"]) and name in messages:
                roots.append(name)
    roots.append("io.k8s.apimachinery.pkg.runtime.Unknown")
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name in SPECIAL or name not in messages:
            continue
        seen.add(name)
        todo.extend(t for _, _, _, t, _ in messages[name] if t)

    kinds = {
        "string": "Str", "bytes": "Bytes", "bool": "Bool", "int32": "Int32",
        "int64": "Int64", "double": "Double", "map_string": "MapOfStr",
        "map_bytes": "MapOfBytes", "map_message": "MapOf", "message": "Message",
    }
    out = sys.stdout
    out.write("// Derived from the k8s-pb messages and the Kubernetes OpenAPI document by\n")
    out.write("// scripts/gen-protobuf-table.py; regenerate rather than edit.\n\n")
    out.write("use super::{Field, Message, Type};\n\n")
    out.write("#[rustfmt::skip]\npub(super) const MESSAGES: &[Message] = &[\n")
    for name in sorted(seen):
        rows = []
        for tag, field, kind, target, repeated in sorted(messages[name]):
            ty = kinds[kind]
            ty = f"Type::{ty}({json.dumps(target)})" if target else f"Type::{ty}"
            rows.append(
                f"        Field {{ tag: {tag}, name: {json.dumps(json_name(definitions, name, field))}, ty: {ty}, repeated: {str(repeated).lower()} }},\n"
            )
        out.write(f"    Message {{ name: {json.dumps(name)}, fields: &[\n{''.join(rows)}    ] }},\n")
    out.write("];\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
