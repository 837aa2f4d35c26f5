"""AllowedRegistries, an admission policy in Python, built into a component
of the WIT world `wasmkube:admission/admission-policy` by componentize-py.

Pods run only images from the registries its settings allow, and get the
default labels they lack. Settings: `{"registries": ["registry.example:5000"],
"defaultLabels": {"team": "unassigned"}}`. An image names its registry by its
first part when that part has a `.` or a `:` or is `localhost`; other images
are Docker Hub's (`docker.io`). The same policy is in Rust (../rust) and
JavaScript (../js).
"""

import json
from typing import Any, Dict, List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import Operation, Request, Status, Verdict


def _settings(text: str) -> Tuple[List[str], Dict[str, str]]:
    """The allowed registries and default labels, or Err saying what is wrong."""
    try:
        settings = json.loads(text)
    except ValueError as e:
        raise Err(f"settings: {e}")
    registries = settings.get("registries") if isinstance(settings, dict) else None
    if not isinstance(registries, list):
        raise Err("registries: a list of registries is required")
    if not all(isinstance(r, str) for r in registries):
        raise Err("registries: each is a string")
    labels = settings.get("defaultLabels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise Err("defaultLabels: a map of strings")
    return registries, labels


def _registry(image: str) -> str:
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _field(request: Request, pointer: str) -> Any:
    """The value at `pointer` in the object written, or None."""
    if request.object is None:
        return None
    found: Optional[str] = request.object.get(pointer)
    return None if found is None else json.loads(found)


def _quoted(text: str) -> str:
    return json.dumps(text)


def _allow(patch: Optional[List[Dict[str, Any]]] = None) -> Verdict:
    return Verdict(True, None, [], json.dumps(patch) if patch else None)


def _forbid(request: Request, why: str) -> Verdict:
    resource = request.resource.resource
    if request.resource.group:
        resource = f"{resource}.{request.resource.group}"
    message = f"{resource} {_quoted(request.name)} is forbidden: {why}"
    return Verdict(False, Status(403, "Forbidden", message), [], None)


def _pod_create(request: Request) -> bool:
    return (
        request.resource.group == ""
        and request.resource.resource == "pods"
        and request.sub_resource == ""
        and request.operation == Operation.CREATE
    )


class Policy(exports.Policy):
    def validate_settings(self, settings: str) -> None:
        _settings(settings)

    def mutate(self, request: Request) -> Verdict:
        if not _pod_create(request):
            return _allow()
        _, defaults = _settings(host.settings())
        labels = _field(request, "/metadata/labels")
        if not isinstance(labels, dict):
            return _allow([{"op": "add", "path": "/metadata/labels", "value": defaults}] if defaults else None)
        patch = [
            {
                "op": "add",
                "path": "/metadata/labels/" + key.replace("~", "~0").replace("/", "~1"),
                "value": value,
            }
            for key, value in sorted(defaults.items())
            if key not in labels
        ]
        return _allow(patch)

    def validate(self, request: Request) -> Verdict:
        if not _pod_create(request):
            return _allow()
        registries, _ = _settings(host.settings())
        for kind in ("initContainers", "containers"):
            for container in _field(request, f"/spec/{kind}") or []:
                image = container.get("image", "")
                if _registry(image) not in registries:
                    return _forbid(
                        request,
                        f"image {_quoted(image)} of container {_quoted(container.get('name', ''))} "
                        f"is not from an allowed registry ({', '.join(registries)})",
                    )
        return _allow()
