//! Port forwarding to a pod, `kubectl port-forward`: the API server hands
//! the agent the client's WebSocket (subprotocol
//! `SPDY/3.1+portforward.k8s.io`: SPDY/3.1 frames tunneled in binary
//! messages). The client opens two streams per forwarded connection, an
//! error stream and a data stream with one `requestID` and the `port` in
//! their headers; the data stream becomes a TCP connection to that port of
//! the pod's address, and a connection that cannot be made is reported on
//! the error stream.
//!
//! SPDY's header blocks are zlib streams, one per direction for the whole
//! session, with the dictionary of the SPDY/3 specification: the client's
//! are inflated with it; the agent's replies are deflated without one, which
//! the format allows.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::{Agent, record};

/// The WebSocket subprotocol of port forwarding tunneled in WebSocket.
const PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const FLAG_FIN: u8 = 1;

/// The SPDY/3 header dictionary: these names, each after its length as
/// four bytes, then the text of [`DICTIONARY_TAIL`].
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];
const DICTIONARY_TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// The most a header block may inflate to: port-forward's headers are a few
/// short pairs.
const MAX_HEADER_BLOCK: usize = 256 << 10;
/// Frames queued towards a pod connection, or towards the client, before the
/// sender waits: backpressure from the slower side.
const QUEUED_FRAMES: usize = 64;
/// The most data streams (forwarded connections) one session opens.
const MAX_STREAMS: usize = 256;

fn dictionary() -> Vec<u8> {
    let mut all = Vec::new();
    for word in DICTIONARY_WORDS {
        all.extend((word.len() as u32).to_be_bytes());
        all.extend(word.as_bytes());
    }
    all.extend(DICTIONARY_TAIL.as_bytes());
    all
}

/// Answers `/portForward/<namespace>/<pod>`: the WebSocket of a client.
pub(crate) async fn serve(
    State(agent): State<Agent>,
    Path((namespace, name)): Path<(String, String)>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let address = agent.uid_of(&namespace, &name).and_then(|uid| {
        let pod = record::load_all(&agent.pods_dir)
            .into_iter()
            .find(|p| p.metadata.uid.as_deref() == Some(uid.as_str()))?;
        pod.status?.pod_ip?.parse::<IpAddr>().ok()
    });
    let Some(address) = address else {
        let message = format!("pod {namespace}/{name} has no address on this node");
        return (StatusCode::NOT_FOUND, message).into_response();
    };
    upgrade
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| session(socket, address))
}

/// A frame, control or data.
#[derive(Debug, PartialEq)]
enum Frame {
    Control {
        kind: u16,
        flags: u8,
        payload: Vec<u8>,
    },
    Data {
        stream: u32,
        flags: u8,
        payload: Vec<u8>,
    },
}

/// The first whole frame of `buffer`, taken out of it.
fn take_frame(buffer: &mut Vec<u8>) -> Option<Frame> {
    if buffer.len() < 8 {
        return None;
    }
    let length = u32::from_be_bytes([0, buffer[5], buffer[6], buffer[7]]) as usize;
    if buffer.len() < 8 + length {
        return None;
    }
    let frame: Vec<u8> = buffer.drain(..8 + length).collect();
    let flags = frame[4];
    let payload = frame[8..].to_vec();
    Some(if frame[0] & 0x80 != 0 {
        let kind = u16::from_be_bytes([frame[2], frame[3]]);
        Frame::Control {
            kind,
            flags,
            payload,
        }
    } else {
        let stream = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) & 0x7fff_ffff;
        Frame::Data {
            stream,
            flags,
            payload,
        }
    })
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80, 3];
    frame.extend(kind.to_be_bytes());
    frame.push(flags);
    frame.extend(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend(payload);
    frame
}

