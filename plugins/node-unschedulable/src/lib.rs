//! The default plugin NodeUnschedulable as a Wasm component.

wasmkube_sdk::export!(wasmkube_default_plugins::NodeUnschedulable: Filter);
