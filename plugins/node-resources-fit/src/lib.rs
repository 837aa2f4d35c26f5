//! The default plugin NodeResourcesFit as a Wasm component.

wasmkube_sdk::export!(wasmkube_default_plugins::NodeResourcesFit: PreFilter, Filter, Score);
