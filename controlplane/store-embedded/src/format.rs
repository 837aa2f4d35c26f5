//! The file format.
//!
//! ```text
//! file   = header frame*
//! header = "WASMKUBE" version:u32 reserved:u32
//! frame  = length:u32 crc32(payload):u32 crc32(length crc32(payload)):u32 payload
//!                                                    (one frame per commit)
//! payload = record*
//! record = 1 rev:i64 expires:u64 key value            a put (create or update)
//!        | 2 rev:i64 key                              a delete
//!        | 3 revision:i64 compacted:i64               a snapshot starts
//!        | 4 create:i64 mod:i64 expires:u64 key value a key of the snapshot
//!        | 5 compacted:i64                            history before it forgotten
//! key, value = length:u32 bytes
//! ```
//! All integers are little-endian; `expires` is Unix time in milliseconds, 0 for
//! never. A commit is one frame, so it is on disk whole or not at all. A frame
//! that is cut short or fails a checksum is a write torn by a crash only if no
//! whole frame follows it: then the file is cut back to the frame before it.
//! Otherwise acknowledged commits come after the damage, and the file is refused
//! as corrupt rather than cut. The header has its own checksum, so a damaged length
//! is told from a torn one and a search for whole frames after it skips nothing.
//!
//! Version 1 files (frames without the header checksum) are read and rewritten in
//! the current version when opened.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use wasmkube_store::{Bytes, Revision};

use crate::OpenError as Error;

/// The first eight bytes of every store file.
pub(crate) const MAGIC: &[u8; 8] = b"WASMKUBE";
/// The format version this build writes.
pub(crate) const VERSION: u32 = 2;
/// The older version this build reads (and rewrites).
const VERSION_1: u32 = 1;
/// Bytes before the first frame.
pub(crate) const HEADER_LEN: u64 = 16;
const FRAME_HEADER_LEN: u64 = 12;
const FRAME_HEADER_LEN_1: u64 = 8;
/// No frame is bigger than this: the committer never writes one, and a larger
/// length read is damage.
pub(crate) const MAX_FRAME: u64 = 1 << 30;

/// One change, as kept in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Put {
        revision: Revision,
        expires: u64,
        key: String,
        value: Bytes,
    },
    Delete {
        revision: Revision,
        key: String,
    },
    Snapshot {
        revision: Revision,
        compacted: Revision,
    },
    Base {
        create_revision: Revision,
        mod_revision: Revision,
        expires: u64,
        key: String,
        value: Bytes,
    },
    Compact {
        compacted: Revision,
    },
}

/// The file header.
pub(crate) fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Appends records to a frame being built, then seals it.
#[derive(Debug, Default)]
pub(crate) struct FrameWriter {
    buf: Vec<u8>,
}

impl FrameWriter {
    pub(crate) fn new() -> Self {
        FrameWriter {
            buf: vec![0; FRAME_HEADER_LEN as usize],
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.len() == FRAME_HEADER_LEN as usize
    }

    pub(crate) fn push(&mut self, record: &Record) {
        let b = &mut self.buf;
        match record {
            Record::Put {
                revision,
                expires,
                key,
                value,
            } => {
                b.push(1);
                b.extend_from_slice(&revision.to_le_bytes());
                b.extend_from_slice(&expires.to_le_bytes());
                put_bytes(b, key.as_bytes());
                put_bytes(b, value);
            }
            Record::Delete { revision, key } => {
                b.push(2);
                b.extend_from_slice(&revision.to_le_bytes());
                put_bytes(b, key.as_bytes());
            }
            Record::Snapshot {
                revision,
                compacted,
            } => {
                b.push(3);
                b.extend_from_slice(&revision.to_le_bytes());
                b.extend_from_slice(&compacted.to_le_bytes());
            }
            Record::Base {
                create_revision,
                mod_revision,
                expires,
                key,
                value,
            } => {
                b.push(4);
                b.extend_from_slice(&create_revision.to_le_bytes());
                b.extend_from_slice(&mod_revision.to_le_bytes());
                b.extend_from_slice(&expires.to_le_bytes());
                put_bytes(b, key.as_bytes());
                put_bytes(b, value);
            }
            Record::Compact { compacted } => {
                b.push(5);
                b.extend_from_slice(&compacted.to_le_bytes());
            }
        }
    }

    /// The frame, ready to append; the writer is empty again afterwards. A frame
    /// over [`MAX_FRAME`] is refused: it would read back as damage.
    pub(crate) fn seal(&mut self) -> io::Result<Vec<u8>> {
        let frame = std::mem::replace(&mut self.buf, vec![0; FRAME_HEADER_LEN as usize]);
        let payload_len = frame.len() as u64 - FRAME_HEADER_LEN;
        if payload_len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a commit of {payload_len} bytes is over the {MAX_FRAME}-byte frame limit"),
            ));
        }
        Ok(seal_header(frame, payload_len as u32))
    }
}

