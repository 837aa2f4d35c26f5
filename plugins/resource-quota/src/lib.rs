//! The built-in admission policy ResourceQuota as a Wasm component.

wasmkube_admission_sdk::export_policy!(wasmkube_builtin_policies::ResourceQuota);
