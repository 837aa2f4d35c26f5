//! The default plugin NodeResourcesBalancedAllocation as a Wasm component.

wasmkube_sdk::export!(wasmkube_default_plugins::NodeResourcesBalancedAllocation: PreFilter, Score);