fn seal_header(mut frame: Vec<u8>, payload_len: u32) -> Vec<u8> {
    let crc = crc32fast::hash(&frame[FRAME_HEADER_LEN as usize..]);
    frame[..4].copy_from_slice(&payload_len.to_le_bytes());
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    let head_crc = crc32fast::hash(&frame[..8]);
    frame[8..12].copy_from_slice(&head_crc.to_le_bytes());
    frame
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// What reading a file found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Length of the whole frames, header included: where the next frame goes.
    pub(crate) valid_len: u64,
    /// Bytes after `valid_len` that were a torn write.
    pub(crate) torn_bytes: u64,
    /// The format version the file is written in.
    pub(crate) version: u32,
}

/// Why the frame at some offset could not be read whole.
enum Bad {
    /// Its header is cut short or fails its checksum.
    Header,
    /// Its header is whole, but the payload of this length is cut short or fails
    /// its checksum.
    Payload(u64),
}

/// Reads the file at `path`, handing every record to `apply` in order.
pub(crate) fn scan(
    path: &Path,
    file: &File,
    mut apply: impl FnMut(Record) -> Result<(), String>,
) -> Result<Scan, Error> {
    let corrupt = |offset: u64, reason: String| Error::Corrupt {
        path: path.to_owned(),
        offset,
        reason,
    };
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let file_len = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut head = [0; HEADER_LEN as usize];
    if file_len < HEADER_LEN {
        return Err(corrupt(
            0,
            format!("file is {file_len} bytes, shorter than the header"),
        ));
    }
    reader.read_exact(&mut head).map_err(io)?;
    if &head[..8] != MAGIC {
        return Err(Error::NotAStore {
            path: path.to_owned(),
        });
    }
    let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    let head_len = match version {
        VERSION => FRAME_HEADER_LEN,
        VERSION_1 => FRAME_HEADER_LEN_1,
        found => {
            return Err(Error::UnsupportedVersion {
                path: path.to_owned(),
                found,
                supported: VERSION,
            });
        }
    };

    let mut offset = HEADER_LEN;
    let mut payload = Vec::new();
    while offset < file_len {
        let left = file_len - offset;
        let mut frame_head = [0; FRAME_HEADER_LEN as usize];
        let bad = if left < head_len {
            Bad::Header
        } else {
            reader
                .read_exact(&mut frame_head[..head_len as usize])
                .map_err(io)?;
            let (len, crc) = frame_fields(&frame_head);
            if (version == VERSION && !header_whole(&frame_head)) || len > MAX_FRAME {
                Bad::Header
            } else if head_len + len > left {
                Bad::Payload(len)
            } else {
                payload.resize(len as usize, 0);
                reader.read_exact(&mut payload).map_err(io)?;
                if crc32fast::hash(&payload) == crc {
                    decode_frame(&payload, &mut apply).map_err(|reason| corrupt(offset, reason))?;
                    offset += head_len + len;
                    continue;
                }
                Bad::Payload(len)
            }
        };
        // Where a whole frame written after this one would start at the earliest.
        let after = match bad {
            Bad::Header => offset + 1,
            Bad::Payload(len) => (offset + head_len + len).min(file_len),
        };
        let followed = if version == VERSION {
            whole_frame_after(file, after, file_len).map_err(io)?
        } else {
            // Version 1 headers have no checksum to search by: damage is only known
            // where a whole payload fails its checksum before the end.
            matches!(bad, Bad::Payload(_))
                .then_some(after)
                .filter(|a| *a < file_len)
        };
        if let Some(at) = followed {
            return Err(corrupt(
                offset,
                format!(
                    "a damaged frame is followed by whole frames (from byte {at}) that would be lost"
                ),
            ));
        }
        return Ok(Scan {
            valid_len: offset,
            torn_bytes: file_len - offset,
            version,
        });
    }
    Ok(Scan {
        valid_len: offset,
        torn_bytes: 0,
        version,
    })
}

