//! The CRI log format: a runtime writes each line a container prints as
//! `TIMESTAMP STREAM TAGS CONTENT`, the time in RFC 3339 with nanoseconds,
//! the stream `stdout` or `stderr`, and tags split by `:` of which the first
//! is `F` for a full line or `P` for part of one the runtime cut (a line
//! longer than its buffer); the parts of a line are joined again on reading.
//!
//! ```text
//! 2026-12-07T17:48:22.712456872Z stdout F hello
//! 2026-12-07T17:48:22.712990003Z stderr P a very long li
//! 2026-12-07T17:48:22.712990104Z stderr F ne, in two parts
//! ```

/// Which output a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line a container printed, whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// When the runtime read its first part (RFC 3339, nanoseconds).
    pub time: String,
    pub stream: Stream,
    /// What was printed, without the newline.
    pub content: Vec<u8>,
}

/// A record of the log file that is not in the CRI format.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a CRI log record: {0}")]
pub struct NotARecord(pub String);

/// One record of a log file: a line or part of one.
#[derive(Debug, PartialEq, Eq)]
struct Record<'a> {
    time: &'a str,
    stream: Stream,
    partial: bool,
    content: &'a [u8],
}

fn record(bytes: &[u8]) -> Result<Record<'_>, NotARecord> {
    let bad = || NotARecord(String::from_utf8_lossy(bytes).chars().take(80).collect());
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut fields = bytes.splitn(4, |b| *b == b' ');
    let time = fields.next().ok_or_else(bad)?;
    let time = std::str::from_utf8(time).map_err(|_| bad())?;
    if time.len() < 20 || !time.as_bytes()[..4].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let stream = match fields.next() {
        Some(b"stdout") => Stream::Stdout,
        Some(b"stderr") => Stream::Stderr,
        _ => return Err(bad()),
    };
    let tags = fields.next().ok_or_else(bad)?;
    let partial = match tags.split(|b| *b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err(bad()),
    };
    Ok(Record {
        time,
        stream,
        partial,
        content: fields.next().unwrap_or_default(),
    })
}

/// The most of a line the reader holds: a container that prints parts
/// without end gets its output in lines of this size, not in the reader's
/// memory.
pub const MOST_LINE: usize = 1 << 20;

/// Joins the records of a log file, fed one line of the file at a time,
/// into whole lines; a part waits for the rest of its line on its stream,
/// up to [`MOST_LINE`] bytes.
#[derive(Debug, Default)]
pub struct Assembler {
    pending: [Option<Line>; 2],
}

impl Assembler {
    /// The line `record` (one line of the file) completes, if it does.
    pub fn push(&mut self, record_bytes: &[u8]) -> Result<Option<Line>, NotARecord> {
        let record = record(record_bytes)?;
        let slot = &mut self.pending[record.stream as usize];
        let line = slot.get_or_insert_with(|| Line {
            time: record.time.to_owned(),
            stream: record.stream,
            content: Vec::new(),
        });
        line.content.extend_from_slice(record.content);
        let whole = !record.partial || line.content.len() >= MOST_LINE;
        Ok(if whole { slot.take() } else { None })
    }

    /// The lines begun and not ended (a program's last output without a
    /// newline), in the order of their streams.
    pub fn finish(self) -> Vec<Line> {
        self.pending.into_iter().flatten().collect()
    }
}

/// The lines of a log file's `text`, a last one not ended included;
/// records that are not in the format are skipped, as the kubelet skips
/// them.
pub fn lines(text: &[u8]) -> Vec<Line> {
    let mut assembler = Assembler::default();
    let mut lines: Vec<Line> = text
        .split_inclusive(|b| *b == b'\n')
        .filter_map(|record| assembler.push(record).ok().flatten())
        .collect();
    lines.extend(assembler.finish());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_lines_are_read_with_their_time_and_stream() {
        let text = b"2026-12-07T17:48:22.712456872Z stdout F hello world\n\
2026-12-07T17:48:22.812456872Z stderr F oops\n";
        assert_eq!(
            lines(text),
            [
                Line {
                    time: "2026-12-07T17:48:22.712456872Z".into(),
                    stream: Stream::Stdout,
                    content: b"hello world".to_vec(),
                },
                Line {
                    time: "2026-12-07T17:48:22.812456872Z".into(),
                    stream: Stream::Stderr,
                    content: b"oops".to_vec(),
                },
            ]
        );
    }

    #[test]
    fn parts_are_joined_per_stream_an_empty_line_is_a_line_and_an_unended_one_too() {
        let text = b"2026-12-07T17:48:22.1Z stdout P a very long li\n\
2026-12-07T17:48:22.2Z stderr F between\n\
2026-12-07T17:48:22.3Z stdout F ne\n\
2026-12-07T17:48:22.4Z stdout F \n\
2026-12-07T17:48:22.5Z stdout F:x tagged\n\
2026-12-07T17:48:22.6Z stderr P unended\n";
        let got: Vec<(Stream, String, String)> = lines(text)
            .into_iter()
            .map(|l| (l.stream, l.time, String::from_utf8(l.content).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    Stream::Stderr,
                    "2026-12-07T17:48:22.2Z".into(),
                    "between".into()
                ),
                (
                    Stream::Stdout,
                    "2026-12-07T17:48:22.1Z".into(),
                    "a very long line".into()
                ),
                (
                    Stream::Stdout,
                    "2026-12-07T17:48:22.4Z".into(),
                    String::new()
                ),
                (
                    Stream::Stdout,
                    "2026-12-07T17:48:22.5Z".into(),
                    "tagged".into()
                ),
                (
                    Stream::Stderr,
                    "2026-12-07T17:48:22.6Z".into(),
                    "unended".into()
                ),
            ]
        );
    }

    #[test]
    fn a_line_of_parts_without_end_is_given_out_at_the_bound() {
        let mut assembler = Assembler::default();
        let part = format!(
            "2026-12-07T17:48:22.1Z stdout P {}\n",
            "x".repeat(16 * 1024)
        );
        let mut given = Vec::new();
        for _ in 0..(MOST_LINE / (16 * 1024)) * 3 {
            given.extend(assembler.push(part.as_bytes()).unwrap());
        }
        assert_eq!(given.len(), 3);
        assert!(given.iter().all(|l| l.content.len() == MOST_LINE));
        assert!(assembler.finish().is_empty());
    }

    #[test]
    fn records_out_of_format_are_refused_and_skipped() {
        let mut assembler = Assembler::default();
        for bad in [
            &b"hello\n"[..],
            b"2026-12-07T17:48:22.1Z stdin F x\n",
            b"2026-12-07T17:48:22.1Z stdout X x\n",
            b"yesterday stdout F x\n",
        ] {
            assert!(assembler.push(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            lines(b"junk\n2026-12-07T17:48:22.1Z stdout F ok\n").len(),
            1
        );
    }
}
