//! The local image store: each component kept once, by the SHA-256 digest of its
//! bytes, and tags (`hello:1`) naming digests. Blobs and tags are written to a
//! temporary file and renamed into place, so a reader never sees half of one and
//! an import can run while an agent reads.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The bytes a component starts with: the Wasm magic, then the component layer.
const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// Why an image cannot be imported or found.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference is not `name[:tag]` with a usable name.
    #[error("invalid image reference {0:?}: expected NAME[:TAG]")]
    Reference(String),
    /// The file is not a Wasm component.
    #[error("{0} is not a WebAssembly component (a core module or another file)")]
    NotAComponent(String),
    /// The file to import could not be read.
    #[error("cannot read {0}")]
    Read(String),
    /// The store could not be read or written.
    #[error("image store: {0}")]
    Io(#[from] io::Error),
}

/// A stored component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Where its bytes are.
    pub path: PathBuf,
}

/// The images of one node, under `<data dir>/images`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    blobs: PathBuf,
    tags: PathBuf,
}

/// `name:tag`, with `latest` when no tag is given.
pub fn normalize(reference: &str) -> Result<String, ImageError> {
    let bad = || ImageError::Reference(reference.to_owned());
    let (name, tag) = match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (reference, "latest"),
    };
    // A name may carry a registry's port (`host:5000/app`); a tag is one word.
    let valid = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b) || extra.contains(&b))
            && !s
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
    };
    if !valid(name, b"/:") || !valid(tag, b"") {
        return Err(bad());
    }
    Ok(format!("{name}:{tag}"))
}

/// Writes `bytes` to `path` through a temporary file beside it.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("store paths have a parent");
    let mut file = tempfile_in(dir)?;
    file.1.write_all(bytes)?;
    file.1.sync_all()?;
    fs::rename(&file.0, path)
}

/// A new file in `dir` with a name of its own.
fn tempfile_in(dir: &Path) -> io::Result<(PathBuf, fs::File)> {
    for attempt in 0..100u32 {
        let path = dir.join(format!(".tmp-{}-{attempt}", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free temporary file name"))
}

impl ImageStore {
    /// The store of the node whose data dir is `data_dir`, made if missing.
    pub fn open(data_dir: &Path) -> io::Result<ImageStore> {
        let root = data_dir.join("images");
        let store = ImageStore {
            blobs: root.join("blobs").join("sha256"),
            tags: root.join("tags"),
        };
        fs::create_dir_all(&store.blobs)?;
        fs::create_dir_all(&store.tags)?;
        Ok(store)
    }

    fn tag_path(&self, reference: &str) -> PathBuf {
        self.tags
            .join(reference.replace('%', "%25").replace('/', "%2F"))
    }

    /// Puts the component in `file` in the store under `reference`; its digest.
    pub fn import(&self, file: &Path, reference: &str) -> Result<Image, ImageError> {
        let bytes =
            fs::read(file).map_err(|e| ImageError::Read(format!("{}: {e}", file.display())))?;
        self.add(&bytes, reference, &file.display().to_string())
    }

    /// Stores the component `bytes` (from `source`, for errors) and tags it
    /// `reference`.
    pub fn add(&self, bytes: &[u8], reference: &str, source: &str) -> Result<Image, ImageError> {
        let reference = normalize(reference)?;
        if !bytes.starts_with(&COMPONENT_PREAMBLE) {
            return Err(ImageError::NotAComponent(source.to_owned()));
        }
        let digest = crate::digest(bytes);
        let path = self.blobs.join(&digest["sha256:".len()..]);
        if !path.exists() {
            write_atomically(&path, bytes)?;
        }
        write_atomically(&self.tag_path(&reference), digest.as_bytes())?;
        Ok(Image { digest, path })
    }

    /// Every tagged image: its reference (`name:tag`), digest and size, by
    /// reference.
    pub fn list(&self) -> Result<Vec<(String, Image, u64)>, ImageError> {
        let mut images = Vec::new();
        for entry in fs::read_dir(&self.tags)? {
            let file = entry?.file_name().to_string_lossy().into_owned();
            if file.starts_with(".tmp-") {
                continue;
            }
            let reference = file.replace("%2F", "/").replace("%25", "%");
            if let Some(image) = self.resolve(&reference)? {
                let size = fs::metadata(&image.path)?.len();
                images.push((reference, image, size));
            }
        }
        images.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(images)
    }

    /// Removes the tag `reference`, and its component once no other tag
    /// names it; the image it named, if any.
    pub fn remove(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        let Some(image) = self.resolve(reference)? else {
            return Ok(None);
        };
        fs::remove_file(self.tag_path(&normalize(reference)?))?;
        if !self.list()?.iter().any(|(_, other, _)| *other == image) {
            fs::remove_file(&image.path)?;
        }
        Ok(Some(image))
    }

    /// The image `reference` names, if the store has it.
    pub fn resolve(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        let reference = normalize(reference)?;
        let digest = match fs::read_to_string(self.tag_path(&reference)) {
            Ok(digest) => digest,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let hex = digest.trim().strip_prefix("sha256:").unwrap_or("");
        let path = self.blobs.join(hex);
        Ok(path.exists().then(|| Image {
            digest: digest.trim().to_owned(),
            path,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_name_and_tag() {
        assert_eq!(normalize("hello").unwrap(), "hello:latest");
        assert_eq!(normalize("edge/hello:1.0").unwrap(), "edge/hello:1.0");
        assert_eq!(
            normalize("registry.local:5000/hello").unwrap(),
            "registry.local:5000/hello:latest"
        );
        for bad in ["", ":1", "a/../b:1", "a b:1", "hello:"] {
            assert!(normalize(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn import_stores_once_and_resolves_by_tag() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let file = dir.path().join("c.wasm");
        fs::write(&file, [&COMPONENT_PREAMBLE[..], b"rest"].concat()).unwrap();
        let first = store.import(&file, "edge/hello:1").unwrap();
        let second = store.import(&file, "edge/hello:2").unwrap();
        assert_eq!(first, second);
        assert!(first.digest.starts_with("sha256:"));
        assert_eq!(store.resolve("edge/hello:2").unwrap(), Some(first.clone()));
        assert_eq!(store.resolve("edge/hello:3").unwrap(), None);

        let listed: Vec<String> = store.list().unwrap().into_iter().map(|i| i.0).collect();
        assert_eq!(listed, ["edge/hello:1", "edge/hello:2"]);
        assert_eq!(store.remove("edge/hello:1").unwrap(), Some(first.clone()));
        assert!(first.path.exists(), "still named by edge/hello:2");
        assert_eq!(store.remove("edge/hello:1").unwrap(), None);
        store.remove("edge/hello:2").unwrap();
        assert!(!first.path.exists());
        assert!(store.list().unwrap().is_empty());

        let module = dir.path().join("m.wasm");
        fs::write(&module, [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]).unwrap();
        assert!(matches!(
            store.import(&module, "m:1"),
            Err(ImageError::NotAComponent(_))
        ));
    }
}
