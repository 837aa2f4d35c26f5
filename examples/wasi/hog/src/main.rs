//! Allocates 1 MiB at a time, touching every page, until memory runs out.

fn main() {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1u8; 1 << 20]);
        if held.len() % 64 == 0 {
            println!("holding {} MiB", held.len());
        }
    }
}
