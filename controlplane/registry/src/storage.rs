//! The registry's files, and the names, tags and digests that may become
//! paths among them.
//!
//! Under the registry's directory:
//!
//! - `blobs/sha256/<hex>`: every blob, manifests included, once, by digest;
//! - `uploads/<uuid>`: the bytes of an upload in progress;
//! - `repositories/<name>/_manifests/sha256/<hex>`: a manifest of the
//!   repository, holding its media type (the blob holds its bytes);
//! - `repositories/<name>/_tags/<tag>`: a tag, holding the digest it points at.
//!
//! The leading `_` keeps a repository's own entries apart from the names of
//! the repositories nested in it (`a/_tags` is not a repository name, while
//! `a/tags` is). Only [`Name`], [`Tag`], [`Digest`] and upload ids, all checked
//! against their grammars, ever become path components, so no request reaches
//! outside the directory.
//!
//! A finished blob, a manifest link and a tag are written durably before the
//! call returns: to a temporary file beside the target, synced, renamed over
//! it, and the directory synced. A crash loses nothing acknowledged and never
//! leaves half a file under a final name. The calls here block; the HTTP layer
//! runs them with `spawn_blocking`, except the streaming of an upload's body.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::BodyDataStream;
use axum::http::HeaderValue;
use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::Error;

/// The longest repository name accepted, as most clients limit it.
const MAX_NAME: usize = 255;

/// An upload untouched for this long may be removed when another starts.
const STALE_UPLOAD: Duration = Duration::from_secs(60 * 60);

/// The media type of a manifest pushed with neither a `Content-Type` nor a
/// `mediaType`.
const DEFAULT_MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A repository name: path components of lower-case letters and digits,
/// joined by `.`, `_`, `__` or dashes, separated by `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Name(String);

impl Name {
    /// Checks `name` against the distribution spec's grammar.
    pub(crate) fn parse(name: &str) -> Result<Name, Error> {
        if name.len() <= MAX_NAME && name.split('/').all(valid_component) {
            Ok(Name(name.to_owned()))
        } else {
            Err(Error::NameInvalid(name.to_owned()))
        }
    }

    /// The name as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, the grammar of one component.
fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    // Skips a run of letters and digits; false if there is none.
    let run = |at: &mut usize| {
        let start = *at;
        while *at < bytes.len() && alphanumeric(bytes[*at]) {
            *at += 1;
        }
        *at > start
    };
    let mut at = 0;
    if !run(&mut at) {
        return false;
    }
    while at < bytes.len() {
        match bytes[at] {
            b'.' => at += 1,
            b'_' => {
                at += 1;
                if bytes.get(at) == Some(&b'_') {
                    at += 1;
                }
            }
            b'-' => {
                while bytes.get(at) == Some(&b'-') {
                    at += 1;
                }
            }
            _ => return false,
        }
        if !run(&mut at) {
            return false;
        }
    }
    true
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tag(String);

impl Tag {
    /// Checks `tag` against the distribution spec's grammar.
    pub(crate) fn parse(tag: &str) -> Result<Tag, Error> {
        let mut bytes = tag.bytes();
        let first = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let rest = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if first && rest && tag.len() <= 128 {
            Ok(Tag(tag.to_owned()))
        } else {
            Err(Error::TagInvalid(tag.to_owned()))
        }
    }
}

/// A SHA-256 digest, the only algorithm this registry keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Digest {
    /// 64 lower-case hex digits.
    hex: String,
}

impl Digest {
    /// Parses `algorithm:encoded`; a well-formed digest of another algorithm
    /// is unsupported, anything else invalid.
    pub(crate) fn parse(digest: &str) -> Result<Digest, Error> {
        let invalid = || Error::DigestInvalid(format!("not a digest: {digest:?}"));
        let (algorithm, encoded) = digest.split_once(':').ok_or_else(invalid)?;
        if algorithm == "sha256" {
            let hex = encoded.len() == 64
                && encoded
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            return if hex {
                Ok(Digest {
                    hex: encoded.to_owned(),
                })
            } else {
                Err(invalid())
            };
        }
        // algorithm: [a-z0-9]+([+._-][a-z0-9]+)*, encoded: [a-zA-Z0-9=_-]+
        let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        let encoded_ok = !encoded.is_empty()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
        if algorithm_ok && encoded_ok {
            Err(Error::Unsupported(format!(
                "digest algorithm {algorithm:?}: only sha256 is kept"
            )))
        } else {
            Err(invalid())
        }
    }

