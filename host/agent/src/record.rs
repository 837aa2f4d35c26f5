//! The agent's local record of its pods: each pod as last given to it, with the
//! status the agent last gave it, in `<pods dir>/<uid>/pod.json`. The record
//! lets an agent started again take its pods back, and one cut off from the API
//! server keep running them: nothing the agent does depends on the network.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

const FILE: &str = "pod.json";

/// The directory of the pod with this UID.
pub(crate) fn pod_dir(pods_dir: &Path, uid: &str) -> PathBuf {
    pods_dir.join(uid)
}

/// Writes the pod's record (through a rename, so it is never seen half-written).
pub(crate) fn save(pods_dir: &Path, pod: &Pod) -> std::io::Result<()> {
    let dir = pod_dir(pods_dir, pod.metadata.uid.as_deref().unwrap_or_default());
    std::fs::create_dir_all(&dir)?;
    let partial = dir.join("pod.json.partial");
    std::fs::write(&partial, serde_json::to_vec(pod)?)?;
    std::fs::rename(&partial, dir.join(FILE))
}

/// The pods on record, in no order; unreadable records are skipped with a
/// warning.
pub(crate) fn load_all(pods_dir: &Path) -> Vec<Pod> {
    let Ok(entries) = std::fs::read_dir(pods_dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path().join(FILE);
            let bytes = std::fs::read(&path).ok()?;
            match serde_json::from_slice(&bytes) {
                Ok(pod) => Some(pod),
                Err(e) => {
                    tracing::warn!(record = %path.display(), error = %e, "unreadable pod record");
                    None
                }
            }
        })
        .collect()
}

/// Forgets the pod: its record, logs and volumes.
pub(crate) fn remove(pods_dir: &Path, uid: &str) {
    let dir = pod_dir(pods_dir, uid);
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "removing a pod's files");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
            "status": {"phase": "Running"},
        }))
        .unwrap();
        save(dir.path(), &pod).unwrap();
        std::fs::create_dir_all(dir.path().join("broken")).unwrap();
        std::fs::write(dir.path().join("broken").join(FILE), b"{").unwrap();
        assert_eq!(load_all(dir.path()), vec![pod]);
        remove(dir.path(), "u-1");
        remove(dir.path(), "u-1");
        assert!(!pod_dir(dir.path(), "u-1").exists());
    }
}
