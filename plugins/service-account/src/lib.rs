//! The built-in admission policy ServiceAccount as a Wasm component.

wasmkube_admission_sdk::export_policy!(wasmkube_builtin_policies::ServiceAccount);
