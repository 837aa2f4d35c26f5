//! Prints its arguments, `PWD` and the variables whose names start with `GREETING`, and the
//! files of `/data` if it is there; then exits 0.

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
    if let Ok(entries) = std::fs::read_dir("/data") {
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        println!("/data: {names:?}");
    }
    eprintln!("a line on stderr");
}
