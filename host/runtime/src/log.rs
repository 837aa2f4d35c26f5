//! Container logs in the format of the CRI (what the kubelet reads from
//! containerd): a line per line of output, `<RFC 3339 time> <stdout|stderr>
//! <F|P> <text>`, `P` for a piece of a line too long to hold or left without its
//! newline at the end. A log file is rotated when it reaches its size: `N.log`
//! becomes `N.log.1`, older ones shift up, the oldest beyond the count goes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use jiff::Timestamp;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The longest piece of a line held back waiting for its end.
const LONGEST_LINE: usize = 16 << 10;

/// How big a log file grows and how many of them are kept.
#[derive(Clone, Copy, Debug)]
pub struct Rotation {
    /// Bytes after which the file is rotated.
    pub max_size: u64,
    /// Files kept, the one written included (at least 1).
    pub max_files: usize,
}

impl Default for Rotation {
    /// The kubelet's defaults: 10 MiB, 5 files.
    fn default() -> Self {
        Rotation {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// Which output a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Stdout => "stdout",
            Source::Stderr => "stderr",
        }
    }
}

/// One line of a log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// When it was written.
    pub time: Timestamp,
    /// Its output.
    pub source: Source,
    /// Whether the guest ended it with a newline.
    pub full: bool,
    /// Its text, without the newline.
    pub text: &'a [u8],
}

