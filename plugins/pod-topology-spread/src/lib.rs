//! The default plugin PodTopologySpread as a Wasm component.

wasmkube_sdk::export!(wasmkube_default_plugins::PodTopologySpread: PreFilter, Filter, Score);