/// A frame header's payload length and payload checksum.
fn frame_fields(head: &[u8]) -> (u64, u32) {
    let len = u64::from(u32::from_le_bytes(head[..4].try_into().expect("4 bytes")));
    (
        len,
        u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")),
    )
}

/// Whether a (current version) frame header matches its own checksum.
fn header_whole(head: &[u8]) -> bool {
    crc32fast::hash(&head[..8]) == u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"))
}

/// The offset of the first whole frame that starts at or after `from`, if any.
fn whole_frame_after(file: &File, from: u64, file_len: u64) -> io::Result<Option<u64>> {
    let mut rest = vec![0; (file_len - from) as usize];
    file.read_exact_at(&mut rest, from)?;
    let found = (0..rest.len()).find(|&start| {
        let frame = &rest[start..];
        if frame.len() < FRAME_HEADER_LEN as usize || !header_whole(frame) {
            return false;
        }
        let (len, crc) = frame_fields(frame);
        frame
            .get(FRAME_HEADER_LEN as usize..)
            .and_then(|p| p.get(..len as usize))
            .is_some_and(|p| crc32fast::hash(p) == crc)
    });
    Ok(found.map(|start| from + start as u64))
}

fn decode_frame(
    mut p: &[u8],
    apply: &mut impl FnMut(Record) -> Result<(), String>,
) -> Result<(), String> {
    while !p.is_empty() {
        let tag = take::<1>(&mut p)?[0];
        let record = match tag {
            1 => Record::Put {
                revision: take_i64(&mut p)?,
                expires: take_u64(&mut p)?,
                key: take_key(&mut p)?,
                value: take_bytes(&mut p)?,
            },
            2 => Record::Delete {
                revision: take_i64(&mut p)?,
                key: take_key(&mut p)?,
            },
            3 => Record::Snapshot {
                revision: take_i64(&mut p)?,
                compacted: take_i64(&mut p)?,
            },
            4 => Record::Base {
                create_revision: take_i64(&mut p)?,
                mod_revision: take_i64(&mut p)?,
                expires: take_u64(&mut p)?,
                key: take_key(&mut p)?,
                value: take_bytes(&mut p)?,
            },
            5 => Record::Compact {
                compacted: take_i64(&mut p)?,
            },
            other => return Err(format!("unknown record type {other}")),
        };
        apply(record)?;
    }
    Ok(())
}

fn take<const N: usize>(p: &mut &[u8]) -> Result<[u8; N], String> {
    if p.len() < N {
        return Err("record cut short".into());
    }
    let (head, rest) = p.split_at(N);
    *p = rest;
    Ok(head.try_into().expect("N bytes"))
}

fn take_i64(p: &mut &[u8]) -> Result<i64, String> {
    take::<8>(p).map(i64::from_le_bytes)
}

fn take_u64(p: &mut &[u8]) -> Result<u64, String> {
    take::<8>(p).map(u64::from_le_bytes)
}

fn take_bytes(p: &mut &[u8]) -> Result<Bytes, String> {
    let len = u32::from_le_bytes(take::<4>(p)?) as usize;
    if p.len() < len {
        return Err("record cut short".into());
    }
    let (head, rest) = p.split_at(len);
    *p = rest;
    Ok(Bytes::copy_from_slice(head))
}

fn take_key(p: &mut &[u8]) -> Result<String, String> {
    let bytes = take_bytes(p)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| "key is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn records() -> Vec<Record> {
        vec![
            Record::Snapshot {
                revision: 9,
                compacted: 10,
            },
            Record::Base {
                create_revision: 3,
                mod_revision: 9,
                expires: 0,
                key: "/registry/a".into(),
                value: Bytes::from_static(b"{}"),
            },
            Record::Put {
                revision: 10,
                expires: 1_700_000_000_000,
                key: "/registry/b".into(),
                value: Bytes::from_static(b"value"),
            },
            Record::Delete {
                revision: 11,
                key: "/registry/a".into(),
            },
            Record::Compact { compacted: 11 },
        ]
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = File::create(&path).unwrap();
        file.write_all(&header()).unwrap();
        let mut frame = FrameWriter::new();
        assert!(frame.is_empty());
        for r in records() {
            frame.push(&r);
        }
        file.write_all(&frame.seal().unwrap()).unwrap();
        assert!(frame.is_empty());
        let mut got = Vec::new();
        let file = File::open(&path).unwrap();
        let scan = scan(&path, &file, |r| {
            got.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, records());
        assert_eq!(scan.torn_bytes, 0);
        assert_eq!(scan.valid_len, file.metadata().unwrap().len());
    }
}
