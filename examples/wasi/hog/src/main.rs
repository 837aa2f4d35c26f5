//! Takes what it can until refused: by default memory, 1 MiB at a time,
//! touching every page; with `files PATH`, open files, opening `PATH` again
//! and again and keeping every one.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, path] = args.as_slice()
        && mode == "files"
    {
        let mut held = Vec::new();
        loop {
            match std::fs::File::open(path) {
                Ok(file) => held.push(file),
                Err(e) => {
                    println!("refused after {} open files: {e}", held.len());
                    std::process::exit(3);
                }
            }
            if held.len() % 256 == 0 {
                println!("holding {} open files", held.len());
            }
        }
    }
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1u8; 1 << 20]);
        if held.len() % 64 == 0 {
            println!("holding {} MiB", held.len());
        }
    }
}
