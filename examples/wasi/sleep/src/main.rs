//! Sleeps, costing nothing while it does: `sleep [SECONDS [EVERY]]` prints
//! `sleeping`, then waits SECONDS (forever without it, or with `forever`),
//! printing `tick N` every EVERY seconds when given; then exits 0.

use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: Option<f64> = args.next().and_then(|s| s.parse().ok());
    let every: Option<f64> = args.next().and_then(|s| s.parse().ok());
    println!("sleeping");
    let end = seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let step = every.map_or(Duration::from_secs(3600), Duration::from_secs_f64);
    let mut tick = 0u64;
    loop {
        let left = end.map(|end| end.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return;
        }
        let nap = left.map_or(step, |left| left.min(step));
        std::thread::sleep(nap);
        if every.is_some() && nap == step {
            tick += 1;
            println!("tick {tick}");
        }
    }
}
