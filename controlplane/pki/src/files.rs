//! Writing keys and certificates: whole files or none, with their modes set
//! before anything is in them.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// Writes a private file (a key, a kubeconfig with one): mode 0600, through a
/// temporary file renamed over `path`, so a reader sees the old contents or
/// the new ones and never a part. Missing parent directories are created with
/// mode 0700; existing ones are left as they are.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, bytes, 0o600)
}

/// Writes a file anyone may read (a certificate) as [`write_private`] does,
/// with mode 0644.
pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, bytes, 0o644)
}

/// Makes sure `dir` exists and only its owner may enter it (mode 0700),
/// creating it and its missing parents (0700 too) or tightening its mode.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    let failed = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(failed)?;
    let mode = fs::metadata(dir).map_err(failed)?.permissions().mode();
    if mode & 0o777 != 0o700 {
        fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(failed)?;
    }
    Ok(())
}

/// Reads a whole file as text.
pub(crate) fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let name = path.file_name().ok_or_else(|| {
        failed(path)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names no file",
        ))
    })?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(failed(parent))?;
    let mut temporary = name.to_os_string();
    temporary.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let temporary: PathBuf = parent.join(temporary);
    let written = write_new(&temporary, bytes, mode)
        .map_err(failed(&temporary))
        .and_then(|()| fs::rename(&temporary, path).map_err(failed(path)));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
        return written;
    }
    // The rename is durable once the directory is.
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(failed(parent))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    // A file left by a crash may have other modes: start afresh.
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // The umask may have taken bits away from 0644.
    file.set_permissions(Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_are_0600_in_new_0700_directories() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a/b/key.pem");
        write_private(&path, b"one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&root.path().join("a/b")), 0o700);
        // Rewriting replaces the file and leaves nothing beside it.
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(root.path().join("a/b")).unwrap().count(), 1);
    }

    #[test]
    fn a_loose_file_is_replaced_by_a_private_one() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("key.pem");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(mode(&path), 0o600);
        write_public(&root.path().join("ca.crt"), b"cert").unwrap();
        assert_eq!(mode(&root.path().join("ca.crt")), 0o644);
    }

    #[test]
    fn existing_directories_are_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("pki");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn errors_name_the_path() {
        let root = tempfile::tempdir().unwrap();
        let blocker = root.path().join("file");
        fs::write(&blocker, b"").unwrap();
        let err = write_private(&blocker.join("key.pem"), b"x").unwrap_err();
        assert!(err.to_string().contains("file"), "{err}");
    }
}
