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

use crate::shipped::Shipped;

/// The name of the artefact of the component whose SHA-256 in hex is
/// `sha256`, compiled by `engine`.
pub(crate) fn artefact_name(engine: &Engine, sha256: &str) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{sha256}-{:016x}.cwasm", hasher.finish())
}

/// The component whose SHA-256 in hex is `sha256`, from its artefact in
/// `cache_dir` when this engine wrote one, else from one `shipped` in the
/// executable, else compiled now from what `bytes` gives (asked for only
/// then) and its artefact written. Either way the component's code is
/// mapped from its artefact: pages the kernel can share and drop.
pub(crate) fn compile<'a>(
    engine: &Engine,
    sha256: &str,
    bytes: impl FnOnce() -> Result<Cow<'a, [u8]>, String>,
    cache_dir: &Path,
    shipped: &Shipped,
) -> Result<Component, String> {
    let name = artefact_name(engine, sha256);
    let artefact = cache_dir.join(&name);
    let loaded = || match load(engine, &artefact) {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(artefact = %artefact.display(), error = %e, "recompiling");
            None
        }
    };
    if artefact.exists()
        && let Some(component) = loaded()
    {
        return Ok(component);
    }
    if keep(&artefact, |partial| match shipped.copy_to(&name, partial) {
        Ok(true) => Ok(()),
        Ok(false) => Err(std::io::ErrorKind::NotFound.into()),
        Err(e) => Err(e),
    }) {
        tracing::debug!(artefact = %name, "shipped with the program");
        if let Some(component) = loaded() {
            return Ok(component);
        }
    }
    tracing::info!(component = %sha256, "compiling");
    let compiled = engine
        .precompile_component(&bytes()?)
        .map_err(|e| format!("{e:#}"))?;
    release_free_memory();
    if keep(&artefact, |partial| std::fs::write(partial, &compiled))
        && let Ok(component) = load(engine, &artefact)
    {
        return Ok(component);
    }
    // SAFETY: `compiled` was made by `precompile_component` of this engine
    // just now.
    #[allow(unsafe_code)]
    unsafe { Component::deserialize(engine, &compiled) }.map_err(|e| format!("{e:#}"))
}

/// The component of `artefact`, which this engine wrote.
fn load(engine: &Engine, artefact: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the artefact was written by `precompile_component` of an engine
    // with the same compatibility hash (it is in the file name) into our own
    // cache dir, through a rename, so it is whole and ours; or copied there
    // from the executable, whose artefacts wasmtime checks against this
    // engine as it loads them.
    #[allow(unsafe_code)]
    unsafe {
        Component::deserialize_file(engine, artefact)
    }
}

/// Writes `artefact` through `write` to a partial file then a rename;
/// whether it is there. Every compilation, of this process or another
/// sharing the cache, writes its own partial file; the last rename wins
/// with identical bytes. An artefact only saves the next compilation:
/// failing to keep one is not a failure to load.
fn keep(artefact: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) -> bool {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let partial = artefact.with_extension(format!(
        "partial-{}-{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    match write(&partial).and_then(|()| std::fs::rename(&partial, artefact)) {
        Ok(()) => true,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(artefact = %artefact.display(), error = %e, "compiled component not kept");
            }
            false
        }
    }
}

/// Gives the kernel back the heap a compilation freed: glibc keeps it in
/// its per-thread arenas otherwise (tens of MB after the compiler's threads
/// are done), where an idle node pays for it.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only hands free pages back; it is thread-safe.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
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
        let none = Shipped::default();
        std::thread::scope(|s| {
            let loads: Vec<_> = (0..8)
                .map(|_| s.spawn(|| compile(&engine, EMPTY_SHA256, empty, cache.path(), &none)))
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
        compile(&engine, EMPTY_SHA256, unread, cache.path(), &none).unwrap();
    }
}
