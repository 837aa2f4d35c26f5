//! PreferEdge, the example plugin (also in Python and JavaScript beside this
//! folder): nodes whose label `tier` is the configured tier (`edge` unless
//! the args say `{"tier": "…"}`) score 100, others 0.

use wasmkube_sdk::{NodeInfo, Plugin, Pod, Score, export};

pub struct PreferEdge {
    tier: String,
}

impl Default for PreferEdge {
    fn default() -> Self {
        PreferEdge {
            tier: "edge".into(),
        }
    }
}

impl Plugin for PreferEdge {
    const NAME: &'static str = "PreferEdge";

    fn configure(&mut self, args: serde_json::Value) -> Result<(), String> {
        let Some(args) = args.as_object() else {
            return Err("args must be a JSON object".into());
        };
        match args.get("tier") {
            None => {}
            Some(serde_json::Value::String(tier)) => tier.clone_into(&mut self.tier),
            Some(_) => return Err("tier must be a string".into()),
        }
        Ok(())
    }
}

impl Score for PreferEdge {
    fn score(&mut self, _pod: &Pod, node: &NodeInfo) -> Option<i64> {
        Some(if node.label("tier") == Some(self.tier.as_str()) {
            100
        } else {
            0
        })
    }
}

export!(PreferEdge: Score);
