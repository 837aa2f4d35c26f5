//! A plugin that misbehaves in `filter` as its args say, to show that a broken
//! plugin fails its own call and nothing else: `{"do": "panic"}` traps,
//! `{"do": "spin"}` never returns, `{"do": "hog"}` allocates without bound,
//! `{"refuse": true}` refuses its args. Otherwise it passes every node.

use wasmkube_sdk::{Filter, NodeInfo, Plugin, Pod, Status, export};

#[derive(Default)]
pub struct Misbehaving {
    what: String,
}

impl Plugin for Misbehaving {
    const NAME: &'static str = "Misbehaving";

    fn configure(&mut self, args: serde_json::Value) -> Result<(), String> {
        if args["refuse"] == true {
            return Err("told to refuse".into());
        }
        self.what = args["do"].as_str().unwrap_or_default().to_owned();
        Ok(())
    }
}

impl Filter for Misbehaving {
    fn filter(&mut self, _pod: &Pod, _node: &NodeInfo) -> Status {
        match self.what.as_str() {
            "panic" => panic!("misbehaving on purpose"),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "hog" => {
                // Untouched 16 MiB blocks: the limit is met long before the
                // call's time is up.
                let mut held: Vec<Vec<u8>> = Vec::new();
                loop {
                    held.push(Vec::with_capacity(16 << 20));
                    std::hint::black_box(&held);
                }
            }
            _ => Status::success(),
        }
    }
}

export!(Misbehaving: Filter);
