//! Compiles the OpenAPI v2 protobuf messages (gnostic's `OpenAPIv2.proto`), in
//! which `/openapi/v2` answers the clients that ask for protobuf (kubectl 1.27).
//! `scripts/install-deps.sh` fetches the file into `.deps/proto`; set
//! `WASMKUBE_PROTO_DIR` to read it from elsewhere.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=WASMKUBE_PROTO_DIR");
    let dir = match std::env::var_os("WASMKUBE_PROTO_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.deps/proto"),
    };
    let proto = dir.join("openapiv2/OpenAPIv2.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    if !proto.exists() {
        panic!(
            "{} is missing: run scripts/install-deps.sh, which fetches it from Debian's \
             golang-github-googleapis-gnostic-dev",
            proto.display()
        );
    }
    prost_build::Config::new()
        .compile_protos(&[&proto], &[&dir])
        .expect("OpenAPIv2.proto compiles");
}