    /// The digest of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> Digest {
        Digest::finish(Sha256::new_with_prefix(bytes))
    }

    /// The digest of what `hasher` was fed.
    fn finish(hasher: Sha256) -> Digest {
        Digest {
            hex: format!("{:x}", hasher.finalize()),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// What a manifest is asked for by: a tag or a digest.
#[derive(Clone, Debug)]
pub(crate) enum Reference {
    /// A tag of the repository.
    Tag(Tag),
    /// A manifest's digest.
    Digest(Digest),
}

impl Reference {
    /// A digest if it has a `:`, else a tag.
    pub(crate) fn parse(reference: &str) -> Result<Reference, Error> {
        if reference.contains(':') {
            Digest::parse(reference).map(Reference::Digest)
        } else {
            Tag::parse(reference).map(Reference::Tag)
        }
    }
}

/// An upload in progress: how much it holds and, while it was fed in order
/// in this process, the hash of that much.
pub(crate) struct Upload {
    /// Bytes received.
    pub(crate) size: u64,
    /// The hash of those bytes; `None` when they must be read again.
    hasher: Option<Sha256>,
}

/// The registry's directory and the uploads in progress.
#[derive(Debug)]
pub(crate) struct Storage {
    dir: PathBuf,
    /// Uploads seen by this process. Each is locked while it is written, so
    /// two requests never append to one upload at once. The file under
    /// `uploads/` is the truth; an entry is only a cache of its state.
    uploads: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<Upload>>>>,
    /// The most bytes an upload may hold.
    max_blob: u64,
}

impl Upload {
    /// The hash of what the upload holds, if it was kept; the upload then
    /// has none until it is hashed again.
    pub(crate) fn take_hasher(&mut self) -> Option<Sha256> {
        self.hasher.take()
    }
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload").field("size", &self.size).finish()
    }
}

impl Storage {
    /// The storage under `dir`, made if missing.
    pub(crate) fn open(dir: &Path, max_blob: u64) -> io::Result<Storage> {
        let dir = std::path::absolute(dir)?;
        let storage = Storage {
            dir,
            uploads: Mutex::default(),
            max_blob,
        };
        make_dir(&storage.blobs_dir())?;
        make_dir(&storage.uploads_dir())?;
        make_dir(&storage.repositories_dir())?;
        Ok(storage)
    }

    /// The directory it is kept in.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs").join("sha256")
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(&digest.hex)
    }

    fn uploads_dir(&self) -> PathBuf {
        self.dir.join("uploads")
    }

    fn upload_path(&self, id: Uuid) -> PathBuf {
        self.uploads_dir().join(id.hyphenated().to_string())
    }

    fn repositories_dir(&self) -> PathBuf {
        self.dir.join("repositories")
    }

    fn repository_dir(&self, name: &Name) -> PathBuf {
        let mut path = self.repositories_dir();
        path.extend(name.as_str().split('/'));
        path
    }

    fn manifests_dir(&self, name: &Name) -> PathBuf {
        self.repository_dir(name).join("_manifests").join("sha256")
    }

    fn link_path(&self, name: &Name, digest: &Digest) -> PathBuf {
        self.manifests_dir(name).join(&digest.hex)
    }

    fn tags_dir(&self, name: &Name) -> PathBuf {
        self.repository_dir(name).join("_tags")
    }

    fn tag_path(&self, name: &Name, tag: &Tag) -> PathBuf {
        self.tags_dir(name).join(&tag.0)
    }

    // Blobs.

    /// Whether the blob is kept.
    pub(crate) fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a blob for reading, with its size.
    pub(crate) async fn open_blob(&self, digest: &Digest) -> Result<(tokio::fs::File, u64), Error> {
        let unknown = || Error::BlobUnknown(digest.to_string());
        let file = tokio::fs::File::open(self.blob_path(digest))
            .await
            .map_err(|e| not_found(e, unknown))?;
        let size = file.metadata().await?.len();
        Ok((file, size))
    }

    /// Removes a blob. Manifests that refer to it are left as they are.
    pub(crate) fn delete_blob(&self, digest: &Digest) -> Result<(), Error> {
        remove_durably(&self.blob_path(digest))
            .map_err(|e| not_found(e, || Error::BlobUnknown(digest.to_string())))
    }

    // Uploads.

    /// Starts an upload, first removing those untouched for an hour.
    pub(crate) fn new_upload(&self) -> Result<Uuid, Error> {
        self.remove_stale_uploads();
        let id = Uuid::new_v4();
        File::create_new(self.upload_path(id))?;
        Ok(id)
    }

    fn remove_stale_uploads(&self) {
        let Ok(entries) = fs::read_dir(self.uploads_dir()) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| now.duration_since(at).unwrap_or_default() > STALE_UPLOAD);
            let id = entry
                .file_name()
                .to_str()
                .and_then(|n| Uuid::parse_str(n).ok());
            let (true, Some(id)) = (stale, id) else {
                continue;
            };
            let mut uploads = self.uploads.lock().unwrap();
            // One being written right now is not stale, whatever its time.
            let busy = uploads.get(&id).is_some_and(|u| u.try_lock().is_err());
            if !busy {
                uploads.remove(&id);
                if fs::remove_file(entry.path()).is_ok() {
                    tracing::debug!(upload = %id, "removed a stale upload");
                }
            }
        }
    }

    /// The upload `id`, as this process knows it or as its file says.
    pub(crate) async fn upload(&self, id: Uuid) -> Result<Arc<tokio::sync::Mutex<Upload>>, Error> {
        if let Some(upload) = self.uploads.lock().unwrap().get(&id) {
            return Ok(upload.clone());
        }
        let size = tokio::fs::metadata(self.upload_path(id))
            .await
            .map_err(|e| not_found(e, || Error::BlobUploadUnknown))?
            .len();
        let upload = Upload {
            size,
            hasher: (size == 0).then(Sha256::new),
        };
        let mut uploads = self.uploads.lock().unwrap();
        Ok(uploads
            .entry(id)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(upload)))
            .clone())
    }

    fn forget_upload(&self, id: Uuid) {
        self.uploads.lock().unwrap().remove(&id);
    }

    /// Appends a request body to the upload, chunk by chunk as it arrives.
    /// What arrived before a broken body stays (the client may ask how much
    /// and go on from there).
    pub(crate) async fn append(
        &self,
        id: Uuid,
        upload: &mut Upload,
        mut body: BodyDataStream,
    ) -> Result<(), Error> {
        let path = self.upload_path(id);
        let mut file = match tokio::fs::OpenOptions::new().append(true).open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget_upload(id);
                return Err(Error::BlobUploadUnknown);
            }
            Err(e) => return Err(e.into()),
        };
        let mut broken = None;
        let mut too_large = false;
        let mut written = Ok(());
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            };
            if upload.size + chunk.len() as u64 > self.max_blob {
                too_large = true;
                break;
            }
            written = file.write_all(&chunk).await;
            if written.is_err() {
                break;
            }
            upload.size += chunk.len() as u64;
            if let Some(hasher) = &mut upload.hasher {
                hasher.update(&chunk);
            }
        }
        if let Err(e) = written.and(file.flush().await) {
            // How much reached the file is unknown: ask the file.
            upload.hasher = None;
            upload.size = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
            return Err(e.into());
        }
        match broken {
            Some(e) => Err(Error::BlobUploadInvalid(format!(
                "reading the request body: {e}"
            ))),
            None if too_large => Err(Error::BlobTooLarge(self.max_blob)),
            None => Ok(()),
        }
    }

    /// Completes an upload as the blob `expected`, if that is the digest of
    /// what it holds; otherwise discards it.
    pub(crate) fn commit_upload(
        &self,
        id: Uuid,
        hasher: Option<Sha256>,
        expected: &Digest,
    ) -> Result<(), Error> {
        let path = self.upload_path(id);
        let actual = match hasher {
            Some(hasher) => Digest::finish(hasher),
            None => hash_file(&path).map_err(|e| not_found(e, || Error::BlobUploadUnknown))?,
        };
        if actual != *expected {
            self.cancel_upload(id)?;
            return Err(Error::DigestInvalid(format!(
                "the upload's digest is {actual}, not {expected}"
            )));
        }
        let target = self.blob_path(expected);
        if target.is_file() {
            fs::remove_file(&path)?;
        } else {
            File::open(&path)?.sync_all()?;
            fs::rename(&path, &target)?;
            sync_dir(&self.blobs_dir())?;
        }
        self.forget_upload(id);
        Ok(())
    }

    /// Discards an upload.
    pub(crate) fn cancel_upload(&self, id: Uuid) -> Result<(), Error> {
        self.forget_upload(id);
        fs::remove_file(self.upload_path(id)).map_err(|e| not_found(e, || Error::BlobUploadUnknown))
    }

    // Manifests and tags.

    /// Whether the repository has had a manifest pushed.
    fn has_repository(&self, name: &Name) -> bool {
        self.repository_dir(name).join("_manifests").is_dir()
    }

    /// Keeps a manifest once everything it refers to is there: its bytes as a
    /// blob, a link from the repository with its media type, and the tag if
    /// it was pushed by one. The media type is `content_type`, else the
    /// body's `mediaType`.
    pub(crate) fn put_manifest(
        &self,
        name: &Name,
        reference: &Reference,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Digest, Error> {
        let digest = Digest::of(body);
        if let Reference::Digest(expected) = reference
            && *expected != digest
        {
            return Err(Error::DigestInvalid(format!(
                "the manifest's digest is {digest}, not {expected}"
            )));
        }
        let manifest: Value = serde_json::from_slice(body)
            .map_err(|e| Error::ManifestInvalid(format!("not JSON: {e}")))?;
        if !manifest.is_object() {
            return Err(Error::ManifestInvalid("not a JSON object".into()));
        }
        for blob in referenced(&manifest, &["config"], "layers")? {
            if !Digest::parse(blob).is_ok_and(|d| self.has_blob(&d)) {
                return Err(Error::ManifestBlobUnknown(blob.to_owned()));
            }
        }
        for child in referenced(&manifest, &[], "manifests")? {
            if !Digest::parse(child).is_ok_and(|d| self.link_path(name, &d).is_file()) {
                return Err(Error::ManifestBlobUnknown(child.to_owned()));
            }
        }
        let media_type = content_type
            .or_else(|| manifest.get("mediaType").and_then(Value::as_str))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or(DEFAULT_MANIFEST_TYPE);
        if HeaderValue::from_str(media_type).is_err() {
            return Err(Error::ManifestInvalid(format!(
                "media type {media_type:?} cannot be a Content-Type"
            )));
        }

        let blob = self.blob_path(&digest);
        if !blob.is_file() {
            write_durably(&blob, body)?;
        }
        write_durably(&self.link_path(name, &digest), media_type.as_bytes())?;
        if let Reference::Tag(tag) = reference {
            write_durably(&self.tag_path(name, tag), digest.to_string().as_bytes())?;
        }
        Ok(digest)
    }

    /// A manifest's digest, media type and bytes.
    pub(crate) fn get_manifest(
        &self,
        name: &Name,
        reference: &Reference,
    ) -> Result<(Digest, String, Vec<u8>), Error> {
        let unknown = || Error::ManifestUnknown(reference.to_string());
        let digest = self.resolve(name, reference)?;
        let media_type =
            fs::read_to_string(self.link_path(name, &digest)).map_err(|e| not_found(e, unknown))?;
        let bytes = fs::read(self.blob_path(&digest)).map_err(|e| not_found(e, unknown))?;
        Ok((digest, media_type, bytes))
    }

    /// The digest a reference stands for in the repository.
    fn resolve(&self, name: &Name, reference: &Reference) -> Result<Digest, Error> {
        if !self.has_repository(name) {
            return Err(Error::NameUnknown(name.to_string()));
        }
        match reference {
            Reference::Digest(digest) => Ok(digest.clone()),
            Reference::Tag(tag) => {
                let unknown = || Error::ManifestUnknown(tag.0.clone());
                let held = fs::read_to_string(self.tag_path(name, tag))
                    .map_err(|e| not_found(e, unknown))?;
                Digest::parse(held.trim()).map_err(|_| unknown())
            }
        }
    }

    /// Deletes a tag, or a manifest with every tag pointing at it. Its bytes
    /// stay among the blobs.
    pub(crate) fn delete_manifest(&self, name: &Name, reference: &Reference) -> Result<(), Error> {
        let unknown = || Error::ManifestUnknown(reference.to_string());
        if !self.has_repository(name) {
            return Err(Error::NameUnknown(name.to_string()));
        }
        match reference {
            Reference::Tag(tag) => {
                remove_durably(&self.tag_path(name, tag)).map_err(|e| not_found(e, unknown))
            }
            Reference::Digest(digest) => {
                remove_durably(&self.link_path(name, digest)).map_err(|e| not_found(e, unknown))?;
                let wanted = digest.to_string();
                for tag in self.tags(name)? {
                    let path = self.tags_dir(name).join(tag);
                    if fs::read_to_string(&path).is_ok_and(|held| held.trim() == wanted) {
                        remove_durably(&path)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// The repository's tags, sorted.
    pub(crate) fn tags(&self, name: &Name) -> Result<Vec<String>, Error> {
        if !self.has_repository(name) {
            return Err(Error::NameUnknown(name.to_string()));
        }
        let entries = match fs::read_dir(self.tags_dir(name)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut tags = Vec::new();
        for entry in entries {
            let file_name = entry?.file_name();
            // Temporary files start with a dot, which no tag does.
            if let Some(tag) = file_name.to_str().and_then(|n| Tag::parse(n).ok()) {
                tags.push(tag.0);
            }
        }
        tags.sort();
        Ok(tags)
    }

    /// Every repository that had a manifest pushed, sorted.
    pub(crate) fn repositories(&self) -> Result<Vec<String>, Error> {
        let mut found = Vec::new();
        let mut pending = vec![(self.repositories_dir(), String::new())];
        while let Some((dir, name)) = pending.pop() {
            if !name.is_empty() && dir.join("_manifests").is_dir() {
                found.push(name.clone());
            }
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let Some(component) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if valid_component(&component) && entry.file_type()?.is_dir() {
                    let nested = if name.is_empty() {
                        component
                    } else {
                        format!("{name}/{component}")
                    };
                    pending.push((entry.path(), nested));
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(tag) => f.write_str(&tag.0),
            Reference::Digest(digest) => digest.fmt(f),
        }
    }
}

/// The digests a manifest refers to: those of the objects under `single`
/// and those in the array `list`.
fn referenced<'a>(manifest: &'a Value, single: &[&str], list: &str) -> Result<Vec<&'a str>, Error> {
    let digest_of = |field: &str, item: &'a Value| {
        item.get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::ManifestInvalid(format!("{field} has no digest")))
    };
    let mut digests = Vec::new();
    for field in single {
        if let Some(item) = manifest.get(field) {
            digests.push(digest_of(field, item)?);
        }
    }
    match manifest.get(list) {
        None => {}
        Some(Value::Array(items)) => {
            for item in items {
                digests.push(digest_of(list, item)?);
            }
        }
        Some(_) => return Err(Error::ManifestInvalid(format!("{list} is not an array"))),
    }
    Ok(digests)
}

/// `error`, or `unknown()` if it says the file is not there.
fn not_found(error: io::Error, unknown: impl FnOnce() -> Error) -> Error {
    if error.kind() == io::ErrorKind::NotFound {
        unknown()
    } else {
        error.into()
    }
}

/// The digest of a file's content.
fn hash_file(path: &Path) -> io::Result<Digest> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(Digest::finish(hasher)),
            n => hasher.update(&buffer[..n]),
        }
    }
}

