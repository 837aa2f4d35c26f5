//! A plugin outside the default set, written as the SDK's documentation shows:
//! nodes labelled `tier=edge` score 100, others 0.

use wasmkube_sdk::{NodeInfo, Plugin, Pod, Score, export};

#[derive(Default)]
pub struct PreferEdge;

impl Plugin for PreferEdge {
    const NAME: &'static str = "PreferEdge";
}

impl Score for PreferEdge {
    fn score(&mut self, _pod: &Pod, node: &NodeInfo) -> Option<i64> {
        Some(if node.label("tier") == Some("edge") {
            100
        } else {
            0
        })
    }
}

export!(PreferEdge: Score);
