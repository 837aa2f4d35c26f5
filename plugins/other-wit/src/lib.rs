//! A plugin built for another version of the scheduler interface
//! (`wasmkube:scheduler@0.0.9`, in `wit/`), to show that the host refuses it
//! when loading, saying which version it found.

wit_bindgen::generate!({ path: "wit", world: "scheduler-plugin" });

struct OtherWit;

impl exports::wasmkube::scheduler::plugin::Guest for OtherWit {
    fn name() -> String {
        "OtherWit".into()
    }

    fn filter(_pod: String, _node: String) -> bool {
        true
    }
}

export!(OtherWit);
