//! What the benchmarks share: running operations from concurrent clients and
//! summing up their latencies.

use std::time::{Duration, Instant};

/// Throughput and latency of one run.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    /// Operations per second over the whole run.
    pub per_sec: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

/// Runs `op(i)` for every `i` in `0..total`, split over `clients` concurrent tasks.
pub async fn measure<F, Fut>(clients: usize, total: usize, op: F) -> Figures
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (c..total).step_by(clients) {
                    let t = Instant::now();
                    op(i).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    figures(latencies, started.elapsed())
}

/// Figures of `latencies` from a run that took `elapsed`.
pub fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Figures {
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
    }
}

/// A duration in milliseconds, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}