fn data(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = stream.to_be_bytes().to_vec();
    frame.push(flags);
    frame.extend(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend(payload);
    frame
}

/// The header blocks of one direction of a session.
struct Headers {
    inflate: Decompress,
    deflate: Compress,
    dictionary: Vec<u8>,
}

impl Headers {
    fn new() -> Headers {
        Headers {
            inflate: Decompress::new(true),
            deflate: Compress::new(Compression::default(), true),
            dictionary: dictionary(),
        }
    }

    /// The name-value pairs of a compressed header block. A block that inflates
    /// past [`MAX_HEADER_BLOCK`], or goes on after its stream ended, is refused.
    fn read(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, String> {
        let mut plain = Vec::with_capacity((block.len() * 4 + 256).min(MAX_HEADER_BLOCK));
        let mut at = 0;
        while at < block.len() {
            if plain.capacity() - plain.len() < 256 {
                if plain.len() >= MAX_HEADER_BLOCK {
                    return Err(format!(
                        "a header block inflates past {MAX_HEADER_BLOCK} bytes"
                    ));
                }
                plain.reserve(plain.capacity().min(MAX_HEADER_BLOCK));
            }
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let status =
                self.inflate
                    .decompress_vec(&block[at..], &mut plain, FlushDecompress::Sync);
            at += (self.inflate.total_in() - before_in) as usize;
            let moved =
                self.inflate.total_in() != before_in || self.inflate.total_out() != before_out;
            match status {
                Ok(Status::StreamEnd) if at < block.len() => {
                    return Err("bytes after the end of the header stream".into());
                }
                Ok(Status::Ok | Status::BufError | Status::StreamEnd) if moved => {}
                Ok(_) => return Err("a header block that does not inflate".into()),
                Err(e) if e.needs_dictionary().is_some() => self
                    .inflate
                    .set_dictionary(&self.dictionary)
                    .map(drop)
                    .map_err(|e| format!("the header dictionary: {e}"))?,
                Err(e) => return Err(format!("a header block: {e}")),
            }
        }
        let mut pairs = Vec::new();
        let mut rest = plain.as_slice();
        let next = |rest: &mut &[u8]| -> Result<Vec<u8>, String> {
            let short = || "a header block ends early".to_owned();
            let (length, tail) = rest.split_at_checked(4).ok_or_else(short)?;
            let length = u32::from_be_bytes(length.try_into().expect("four bytes")) as usize;
            let (value, tail) = tail.split_at_checked(length).ok_or_else(short)?;
            *rest = tail;
            Ok(value.to_vec())
        };
        let (count, tail) = rest.split_at_checked(4).ok_or("an empty header block")?;
        let count = u32::from_be_bytes(count.try_into().expect("four bytes"));
        rest = tail;
        for _ in 0..count {
            let name = String::from_utf8_lossy(&next(&mut rest)?).to_ascii_lowercase();
            let value = String::from_utf8_lossy(&next(&mut rest)?).into_owned();
            pairs.push((name, value));
        }
        Ok(pairs)
    }

    /// An empty header block, compressed.
    fn empty(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let _ = self
            .deflate
            .compress_vec(&[0, 0, 0, 0], &mut out, FlushCompress::Sync);
        out
    }
}

/// One SPDY session on a client's WebSocket, forwarding to `pod`.
async fn session(socket: WebSocket, pod: IpAddr) {
    let (mut sink, mut source) = socket.split();
    let (out, mut outgoing) = mpsc::channel::<Vec<u8>>(QUEUED_FRAMES);
    let writing = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if sink
                .send(Message::Binary(Bytes::from(frame)))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut headers = Headers::new();
    let mut buffer = Vec::new();
    // Where each data stream's bytes go, and each request's error stream.
    let mut to_pod: HashMap<u32, mpsc::Sender<Option<Vec<u8>>>> = HashMap::new();
    let mut error_streams: HashMap<String, u32> = HashMap::new();
    let mut connections = Vec::new();
    'session: while let Some(Ok(message)) = source.next().await {
        match message {
            Message::Binary(bytes) => buffer.extend_from_slice(&bytes),
            Message::Close(_) => break,
            _ => continue,
        }
        while let Some(frame) = take_frame(&mut buffer) {
            match frame {
                Frame::Control {
                    kind: SYN_STREAM,
                    payload,
                    ..
                } if payload.len() >= 10 => {
                    let stream = u32::from_be_bytes(payload[..4].try_into().expect("four bytes"))
                        & 0x7fff_ffff;
                    let pairs = match headers.read(&payload[10..]) {
                        Ok(pairs) => pairs,
                        Err(e) => {
                            tracing::warn!(error = %e, "a port-forward session");
                            break 'session;
                        }
                    };
                    let header = |name: &str| {
                        pairs
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| v.clone())
                    };
                    let mut reply = stream.to_be_bytes().to_vec();
                    reply.extend(headers.empty());
                    let _ = out.send(control(SYN_REPLY, 0, &reply)).await;
                    let request = header("requestid").unwrap_or_default();
                    match header("streamtype").as_deref() {
                        Some("error") => {
                            error_streams.insert(request, stream);
                        }
                        Some("data") if to_pod.len() >= MAX_STREAMS => {
                            tracing::warn!(
                                "a port-forward session opened more than {MAX_STREAMS} streams"
                            );
                            break 'session;
                        }
                        Some("data") => {
                            let port = header("port")
                                .and_then(|p| p.parse::<u16>().ok())
                                .unwrap_or(0);
                            let errors = error_streams.get(&request).copied();
                            let (to, from) = mpsc::channel(QUEUED_FRAMES);
                            to_pod.insert(stream, to);
                            let target = SocketAddr::new(pod, port);
                            connections.push(tokio::spawn(forward(
                                target,
                                stream,
                                errors,
                                from,
                                out.clone(),
                            )));
                        }
                        _ => {}
                    }
                }
                Frame::Control {
                    kind: HEADERS,
                    payload,
                    ..
                } if payload.len() >= 4 => {
                    // Read to keep the header stream in step.
                    let _ = headers.read(&payload[4..]);
                }
                Frame::Control {
                    kind: PING,
                    payload,
                    ..
                } => {
                    let _ = out.send(control(PING, 0, &payload)).await;
                }
                Frame::Control {
                    kind: RST_STREAM,
                    payload,
                    ..
                } if payload.len() >= 4 => {
                    let stream = u32::from_be_bytes(payload[..4].try_into().expect("four bytes"))
                        & 0x7fff_ffff;
                    to_pod.remove(&stream);
                }
                Frame::Control { kind: GOAWAY, .. } => break 'session,
                Frame::Control { .. } => {}
                Frame::Data {
                    stream,
                    flags,
                    payload,
                } => {
                    if let Some(to) = to_pod.get(&stream) {
                        if !payload.is_empty() {
                            let _ = to.send(Some(payload)).await;
                        }
                        if flags & FLAG_FIN != 0 {
                            let _ = to.send(None).await;
                        }
                    }
                }
            }
        }
    }
    for connection in connections {
        connection.abort();
    }
    drop(out);
    let _ = writing.await;
}

