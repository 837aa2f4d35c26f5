"""PreferEdge, a scheduler plugin in Python, built into a component of the WIT
world `wasmkube:scheduler/scheduler-plugin` by componentize-py.

Scores 100 the nodes whose label `tier` is the configured tier (`edge` unless
the plugin's args say `{"tier": "..."}`), 0 the others; it filters out no node.
The same plugin is in Rust (../rust) and JavaScript (../js).
"""

import json
from typing import Any, Dict, List, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.types import (
    Code,
    NodeChange,
    NodeChange_Removed,
    NodeChange_Set,
    Rejection,
    Status,
)

SUCCESS = Status(Code.SUCCESS, "")

# What the plugin keeps between calls, at module level (an instance of
# `Plugin` need not live from one call to the next): the tier it prefers and
# the labels of each node, by node id.
_tier = "edge"
_labels_by_node: Dict[int, Dict[str, Any]] = {}


def _parse(text: str) -> Any:
    """JSON text as Python values; ValueError when it is not JSON."""

    def reject(constant: str) -> Any:
        # Python's json reads NaN and Infinity, which are not JSON.
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=reject)


def _labels(node_json: str) -> Dict[str, Any]:
    """A Node's `metadata.labels`; none when missing or unreadable."""
    try:
        node = _parse(node_json)
    except ValueError:
        return {}
    metadata = node.get("metadata") if isinstance(node, dict) else None
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    return labels if isinstance(labels, dict) else {}


class Plugin(exports.Plugin):
    def name(self) -> str:
        return "PreferEdge"

    def configure(self, args: str) -> None:
        global _tier
        try:
            config = _parse(args)
        except ValueError:
            config = None
        if not isinstance(config, dict):
            raise Err("args must be a JSON object")
        tier = config.get("tier", "edge")
        if not isinstance(tier, str):
            raise Err("tier must be a string")
        _tier = tier

    def update_nodes(self, changes: List[NodeChange]) -> None:
        for change in changes:
            if isinstance(change, NodeChange_Set):
                node, node_json = change.value
                _labels_by_node[node] = _labels(node_json)
            elif isinstance(change, NodeChange_Removed):
                _labels_by_node.pop(change.value, None)
            # A pod added to or removed from a node does not change its score.

    def pre_filter(self, pod: str) -> Status:
        return SUCCESS

    def filter(self, nodes: List[int]) -> List[Rejection]:
        return []

    def post_filter(self, rejections: List[Rejection]) -> Optional[int]:
        return None

    def pre_score(self, nodes: List[int]) -> Status:
        return SUCCESS

    def score(self, nodes: List[int]) -> List[int]:
        return [
            100 if _labels_by_node.get(node, {}).get("tier") == _tier else 0
            for node in nodes
        ]

    def normalize_score(self, scores: List[int]) -> List[int]:
        return scores

    def reserve(self, node: int) -> Status:
        return SUCCESS

    def unreserve(self, node: int) -> None:
        pass

    def permit(self, node: int) -> Status:
        return SUCCESS
