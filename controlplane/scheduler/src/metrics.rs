//! The scheduler's metrics, in the Prometheus text format: cycles by profile
//! and result, and the failures and load state of each plugin.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// The counters, shared between the scheduling thread and whoever serves them.
#[derive(Clone, Debug, Default)]
pub struct Metrics(Arc<Mutex<Counters>>);

#[derive(Debug, Default)]
struct Counters {
    /// Cycles, by profile and result (`scheduled`, `unschedulable`, `error`).
    attempts: BTreeMap<(String, &'static str), u64>,
    /// Failed calls, by plugin and profile.
    failures: BTreeMap<(String, String), u64>,
    /// Declared plugins, and whether each is loaded.
    loaded: BTreeMap<String, bool>,
}

/// Prometheus' escaping of a label value.
fn label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// A cycle of `profile` ended with `result`.
    pub(crate) fn attempt(&self, profile: &str, result: &'static str) {
        self.with(|c| *c.attempts.entry((profile.to_owned(), result)).or_default() += 1);
    }

    /// `count` more calls of `plugin` in `profile` failed.
    pub(crate) fn failed(&self, plugin: &str, profile: &str, count: u64) {
        self.with(|c| {
            *c.failures
                .entry((plugin.to_owned(), profile.to_owned()))
                .or_default() += count;
        });
    }

    /// The declared `plugin` is loaded or not; `None`: no longer declared.
    pub(crate) fn loaded(&self, plugin: &str, loaded: Option<bool>) {
        self.with(|c| match loaded {
            Some(loaded) => {
                c.loaded.insert(plugin.to_owned(), loaded);
            }
            None => {
                c.loaded.remove(plugin);
            }
        });
    }

    /// The metrics, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|c| {
            out.push_str(
                "# HELP scheduler_schedule_attempts_total Scheduling cycles, by profile and result.\n\
                 # TYPE scheduler_schedule_attempts_total counter\n",
            );
            for ((profile, result), n) in &c.attempts {
                let _ = writeln!(
                    out,
                    "scheduler_schedule_attempts_total{{profile=\"{}\",result=\"{result}\"}} {n}",
                    label(profile)
                );
            }
            out.push_str(
                "# HELP wasmkube_scheduler_plugin_failures_total Plugin calls that failed (trapped, ran out of time or memory, or found the plugin not loaded).\n\
                 # TYPE wasmkube_scheduler_plugin_failures_total counter\n",
            );
            for ((plugin, profile), n) in &c.failures {
                let _ = writeln!(
                    out,
                    "wasmkube_scheduler_plugin_failures_total{{plugin=\"{}\",profile=\"{}\"}} {n}",
                    label(plugin),
                    label(profile)
                );
            }
            out.push_str(
                "# HELP wasmkube_scheduler_plugin_loaded Whether a plugin declared by a Plugin object is loaded.\n\
                 # TYPE wasmkube_scheduler_plugin_loaded gauge\n",
            );
            for (plugin, loaded) in &c.loaded {
                let _ = writeln!(
                    out,
                    "wasmkube_scheduler_plugin_loaded{{plugin=\"{}\"}} {}",
                    label(plugin),
                    u8::from(*loaded)
                );
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_text() {
        let metrics = Metrics::default();
        metrics.attempt("default-scheduler", "scheduled");
        metrics.attempt("default-scheduler", "scheduled");
        metrics.attempt("edge", "error");
        metrics.failed("hungry", "edge", 2);
        metrics.failed("hungry", "edge", 1);
        metrics.loaded("hungry", Some(true));
        metrics.loaded("old\"wit", Some(false));
        metrics.loaded("gone", Some(true));
        metrics.loaded("gone", None);
        let text = metrics.render();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                r#"scheduler_schedule_attempts_total{profile="default-scheduler",result="scheduled"} 2"#,
                r#"scheduler_schedule_attempts_total{profile="edge",result="error"} 1"#,
                r#"wasmkube_scheduler_plugin_failures_total{plugin="hungry",profile="edge"} 3"#,
                r#"wasmkube_scheduler_plugin_loaded{plugin="hungry"} 1"#,
                r#"wasmkube_scheduler_plugin_loaded{plugin="old\"wit"} 0"#,
            ]
        );
    }
}
