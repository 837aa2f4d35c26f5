//! Snapshots: every key of a store at one revision, in a versioned file that
//! another store (embedded or etcd) is restored from, so a cluster moves
//! between backends.
//!
//! The file is JSON lines: a header (`{"format":"wasmkube.io/store-snapshot",
//! "version":1,"revision":R}`), one line per key (`{"key":…,"value":base64}`),
//! and a trailer counting the keys, so a cut-short file is refused rather than
//! restored in part. Events are left out: they expire within the hour where
//! they were written, and a restored store would keep them forever.

use std::io::{BufRead, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::{Bytes, Error, ListOptions, Revision, Store};

/// The `format` of a snapshot's header.
pub const FORMAT: &str = "wasmkube.io/store-snapshot";
/// The version this build writes and reads.
pub const VERSION: u64 = 1;

/// Keys a snapshot leaves out (see the module's overview).
const LEFT_OUT: &str = "/registry/events/";

/// How many keys are read at a time.
const PAGE: usize = 500;

/// What a snapshot or a restore moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moved {
    /// The revision the snapshot was read at.
    pub revision: Revision,
    /// How many keys.
    pub keys: u64,
}

/// Why a snapshot or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] Error),
    #[error("snapshot file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not a snapshot this build reads.
    #[error("not a snapshot this version can restore: {0}")]
    Format(String),
    /// The target store already holds objects.
    #[error(
        "the target store is not empty (it has {0}): restore into a new etcd or a new data dir"
    )]
    NotEmpty(String),
}

/// Writes every key of `store` (at one revision) to `out`.
pub async fn snapshot(store: &dyn Store, out: &mut dyn Write) -> Result<Moved, SnapshotError> {
    let revision = store.revision().await?;
    let header = json!({"format": FORMAT, "version": VERSION, "revision": revision});
    writeln!(out, "{header}")?;
    let mut options = ListOptions {
        limit: PAGE,
        revision: Some(revision),
        ..Default::default()
    };
    let mut keys = 0;
    loop {
        let page = store.list("/", &options).await?;
        for kv in page.items.iter().filter(|kv| !kv.key.starts_with(LEFT_OUT)) {
            let line = json!({"key": kv.key, "value": STANDARD.encode(&kv.value)});
            writeln!(out, "{line}")?;
            keys += 1;
        }
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break,
        }
    }
    writeln!(out, "{}", json!({"end": {"keys": keys}}))?;
    out.flush()?;
    Ok(Moved { revision, keys })
}

/// Writes every key of the snapshot `input` into `store`, which must be
/// empty. The file is read whole and checked before the first write.
pub async fn restore(store: &dyn Store, input: &mut dyn BufRead) -> Result<Moved, SnapshotError> {
    let (revision, pairs) = read(input)?;
    let existing = store
        .list(
            "/",
            &ListOptions {
                limit: 1,
                ..Default::default()
            },
        )
        .await?;
    if let Some(kv) = existing.items.first() {
        return Err(SnapshotError::NotEmpty(kv.key.clone()));
    }
    for (key, value) in &pairs {
        store.create(key, value.clone(), None).await?;
    }
    Ok(Moved {
        revision,
        keys: pairs.len() as u64,
    })
}

/// The revision and the keys of a snapshot, checked from header to trailer.
fn read(input: &mut dyn BufRead) -> Result<(Revision, Vec<(String, Bytes)>), SnapshotError> {
    let bad = |what: String| SnapshotError::Format(what);
    let mut lines = input.lines();
    let header: Value = match lines.next() {
        Some(line) => serde_json::from_str(&line?).map_err(|e| bad(format!("header: {e}")))?,
        None => return Err(bad("the file is empty".into())),
    };
    if header["format"] != FORMAT {
        return Err(bad(format!(
            "its format is {}, not {FORMAT}",
            header["format"]
        )));
    }
    let version = header["version"].as_u64().unwrap_or(0);
    if version != VERSION {
        return Err(bad(format!(
            "it is version {version}; this build reads version {VERSION}"
        )));
    }
    let revision = header["revision"].as_i64().unwrap_or(0);
    let mut pairs = Vec::new();
    for (number, line) in lines.enumerate() {
        let line: Value =
            serde_json::from_str(&line?).map_err(|e| bad(format!("line {}: {e}", number + 2)))?;
        if let Some(end) = line.get("end") {
            let said = end["keys"].as_u64();
            if said != Some(pairs.len() as u64) {
                return Err(bad(format!(
                    "the trailer counts {said:?} keys but the file holds {}",
                    pairs.len()
                )));
            }
            return Ok((revision, pairs));
        }
        let (Some(key), Some(value)) = (line["key"].as_str(), line["value"].as_str()) else {
            return Err(bad(format!(
                "line {}: expected a key and a value",
                number + 2
            )));
        };
        let value = STANDARD
            .decode(value)
            .map_err(|e| bad(format!("line {}: {e}", number + 2)))?;
        pairs.push((key.to_owned(), Bytes::from(value)));
    }
    Err(bad(
        "it ends before its trailer: the file was cut short".into()
    ))
}