impl<'a> LogLine<'a> {
    /// Reads one line of a log file (without its newline).
    pub fn parse(line: &'a [u8]) -> Option<LogLine<'a>> {
        let mut parts = line.splitn(4, |b| *b == b' ');
        let time = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let source = match parts.next()? {
            b"stdout" => Source::Stdout,
            b"stderr" => Source::Stderr,
            _ => return None,
        };
        let full = match parts.next()? {
            b"F" => true,
            b"P" => false,
            _ => return None,
        };
        Some(LogLine {
            time,
            source,
            full,
            text: parts.next().unwrap_or_default(),
        })
    }

    /// The output as the guest wrote it, with its time first if `timestamps`.
    pub fn render(&self, timestamps: bool, out: &mut Vec<u8>) {
        if timestamps {
            out.extend_from_slice(stamp(self.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(self.text);
        if self.full {
            out.push(b'\n');
        }
    }
}

fn stamp(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// The files of the log at `path`, oldest first: the rotated ones, then `path`.
pub fn log_files(path: &Path, rotation: Rotation) -> Vec<PathBuf> {
    (1..rotation.max_files.max(1))
        .rev()
        .map(|i| rotated(path, i))
        .chain(std::iter::once(path.to_owned()))
        .filter(|p| p.exists())
        .collect()
}

fn rotated(path: &Path, i: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{i}"));
    PathBuf::from(name)
}

/// The writer of one container's log, shared by its stdout and stderr.
#[derive(Clone, Debug)]
pub struct LogFile(Arc<Mutex<Writer>>);

#[derive(Debug)]
struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
    /// Output of each source since its last newline.
    pending: [Vec<u8>; 2],
}

impl LogFile {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<LogFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile(Arc::new(Mutex::new(Writer {
            path: path.to_owned(),
            file,
            size,
            rotation,
            pending: [Vec::new(), Vec::new()],
        }))))
    }

    /// The stream the guest's `source` writes to.
    pub fn stream(&self, source: Source) -> LogStream {
        LogStream {
            log: self.clone(),
            source,
        }
    }

    /// Writes what the guest wrote on `source`: its whole lines now, the rest
    /// once ended or too long to hold.
    pub fn write(&self, source: Source, bytes: &[u8]) -> std::io::Result<()> {
        let mut writer = self.0.lock().expect("log lock");
        let slot = source as usize;
        writer.pending[slot].extend_from_slice(bytes);
        let pending = std::mem::take(&mut writer.pending[slot]);
        let mut rest = &pending[..];
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            writer.line(source, true, &rest[..end])?;
            rest = &rest[end + 1..];
        }
        while rest.len() > LONGEST_LINE {
            writer.line(source, false, &rest[..LONGEST_LINE])?;
            rest = &rest[LONGEST_LINE..];
        }
        writer.pending[slot] = rest.to_vec();
        Ok(())
    }

    /// Writes what is left of unended lines, once the guest is done.
    pub fn finish(&self) -> std::io::Result<()> {
        let mut writer = self.0.lock().expect("log lock");
        for source in [Source::Stdout, Source::Stderr] {
            let rest = std::mem::take(&mut writer.pending[source as usize]);
            if !rest.is_empty() {
                writer.line(source, false, &rest)?;
            }
        }
        Ok(())
    }
}

impl Writer {
    fn line(&mut self, source: Source, full: bool, text: &[u8]) -> std::io::Result<()> {
        let mut line = format!(
            "{} {} {} ",
            stamp(Timestamp::now()),
            source.name(),
            if full { 'F' } else { 'P' }
        )
        .into_bytes();
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.rotation.max_size {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let keep = self.rotation.max_files.max(1);
        if keep == 1 {
            self.file.set_len(0)?;
        } else {
            for i in (1..keep - 1).rev() {
                let older = rotated(&self.path, i);
                if older.exists() {
                    std::fs::rename(&older, rotated(&self.path, i + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

/// The guest's stdout or stderr: lines into its [`LogFile`].
#[derive(Clone, Debug)]
pub struct LogStream {
    log: LogFile,
    source: Source,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.log
            .write(self.source, &bytes)
            .map_err(|e| wasmtime_wasi::p2::StreamError::LastOperationFailed(e.into()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(LONGEST_LINE)
    }
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.log.write(self.source, buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path, rotation: Rotation) -> Vec<String> {
        log_files(path, rotation)
            .iter()
            .flat_map(|f| {
                let text = std::fs::read(f).unwrap();
                text.split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let line = LogLine::parse(l).expect("a CRI log line");
                        let mut out = Vec::new();
                        line.render(false, &mut out);
                        format!("{}:{}", line.source.name(), String::from_utf8(out).unwrap())
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn lines_are_written_whole_with_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = LogFile::open(&path, Rotation::default()).unwrap();
        log.write(Source::Stdout, b"hel").unwrap();
        log.write(Source::Stderr, b"oops\n").unwrap();
        log.write(Source::Stdout, b"lo\nwor").unwrap();
        log.finish().unwrap();
        assert_eq!(
            lines(&path, Rotation::default()),
            ["stderr:oops\n", "stdout:hello\n", "stdout:wor"]
        );
        let long = vec![b'x'; LONGEST_LINE + 10];
        log.write(Source::Stdout, &long).unwrap();
        log.write(Source::Stdout, b"\n").unwrap();
        let all = lines(&path, Rotation::default());
        assert_eq!(all[3].len(), "stdout:".len() + LONGEST_LINE);
        assert_eq!(all[4], format!("stdout:{}\n", "x".repeat(10)));
    }

    #[test]
    fn files_rotate_by_size_and_the_oldest_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let rotation = Rotation {
            max_size: 200,
            max_files: 3,
        };
        let log = LogFile::open(&path, rotation).unwrap();
        for i in 0..20 {
            log.write(Source::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let files = log_files(&path, rotation);
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(
            files
                .iter()
                .all(|f| std::fs::metadata(f).unwrap().len() <= 200)
        );
        let kept = lines(&path, rotation);
        assert_eq!(kept.last().unwrap(), "stdout:line 19\n");
        assert!(!kept.contains(&"stdout:line 0\n".to_owned()), "{kept:?}");
        let numbers: Vec<usize> = kept
            .iter()
            .map(|l| l.trim_end().rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    }

    #[test]
    fn timestamps_read_back() {
        let line = LogLine::parse(b"2026-11-26T10:00:00.123456789Z stderr F boom").unwrap();
        assert_eq!(line.source, Source::Stderr);
        let mut out = Vec::new();
        line.render(true, &mut out);
        assert_eq!(out, b"2026-11-26T10:00:00.123456789Z boom\n");
        assert_eq!(LogLine::parse(b"garbage"), None);
    }
}
