//! An admission policy that misbehaves as its settings say, for the tests of
//! the API server's failure handling: `{"misbehave": "trap"}` traps,
//! `"spin"` never returns, `"hog"` takes memory until refused; validating
//! each write it is called for.

use serde_json::Value;
use wasmkube_admission_sdk::{Cluster, Policy, Request, Verdict, export_policy};

/// What it does when called.
pub struct Misbehaving(String);

impl Policy for Misbehaving {
    fn new(settings: Value) -> Result<Self, String> {
        match settings["misbehave"].as_str() {
            Some(how @ ("trap" | "spin" | "hog")) => Ok(Misbehaving(how.to_owned())),
            other => Err(format!("misbehave: {other:?} is not trap, spin or hog")),
        }
    }

    fn validate(&self, _request: &Request, _cluster: &dyn Cluster) -> Verdict {
        match self.0.as_str() {
            "trap" => panic!("trapping on purpose"),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            _ => {
                // Grown, not touched: the limit refuses it at once.
                let mut held: Vec<Vec<u8>> = Vec::new();
                loop {
                    held.push(Vec::with_capacity(64 << 20));
                }
            }
        }
    }
}

export_policy!(Misbehaving);