/// One forwarded connection: the data stream `stream` to `target`; a
/// failure said on the error stream.
async fn forward(
    target: SocketAddr,
    stream: u32,
    errors: Option<u32>,
    mut from_client: mpsc::Receiver<Option<Vec<u8>>>,
    out: mpsc::Sender<Vec<u8>>,
) {
    let finish = async |out: &mpsc::Sender<Vec<u8>>| {
        let _ = out.send(data(stream, FLAG_FIN, &[])).await;
        if let Some(errors) = errors {
            let _ = out.send(data(errors, FLAG_FIN, &[])).await;
        }
    };
    let connection = match TcpStream::connect(target).await {
        Ok(connection) => connection,
        Err(e) => {
            if let Some(errors) = errors {
                let message = format!("error forwarding port {} to pod: {e}", target.port());
                let _ = out.send(data(errors, 0, message.as_bytes())).await;
            }
            finish(&out).await;
            return;
        }
    };
    let (mut reading, mut writing) = connection.into_split();
    let to_pod = async move {
        while let Some(Some(bytes)) = from_client.recv().await {
            if writing.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = writing.shutdown().await;
    };
    // The pod done, both streams end from this side at once (the client
    // may still be sending): the client closes its connection then.
    let from_pod = async {
        let mut chunk = vec![0u8; 32 * 1024];
        loop {
            match reading.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.send(data(stream, 0, &chunk[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
        finish(&out).await;
    };
    tokio::join!(to_pod, from_pod);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_specifications() {
        let dictionary = dictionary();
        assert_eq!(dictionary.len(), 1423);
        assert_eq!(&dictionary[..11], b"\0\0\0\x07options");
        assert!(dictionary.ends_with(b"utf-,*,enq=0."));
    }

    #[test]
    fn frames_are_taken_whole_and_header_blocks_read_back() {
        let mut buffer = control(PING, 0, &[0, 0, 0, 1]);
        buffer.extend(data(3, FLAG_FIN, b"hi"));
        let partial = buffer.split_off(buffer.len() - 1);
        assert_eq!(
            take_frame(&mut buffer),
            Some(Frame::Control {
                kind: PING,
                flags: 0,
                payload: vec![0, 0, 0, 1]
            })
        );
        assert_eq!(take_frame(&mut buffer), None);
        buffer.extend(partial);
        assert_eq!(
            take_frame(&mut buffer),
            Some(Frame::Data {
                stream: 3,
                flags: FLAG_FIN,
                payload: b"hi".to_vec()
            })
        );
        // A client's block, compressed with the dictionary, reads back.
        let mut block = 2u32.to_be_bytes().to_vec();
        for (name, value) in [("streamType", "data"), ("port", "8080")] {
            block.extend((name.len() as u32).to_be_bytes());
            block.extend(name.as_bytes());
            block.extend((value.len() as u32).to_be_bytes());
            block.extend(value.as_bytes());
        }
        let mut client = Compress::new(Compression::default(), true);
        client.set_dictionary(&dictionary()).unwrap();
        let mut compressed = Vec::with_capacity(256);
        client
            .compress_vec(&block, &mut compressed, FlushCompress::Sync)
            .unwrap();
        let mut headers = Headers::new();
        let pairs = headers.read(&compressed).unwrap();
        assert_eq!(
            pairs,
            [
                ("streamtype".to_owned(), "data".to_owned()),
                ("port".to_owned(), "8080".to_owned())
            ]
        );
        // Our empty block inflates to a count of zero.
        let mut reader = Decompress::new(true);
        let mut plain = Vec::with_capacity(16);
        reader
            .decompress_vec(&headers.empty(), &mut plain, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(plain, [0, 0, 0, 0]);
    }

    /// `plain` deflated with the SPDY dictionary, flushed with `flush`.
    fn compressed(plain: &[u8], flush: FlushCompress) -> Vec<u8> {
        let mut client = Compress::new(Compression::default(), true);
        client.set_dictionary(&dictionary()).unwrap();
        let mut out = Vec::with_capacity(plain.len() + 1024);
        client.compress_vec(plain, &mut out, flush).unwrap();
        out
    }

    #[test]
    fn header_blocks_that_overrun_or_end_early_are_refused_at_once() {
        // A whole zlib stream followed by more bytes: once looped forever.
        let mut block = compressed(&[0, 0, 0, 0], FlushCompress::Finish);
        block.extend_from_slice(b"trailing bytes");
        let error = Headers::new().read(&block).unwrap_err();
        assert!(error.contains("after the end"), "{error}");
        // A small block that inflates to megabytes.
        let bomb = compressed(&vec![0; 8 << 20], FlushCompress::Sync);
        assert!(bomb.len() < 64 << 10);
        let error = Headers::new().read(&bomb).unwrap_err();
        assert!(error.contains("inflates past"), "{error}");
        // Just under the limit still reads (a count of zero and padding).
        let fits = compressed(&vec![0; MAX_HEADER_BLOCK - 1024], FlushCompress::Sync);
        assert_eq!(Headers::new().read(&fits).unwrap(), []);
    }
}
