//! wrk (Debian's `apt-get install wrk`) driving an HTTP server, its report
//! read back.

use std::process::Command;

/// What wrk measured: requests per second, and the median and 99th
/// percentile latency in µs.
pub struct Report {
    pub per_sec: f64,
    pub p50: f64,
    pub p99: f64,
}

/// Runs `command` (wrk, or something that runs it) with `settings`,
/// `--latency` and `url`; what it reports.
pub fn run(mut command: Command, settings: &[&str], url: &str) -> Report {
    let out = command
        .args(settings)
        .arg("--latency")
        .arg(url)
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let per_sec = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in {text}"));
    let micros = |p: &str| {
        let value = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .unwrap_or_else(|| panic!("no {p} in {text}"))
            .trim();
        let unit = value
            .find(|c: char| c.is_alphabetic())
            .unwrap_or(value.len());
        let number: f64 = value[..unit].parse().unwrap_or(f64::NAN);
        number
            * match &value[unit..] {
                "us" => 1.0,
                "ms" => 1e3,
                "s" => 1e6,
                other => panic!("wrk gave a latency in {other:?}"),
            }
    };
    Report {
        per_sec,
        p50: micros("50%"),
        p99: micros("99%"),
    }
}
