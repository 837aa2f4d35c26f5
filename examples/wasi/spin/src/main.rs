//! Spins forever without a system call: only preemption can stop it.

fn main() {
    println!("spinning");
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
