//! Compiled artefacts shipped inside the executable, so that a fresh data
//! dir does not wait for the built-in components to compile.
//!
//! A bundle is the executable with the artefacts appended after its last
//! byte (the loader maps only the segments its headers name, so the program
//! runs as before), each compressed (zlib: a third of the size), then an
//! index and a footer:
//!
//! ```text
//! executable | artefact… | index: (u16 name length, name, u64 offset, u64 length, u64 size)… | u64 index length | MAGIC
//! ```
//!
//! Artefacts are named as the compile cache names them, by component digest
//! and engine compatibility hash: one compiled by another wasmtime build, or
//! for another CPU, is never found, and the component is compiled as if
//! nothing were shipped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

/// The last bytes of a bundle.
const MAGIC: &[u8; 8] = b"wmkcwasm";
/// The most an index may take: far more than any bundle's, and a bound on
/// what a corrupt footer can make the reader allocate.
const MOST_INDEX: u64 = 1 << 20;

/// Where an artefact is in the file, compressed, and its size once not.
#[derive(Clone, Copy, Debug)]
struct Entry {
    offset: u64,
    length: u64,
    size: u64,
}

/// The artefacts shipped in one file (none, if it is not a bundle).
#[derive(Clone, Debug, Default)]
pub struct Shipped {
    file: PathBuf,
    /// How many bytes of `file` are the program, before the artefacts.
    program: u64,
    index: Arc<HashMap<String, Entry>>,
}

impl Shipped {
    /// The artefacts shipped in the running executable.
    pub fn in_current_exe() -> Shipped {
        match std::env::current_exe().and_then(|exe| Shipped::in_file(&exe)) {
            Ok(shipped) => shipped,
            Err(e) => {
                tracing::debug!(error = %e, "no shipped artefacts");
                Shipped::default()
            }
        }
    }

    /// The artefacts shipped in `file`: none if it has no bundle footer.
    pub fn in_file(file: &Path) -> io::Result<Shipped> {
        let reader = File::open(file)?;
        let size = reader.metadata()?.len();
        let mut footer = [0u8; 16];
        let unbundled = Shipped {
            file: file.to_owned(),
            program: size,
            index: Arc::default(),
        };
        if size < footer.len() as u64 {
            return Ok(unbundled);
        }
        reader.read_exact_at(&mut footer, size - 16)?;
        if &footer[8..] != MAGIC {
            return Ok(unbundled);
        }
        let length = u64::from_le_bytes(footer[..8].try_into().expect("8 bytes"));
        if length > MOST_INDEX || length > size - 16 {
            return Err(corrupt("an index larger than the file"));
        }
        let start = size - 16 - length;
        let mut index = vec![0u8; usize::try_from(length).expect("bounded by MOST_INDEX")];
        reader.read_exact_at(&mut index, start)?;
        let index = parse_index(&index, start)?;
        Ok(Shipped {
            file: file.to_owned(),
            program: index.values().map(|e| e.offset).min().unwrap_or(start),
            index: Arc::new(index),
        })
    }

    /// How many artefacts are shipped.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Writes the artefact `name` to `to`; false if none is shipped so.
    pub(crate) fn copy_to(&self, name: &str, to: &Path) -> io::Result<bool> {
        let Some(entry) = self.index.get(name) else {
            return Ok(false);
        };
        let mut from = File::open(&self.file)?;
        from.seek(SeekFrom::Start(entry.offset))?;
        let mut inflated = ZlibDecoder::new(io::BufReader::new(from.take(entry.length)));
        let mut out = File::create(to)?;
        // One byte more than it should be shows a corrupt one.
        let copied = io::copy(
            &mut (&mut inflated).take(entry.size.saturating_add(1)),
            &mut out,
        )?;
        if copied != entry.size {
            return Err(corrupt("a shipped artefact not of its size"));
        }
        out.sync_all()?;
        Ok(true)
    }

