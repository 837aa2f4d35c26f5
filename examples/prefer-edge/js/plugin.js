// PreferEdge, a scheduler plugin in JavaScript, built into a component of the
// WIT world `wasmkube:scheduler/scheduler-plugin` by componentize-js.
//
// Scores 100 the nodes whose label `tier` is the configured tier (`edge` unless
// the plugin's args say `{"tier": "..."}`), 0 the others; it filters out no
// node. The same plugin is in Rust (../rust) and Python
// (../python).
//
// WIT to JavaScript: a node id (u32) is a number and a list of them a
// Uint32Array; a score (s64) is a BigInt and a list of them a BigInt64Array
// (or an Array of BigInts); a variant is `{tag, val}`, an enum case its name;
// a function returning a result returns its ok value and throws its error.

const SUCCESS = { code: "success", reason: "" };

// The tier the plugin prefers, and the labels of each node by node id.
let tier = "edge";
const labelsByNode = new Map();

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// A Node's `metadata.labels`; none when missing or unreadable.
function labelsOf(nodeJson) {
  let node;
  try {
    node = JSON.parse(nodeJson);
  } catch {
    return {};
  }
  const metadata = isObject(node) ? node.metadata : undefined;
  const labels = isObject(metadata) ? metadata.labels : undefined;
  return isObject(labels) ? labels : {};
}

export const plugin = {
  name() {
    return "PreferEdge";
  },

  configure(args) {
    let config;
    try {
      config = JSON.parse(args);
    } catch {
      config = undefined;
    }
    if (!isObject(config)) {
      throw "args must be a JSON object";
    }
    const value = Object.hasOwn(config, "tier") ? config.tier : "edge";
    if (typeof value !== "string") {
      throw "tier must be a string";
    }
    tier = value;
  },

  updateNodes(changes) {
    for (const change of changes) {
      if (change.tag === "set") {
        const [node, nodeJson] = change.val;
        labelsByNode.set(node, labelsOf(nodeJson));
      } else if (change.tag === "removed") {
        labelsByNode.delete(change.val);
      }
      // A pod added to or removed from a node does not change its score.
    }
  },

  preFilter(_pod) {
    return SUCCESS;
  },

  filter(_nodes) {
    return [];
  },

  postFilter(_rejections) {
    return undefined;
  },

  preScore(_nodes) {
    return SUCCESS;
  },

  score(nodes) {
    // Not `nodes.map`: on a Uint32Array it would give numbers back.
    return Array.from(nodes, (node) => (labelsByNode.get(node)?.tier === tier ? 100n : 0n));
  },

  normalizeScore(scores) {
    return scores;
  },

  reserve(_node) {
    return SUCCESS;
  },

  unreserve(_node) {},

  permit(_node) {
    return SUCCESS;
  },
};
