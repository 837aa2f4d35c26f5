//! Components on their way to a registry, as `push`, `run` and `plugin load`
//! send them: a progress bar on a terminal, and a file pushed to the cluster's
//! built-in registry under its digest.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use wasmkube_oci::{Credentials, same_registry};

use super::print::mebibytes;
use crate::cluster::Cluster;
use crate::exit::Failure;

/// Pushes `bytes` (read from `file`) to `reference`, with a progress bar on a
/// terminal: through the client of `cluster` (with its identity) when the
/// reference names that cluster's built-in registry, else straight to the
/// registry with `credentials`.
pub async fn upload(
    bytes: Vec<u8>,
    reference: &str,
    cluster: Option<&Cluster>,
    credentials: Option<&Credentials>,
    file: &Path,
) -> Result<()> {
    let total = bytes.len() as u64;
    let bar = Progress::new(file.display().to_string(), total);
    let shown = bar.clone();
    let show = move |sent| shown.show(sent);
    let pushed = match cluster.filter(|c| same_registry(reference, &c.server)) {
        Some(cluster) => wasmkube_oci::push_via(&cluster.client, bytes, reference, show).await,
        None => wasmkube_oci::push(bytes, reference, credentials, show).await,
    };
    pushed.map_err(|e| Failure::Refused.because(e))?;
    bar.show(total);
    bar.finish();
    Ok(())
}

/// The image pods will pull for `source`: a file is pushed to the built-in
/// registry under `repository`, tagged by its digest (so a new file makes a
/// new rollout); a reference is taken as it is.
pub async fn image_for(cluster: &Cluster, source: &str, repository: &str) -> Result<String> {
    let file = Path::new(source);
    if !file.is_file() {
        if source.ends_with(".wasm") {
            return Err(Failure::Usage.because(format!("{source}: no such file")));
        }
        return Ok(source.to_owned());
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {source}"))?;
    let digest = wasmkube_oci::digest(&bytes);
    let hex = &digest["sha256:".len()..];
    let reference = format!("{}/{repository}:sha256-{}", cluster.server, &hex[..16]);
    upload(bytes, &reference, Some(cluster), None, file).await?;
    Ok(reference)
}

/// The file's name without `.wasm`, as an image name.
pub fn stem(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    stem.replace('_', "-")
}

/// A progress bar on standard error, drawn only on a terminal.
#[derive(Clone, Debug)]
struct Progress {
    label: String,
    total: u64,
    tty: bool,
    started: Instant,
}

impl Progress {
    /// A bar for `total` bytes of `label`.
    fn new(label: String, total: u64) -> Progress {
        Progress {
            label,
            total,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
        }
    }

    /// Draws the bar with `sent` bytes sent.
    fn show(&self, sent: u64) {
        if !self.tty {
            return;
        }
        const WIDTH: u64 = 30;
        let filled = (sent * WIDTH).checked_div(self.total).unwrap_or(WIDTH);
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '-' })
            .collect();
        let _ = write!(
            std::io::stderr(),
            "\r{} [{bar}] {} / {} {:.1}s",
            self.label,
            mebibytes(sent),
            mebibytes(self.total),
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Ends the bar's line.
    fn finish(&self) {
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}