    /// Writes to `out` a bundle of `executable` (itself a bundle or not:
    /// what it shipped is left out) and `artefacts`, by name.
    pub fn bundle(
        executable: &Path,
        artefacts: &[(String, Vec<u8>)],
        out: &Path,
    ) -> io::Result<()> {
        let program = Shipped::in_file(executable)?.program;
        let mut writer = io::BufWriter::new(File::create(out)?);
        io::copy(&mut File::open(executable)?.take(program), &mut writer)?;
        let mut index = Vec::new();
        let mut offset = program;
        for (name, bytes) in artefacts {
            let mut deflate = ZlibEncoder::new(Vec::new(), Compression::best());
            deflate.write_all(bytes)?;
            let compressed = deflate.finish()?;
            writer.write_all(&compressed)?;
            let name_length = u16::try_from(name.len()).map_err(|_| corrupt("a name too long"))?;
            index.extend_from_slice(&name_length.to_le_bytes());
            index.extend_from_slice(name.as_bytes());
            for field in [offset, compressed.len() as u64, bytes.len() as u64] {
                index.extend_from_slice(&field.to_le_bytes());
            }
            offset += compressed.len() as u64;
        }
        writer.write_all(&index)?;
        writer.write_all(&(index.len() as u64).to_le_bytes())?;
        writer.write_all(MAGIC)?;
        let file = writer
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        let mode = std::fs::metadata(executable)?.permissions();
        std::fs::set_permissions(out, mode)
    }
}

/// The entries of an index found at `end`, each checked to lie before it.
fn parse_index(mut index: &[u8], end: u64) -> io::Result<HashMap<String, Entry>> {
    let mut entries = HashMap::new();
    while !index.is_empty() {
        let take = |index: &mut &[u8], n: usize| -> io::Result<Vec<u8>> {
            if index.len() < n {
                return Err(corrupt("an index cut short"));
            }
            let (taken, rest) = index.split_at(n);
            *index = rest;
            Ok(taken.to_vec())
        };
        let u64_of = |bytes: Vec<u8>| u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        let name_length = u16::from_le_bytes(take(&mut index, 2)?.try_into().expect("2 bytes"));
        let name = String::from_utf8(take(&mut index, name_length.into())?)
            .map_err(|_| corrupt("a name not in UTF-8"))?;
        let entry = Entry {
            offset: u64_of(take(&mut index, 8)?),
            length: u64_of(take(&mut index, 8)?),
            size: u64_of(take(&mut index, 8)?),
        };
        if entry
            .offset
            .checked_add(entry.length)
            .is_none_or(|last| last > end)
        {
            return Err(corrupt("an artefact past the index"));
        }
        entries.insert(name, entry);
    }
    Ok(entries)
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("shipped artefacts: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_ships_its_artefacts_and_runs_as_its_program() {
        let dir = tempfile::tempdir().unwrap();
        let program = Path::new("/bin/true");
        assert!(Shipped::in_file(program).unwrap().is_empty());

        let bundle = dir.path().join("bundle");
        let artefacts = [
            ("a.cwasm".to_owned(), b"alpha".to_vec()),
            ("b.cwasm".to_owned(), vec![7; 70_000]),
        ];
        Shipped::bundle(program, &artefacts, &bundle).unwrap();
        let shipped = Shipped::in_file(&bundle).unwrap();
        assert_eq!(shipped.len(), 2);
        for (name, bytes) in &artefacts {
            let copy = dir.path().join(name);
            assert!(shipped.copy_to(name, &copy).unwrap());
            assert_eq!(&std::fs::read(&copy).unwrap(), bytes);
        }
        assert!(!shipped.copy_to("c.cwasm", &dir.path().join("c")).unwrap());

        // Bundled again, the earlier artefacts are replaced, not kept.
        let again = dir.path().join("again");
        Shipped::bundle(
            &bundle,
            &[("c.cwasm".to_owned(), b"gamma".to_vec())],
            &again,
        )
        .unwrap();
        let shipped = Shipped::in_file(&again).unwrap();
        assert_eq!(shipped.len(), 1);
        let length = std::fs::metadata(program).unwrap().len();
        assert_eq!(shipped.program, length);
        let ran = std::process::Command::new(&again).status().unwrap();
        assert!(ran.success());
    }

    #[test]
    fn a_corrupt_footer_is_an_error_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("corrupt");
        let mut bytes = b"program".to_vec();
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        bytes.extend_from_slice(MAGIC);
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(
            Shipped::in_file(&file).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );

        // An entry pointing past the index.
        let mut index = Vec::new();
        index.extend_from_slice(&1u16.to_le_bytes());
        index.push(b'x');
        for field in [0u64, 1000, 1000] {
            index.extend_from_slice(&field.to_le_bytes());
        }
        let mut bytes = b"program".to_vec();
        bytes.extend_from_slice(&index);
        bytes.extend_from_slice(&(index.len() as u64).to_le_bytes());
        bytes.extend_from_slice(MAGIC);
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(
            Shipped::in_file(&file).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
