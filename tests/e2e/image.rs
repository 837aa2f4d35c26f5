//! `wasmkube image import`: components go into a node's image store, once by
//! digest, named by tag; what is not a component is refused.

use std::path::Path;
use std::process::Command;

use wasmkube_oci::ImageStore;

fn import(data_dir: &Path, file: &Path, reference: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasmkube"))
        .args(["image", "import", "--data-dir"])
        .arg(data_dir)
        .arg(file)
        .arg(reference)
        .output()
        .unwrap()
}

#[test]
fn image_import_stores_components_by_digest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("scripts/build-examples.sh"))
        .status()
        .unwrap();
    assert!(built.success());
    let hello = root.join("examples/wasi/target/wasm32-wasip2/release/hello.wasm");
    let dir = tempfile::tempdir().unwrap();

    let out = import(dir.path(), &hello, "examples/hello");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("examples/hello:latest is sha256:"),
        "{said}"
    );
    let images = ImageStore::open(dir.path()).unwrap();
    let image = images.resolve("examples/hello:latest").unwrap().unwrap();
    assert_eq!(
        std::fs::read(&image.path).unwrap(),
        std::fs::read(&hello).unwrap()
    );

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not wasm").unwrap();
    let refused = import(dir.path(), &text, "notes:1");
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("is not a WebAssembly component"), "{why}");
}
