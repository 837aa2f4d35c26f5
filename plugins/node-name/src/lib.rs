//! The default plugin NodeName as a Wasm component.

wasmkube_sdk::export!(wasmkube_default_plugins::NodeName: Filter);
