//! Components compiled once: the artefact of a compilation is kept on disk as
//! `<sha256 of the component>-<engine compatibility hash>.cwasm`, so a process
//! loads in a fraction of a millisecond what took seconds to compile, and a new
//! wasmtime never loads an old artefact.

use std::borrow::Cow;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

/// The component whose SHA-256 in hex is `sha256`, from its artefact in
/// `cache_dir` when this engine wrote one, else compiled now from what
/// `bytes` gives (asked for only then) and its artefact written.
pub(crate) fn compile<'a>(
    engine: &Engine,
    sha256: &str,
    bytes: impl FnOnce() -> Result<Cow<'a, [u8]>, String>,
    cache_dir: &Path,
) -> Result<Component, String> {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let artefact = cache_dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
    if artefact.exists() {
        // SAFETY: the artefact was written by `Component::serialize` of an engine
        // with the same compatibility hash (it is in the file name), into our own
        // cache dir, through a rename, so it is whole and ours.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, &artefact) } {
            Ok(component) => return Ok(component),
            Err(e) => tracing::warn!(artefact = %artefact.display(), error = %e, "recompiling"),
        }
    }
    let component = Component::new(engine, bytes()?).map_err(|e| format!("{e:#}"))?;
    let compiled = component.serialize().map_err(|e| format!("{e:#}"))?;
    // Every compilation, of this process or another sharing the cache, writes
    // its own partial file; the last rename wins with identical bytes.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let partial = artefact.with_extension(format!(
        "partial-{}-{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    // The artefact only saves the next compilation: failing to keep it is
    // not a failure to load.
    if let Err(e) =
        std::fs::write(&partial, &compiled).and_then(|()| std::fs::rename(&partial, &artefact))
    {
        let _ = std::fs::remove_file(&partial);
        tracing::warn!(artefact = %artefact.display(), error = %e, "compiled component not kept");
    }
    Ok(component)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The empty component, `(component)`, in binary.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";
    /// Its SHA-256.
    const EMPTY_SHA256: &str = "24eaf3439a60c96764c4f2c92a0a81b52bd4fe5d5b91f090184a0f6486b1bf29";

    #[test]
    fn concurrent_compilations_of_one_component_all_load_and_keep_one_artefact() {
        let cache = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let empty = || Ok(Cow::Borrowed(EMPTY));
        std::thread::scope(|s| {
            let loads: Vec<_> = (0..8)
                .map(|_| s.spawn(|| compile(&engine, EMPTY_SHA256, empty, cache.path())))
                .collect();
            for load in loads {
                load.join().unwrap().unwrap();
            }
        });
        let files: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].ends_with(".cwasm"), "{files:?}");
        // Found compiled: its bytes are not asked for.
        let unread = || Err("the bytes of a compiled component were read".to_owned());
        compile(&engine, EMPTY_SHA256, unread, cache.path()).unwrap();
    }
}
