//! Prints its arguments, `PWD` and the variables whose names start with `GREETING`, the
//! files of `/data` if it is there, and those of its ServiceAccount's volume with the
//! namespace it names, if it has one; then exits 0.

/// Where Kubernetes mounts a pod's ServiceAccount token, CA and namespace.
const ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Prints the names of the files in `dir`, sorted, if it can be read.
fn list(dir: &str) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        println!("{dir}: {names:?}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("hello from a wasm pod: args {args:?}");
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("GREETING") || k == "PWD")
        .collect();
    vars.sort();
    for (key, value) in vars {
        println!("{key}={value}");
    }
    list("/data");
    list(ACCOUNT);
    if let Ok(namespace) = std::fs::read_to_string(format!("{ACCOUNT}/namespace")) {
        println!("namespace: {namespace}");
    }
    eprintln!("a line on stderr");
}
