//! The default plugin TaintToleration as a Wasm component.

wasmkube_sdk::export!(wasmkube_default_plugins::TaintToleration: PreFilter, Filter, Score);