/// Replaces `path` with `bytes` so that it holds either all the old or all
/// the new, and the new is on disk when this returns.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("a file is kept in a directory");
    make_dir(dir)?;
    let temporary = dir.join(format!(".tmp-{}", Uuid::new_v4()));
    let written = (|| {
        let mut file = File::create_new(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        sync_dir(dir)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// Removes a file, and the removal is on disk when this returns.
fn remove_durably(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    sync_dir(path.parent().expect("a file is kept in a directory"))
}

/// Makes a directory and any missing parent, each synced into its parent.
fn make_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().expect("the root directory exists");
    make_dir(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Syncs a directory, so that the entries made or removed in it last.
fn sync_dir(dir: &Path) -> io::Result<()> {
    if cfg!(unix) {
        File::open(dir)?.sync_all()
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "a",
            "a/b",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "wasm/hello-world",
            "0/1/2",
        ] {
            assert!(Name::parse(good).is_ok(), "{good}");
        }
        let long = "a".repeat(256);
        for bad in [
            "", "A", "a/", "/a", "a//b", ".a", "a.", "a..b", "a___b", "-a", "a-", "a/../b", "..",
            "a/./b", "a b", "a\\b", "a%2fb", &long,
        ] {
            assert!(Name::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags() {
        for good in ["latest", "v1.0.0", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(Tag::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "-x",
            ".hidden",
            "a/b",
            "a:b",
            &"a".repeat(129),
        ] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(Digest::of(b"").to_string(), format!("sha256:{hex}"));
        assert_eq!(
            Digest::parse(&format!("sha256:{hex}")).unwrap(),
            Digest::of(b"")
        );
        for bad in [
            "sha256:",
            "sha256:abc",
            &format!("sha256:{}", hex.to_uppercase()),
            "sha256",
            "x",
            ":abc",
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(Error::DigestInvalid(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Digest::parse("sha512:abcd"),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            Digest::parse("sha512:../x"),
            Err(Error::DigestInvalid(_))
        ));
    }
}
