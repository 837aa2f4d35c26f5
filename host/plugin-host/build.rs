//! Builds the built-in plugins (`plugins/`, their own workspace and target
//! directory) as Wasm components, which this crate embeds zlib-compressed
//! (they share most of their code, a third of their size when packed): the
//! default scheduler plugins, the network plugins and the built-in admission
//! policies.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use sha2::{Digest as _, Sha256};

/// The default scheduler plugins: their names and their crates' names.
const SCHEDULING: &[(&str, &str)] = &[
    ("NodeName", "node_name"),
    ("NodeUnschedulable", "node_unschedulable"),
    ("NodeAffinity", "node_affinity"),
    ("TaintToleration", "taint_toleration"),
    ("NodeResourcesFit", "node_resources_fit"),
    (
        "NodeResourcesBalancedAllocation",
        "node_resources_balanced_allocation",
    ),
    ("PodTopologySpread", "pod_topology_spread"),
];

/// The network plugins: their CNI types and their crates' names.
const NETWORK: &[(&str, &str)] = &[("pod-network", "pod_network"), ("host-local", "host_local")];

/// The built-in admission policies: their names and their crates' names.
const ADMISSION: &[(&str, &str)] = &[
    ("NamespaceLifecycle", "namespace_lifecycle"),
    ("LimitRanger", "limit_ranger"),
    ("ServiceAccount", "service_account"),
    ("PodSecurity", "pod_security"),
    ("ResourceQuota", "resource_quota"),
];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // The sources, not plugins/target, which the build itself writes.
    let plugins = std::fs::read_dir(root.join("plugins")).expect("plugins/");
    let sources = plugins
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n != "target"));
    let others = [
        "sdk",
        "wit",
        "controlplane/quantity",
        "examples/allowed-registries/rust",
        "controlplane/scheduling",
        "examples/prefer-edge/rust",
        "scripts/build-plugins.sh",
    ];
    for watched in sources.chain(others.iter().map(|o| root.join(o))) {
        println!("cargo::rerun-if-changed={}", watched.display());
    }
    // A cargo inside a build script must not inherit this build's settings
    // (target, flags, jobserver): it gets a clean environment.
    let mut build = Command::new(root.join("scripts/build-plugins.sh"));
    build.env_clear();
    for kept in [
        "PATH",
        "HOME",
        "RUSTUP_HOME",
        "CARGO_HOME",
        "RUSTUP_TOOLCHAIN",
    ] {
        if let Some(value) = std::env::var_os(kept) {
            build.env(kept, value);
        }
    }
    let status = build.status().expect("running scripts/build-plugins.sh");
    assert!(status.success(), "building the default plugins failed");
    let built = root.join("plugins/target/wasm32-wasip2/release");
    // Each component's digest is taken here, so that a process finds its
    // compiled artefact without reading (and unpacking) the bytes.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let table = |name: &str, what: &str, plugins: &[(&str, &str)]| {
        let mut table = format!("/// {what}\npub const {name}: &[crate::Builtin] = &[\n");
        for (name, file) in plugins {
            let bytes = std::fs::read(built.join(format!("{file}.wasm"))).expect("a built plugin");
            let mut packer = ZlibEncoder::new(Vec::new(), Compression::best());
            packer.write_all(&bytes).expect("packing in memory");
            let packed = out.join(format!("{file}.wasm.zlib"));
            std::fs::write(&packed, packer.finish().expect("packing in memory"))
                .expect("writing a packed plugin");
            table.push_str(&format!(
                "    crate::Builtin {{ name: {name:?}, packed: include_bytes!({:?}), sha256: {:?} }},\n",
                packed.display().to_string(),
                format!("{:x}", Sha256::digest(&bytes)),
            ));
        }
        table + "];\n"
    };
    let tables = table(
        "SCHEDULING",
        "The default scheduler plugins' components, by name.",
        SCHEDULING,
    ) + &table(
        "NETWORK",
        "The network plugins' components, by CNI type.",
        NETWORK,
    ) + &table(
        "ADMISSION",
        "The built-in admission policies' components, by name.",
        ADMISSION,
    );
    std::fs::write(out.join("builtin.rs"), tables).expect("writing the plugin tables");
}
