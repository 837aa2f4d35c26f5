//! The default plugin NodeAffinity as a Wasm component.

wasmkube_sdk::export!(wasmkube_default_plugins::NodeAffinity: PreFilter, Filter, Score);
