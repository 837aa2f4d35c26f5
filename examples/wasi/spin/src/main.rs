//! Spins forever without a system call but a line every 2^24 turns ("lap N"),
//! which shows how much CPU it got: only preemption can stop it.

fn main() {
    println!("spinning");
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
        if n % (1 << 24) == 0 {
            println!("lap {}", n >> 24);
        }
    }
}
