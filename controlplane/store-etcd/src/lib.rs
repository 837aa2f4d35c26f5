//! The etcd backend of the [`Store`] trait, for clusters that outgrow one machine.
//!
//! Keys are used as given (`/registry/pods/default/web`, the layout of the
//! Kubernetes API server), revisions are etcd's own, and every compare-and-swap is
//! one etcd transaction. Watches resume by themselves after a dropped connection,
//! from the revision after the last event delivered, so nothing is lost or
//! repeated. Connecting retries a bounded number of times and then says which
//! endpoints could not be reached; reads retry the same way, writes never (a write
//! whose answer was lost may have happened).
//!
//! `https://` endpoints are reached over TLS ([`Tls`]: the CA of etcd's serving
//! certificates and a client certificate, as etcd asks with
//! `--client-cert-auth`), with rustls on the ring provider (the process-wide
//! default provider when one is installed).
//!
//! With the `server` feature, [`server::EtcdServer`] runs a local etcd process, for
//! tests and benchmarks.

#[cfg(feature = "server")]
pub mod server;

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType as EtcdEventType,
    GetOptions, Identity, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::task::JoinHandle;
use tonic::Code;
use wasmkube_store::{
    Bytes, DEFAULT_COMPACTION_INTERVAL, Error, Event, EventType, KeyValue, Range, Result, Revision,
    Store, WatchStream,
};

/// Keys read per request of a large range.
const RANGE_CHUNK: usize = 1000;
/// The largest answer accepted from etcd (its own limit on a request is 1.5 MiB
/// per value, so a chunk of values can be large).
const MAX_MESSAGE: usize = 1 << 30;

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct Options {
    /// Client URLs, `http://host:port` or `https://host:port` (all of one
    /// scheme).
    pub endpoints: Vec<String>,
    /// How `https://` endpoints are trusted and how the store proves who it
    /// is to them; `None` trusts the host's roots and shows no certificate.
    /// Only for `https://` endpoints.
    pub tls: Option<Tls>,
    /// How many times connecting, a read or a broken watch is tried before failing.
    pub attempts: u32,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// How often history is compacted (each run compacts to the revision the run
    /// before saw); `None` to compact only when asked.
    pub compaction_interval: Option<Duration>,
}

impl Options {
    /// Options for the given endpoints, with the defaults for everything else.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Options {
        Options {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            tls: None,
            attempts: 5,
            request_timeout: Duration::from_secs(10),
            compaction_interval: Some(DEFAULT_COMPACTION_INTERVAL),
        }
    }
}

/// The TLS of a store's connections to etcd (the Kubernetes API server's
/// `--etcd-cafile`, `--etcd-certfile` and `--etcd-keyfile`).
#[derive(Clone, Default)]
pub struct Tls {
    /// The CAs that sign etcd's serving certificates (PEM); `None` trusts the
    /// host's roots.
    pub ca_pem: Option<String>,
    /// The store's client certificate (PEM, chain first) and its private key
    /// (PEM), for an etcd that asks its clients for one.
    pub identity: Option<(String, String)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca_pem", &self.ca_pem.is_some())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl Tls {
    fn options(&self) -> TlsOptions {
        let options = match &self.ca_pem {
            Some(ca) => TlsOptions::new().ca_certificate(Certificate::from_pem(ca)),
            None => TlsOptions::new().with_native_roots(),
        };
        match &self.identity {
            Some((cert, key)) => options.identity(Identity::from_pem(cert, key)),
            None => options,
        }
    }
}

/// A store kept in etcd.
pub struct EtcdStore {
    client: Client,
    options: Options,
    compactor: Option<JoinHandle<()>>,
}

impl EtcdStore {
    /// Connects to etcd, trying `options.attempts` times before giving up with
    /// [`Error::Unavailable`].
    pub async fn connect(options: Options) -> Result<EtcdStore> {
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(options.request_timeout);
        let secure = options.endpoints.iter().any(|e| e.starts_with("https://"));
        match &options.tls {
            Some(tls) => connect = connect.with_tls(tls.options()),
            None if secure => connect = connect.with_tls(Tls::default().options()),
            None => {}
        }
        let client = retry(options.attempts, || async {
            let mut client = Client::connect(&options.endpoints, Some(connect.clone()))
                .await
                .map_err(map_error)?;
            // Connecting may be lazy: one read proves etcd answers.
            client.status().await.map_err(map_error)?;
            Ok(client)
        })
        .await
        .map_err(|e| {
            // etcd refuses a client without a certificate after the TLS
            // handshake, which the client sees as a dropped connection.
            let anonymous = secure && options.tls.as_ref().is_none_or(|t| t.identity.is_none());
            let hint = if anonymous {
                " (no client certificate was offered: an etcd with --client-cert-auth refuses such clients)"
            } else {
                ""
            };
            Error::Unavailable(format!(
                "etcd at {} unreachable after {} attempts: {e}{hint}",
                options.endpoints.join(","),
                options.attempts
            ))
        })?;
        let compactor = options
            .compaction_interval
            .map(|every| tokio::spawn(compact_periodically(client.clone(), every)));
        Ok(EtcdStore {
            client,
            options,
            compactor,
        })
    }

    async fn read<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        retry(self.options.attempts, || async {
            op(self.client.clone()).await.map_err(map_error)
        })
        .await
    }

    /// Put options that attach a lease of `ttl`, when there is one.
    async fn put_options(&self, ttl: Option<Duration>) -> Result<PutOptions> {
        let Some(ttl) = ttl else {
            return Ok(PutOptions::new());
        };
        let seconds = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let lease = self
            .read(|mut client| async move { client.lease_grant(seconds, None).await })
            .await?;
        Ok(PutOptions::new().with_lease(lease.id()))
    }

    /// Runs a write. With several members, a request may go to one that is
    /// gone: a write that never reached a member is sent again (one that
    /// might have been applied is not, since it could apply twice).
    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse> {
        let mut attempt = 1;
        loop {
            match self.client.clone().txn(txn.clone()).await {
                Err(e) if never_sent(&e) && attempt < self.options.attempts => {
                    tracing::debug!(attempt, error = %e, "etcd member unreachable; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                result => return result.map_err(map_error),
            }
        }
    }
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.options.endpoints)
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(task) = self.compactor.take() {
            task.abort();
        }
    }
}

/// Runs `op` up to `attempts` times while it fails with [`Error::Unavailable`].
async fn retry<T, F, Fut>(attempts: u32, op: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(Error::Unavailable(why)) if attempt < attempts => {
                tracing::debug!(attempt, error = %why, "etcd unavailable; retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 << attempt.min(4))
}

/// Compacts every `every` to the revision seen `every` before, as the Kubernetes
/// API server does.
async fn compact_periodically(client: Client, every: Duration) {
    let mut seen: Option<Revision> = None;
    loop {
        tokio::time::sleep(every).await;
        let mut client = client.clone();
        if let Some(revision) = seen {
            match client.compact(revision, None).await.map_err(map_error) {
                Ok(_) | Err(Error::Expired { .. }) => {}
                Err(e) => tracing::warn!(revision, error = %e, "etcd compaction failed"),
            }
        }
        match client.status().await {
            Ok(status) => seen = status.header().map(|h| h.revision()),
            Err(e) => tracing::warn!(error = %e, "etcd status failed"),
        }
    }
}

/// Maps an etcd client error to the store's.
fn map_error(error: etcd_client::Error) -> Error {
    use etcd_client::Error as E;
    match error {
        E::GRpcStatus(status) => {
            let message = status.message();
            if message.contains("required revision has been compacted") {
                Error::Expired { requested: 0 }
            } else if message.contains("required revision is a future revision") {
                Error::FutureRevision { requested: 0 }
            } else if message.contains("request is too large") {
                // The key and value fit, but etcd's framing took it over.
                Error::TooLarge {
                    key: String::new(),
                    size: wasmkube_store::MAX_REQUEST_BYTES,
                    limit: wasmkube_store::MAX_REQUEST_BYTES,
                }
            } else {
                match status.code() {
                    Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                        Error::Unavailable(message.to_owned())
                    }
                    // A connection that broke under a request (etcd died or
                    // went away) comes as Unknown, caused by an I/O error.
                    Code::Unknown if caused_by_io(&status) => {
                        Error::Unavailable(format!("{message}: the connection to etcd broke"))
                    }
                    _ => Error::Backend(Box::new(E::GRpcStatus(status))),
                }
            }
        }
        E::TransportError(e) => Error::Unavailable(e.to_string()),
        E::IoError(e) => Error::Unavailable(e.to_string()),
        other => Error::Backend(Box::new(other)),
    }
}

/// Whether a request failed before reaching etcd: its connection could not
/// be made.
fn never_sent(error: &etcd_client::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        if e.to_string().contains("tcp connect error") {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Whether an I/O error is among the causes of `error`.
fn caused_by_io(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = error.source();
    while let Some(e) = cause {
        if e.is::<std::io::Error>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Puts the revision asked for into errors etcd reports without it.
fn at_revision(error: Error, revision: Revision) -> Error {
    match error {
        Error::Expired { .. } => Error::Expired {
            requested: revision,
        },
        Error::FutureRevision { .. } => Error::FutureRevision {
            requested: revision,
        },
        other => other,
    }
}

fn key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| h.revision())
}

/// The key as found by the `get` of a failed transaction, if it exists.
fn found(response: &etcd_client::TxnResponse) -> Option<KeyValue> {
    response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().map(key_value),
        _ => None,
    })
}

/// Why a compare-and-swap on `key` failed, from what the transaction found.
fn cas_failure(key: &str, expected: Option<Revision>, found: Option<KeyValue>) -> Error {
    match (found, expected) {
        (None, _) => Error::NotFound {
            key: key.to_owned(),
        },
        (Some(kv), expected) => Error::Conflict {
            key: key.to_owned(),
            expected: expected.unwrap_or(0),
            current: kv.mod_revision,
        },
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let response = self
            .read(|mut c| async move { c.get(key, None).await })
            .await?;
        Ok(response.kvs().first().map(key_value))
    }

    async fn range(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<Range> {
        // Large ranges are read in chunks at one revision, so that no answer of
        // etcd grows past what a gRPC message may hold.
        let end = prefix_end(prefix);
        let mut from = format!("{prefix}{start}").into_bytes();
        let mut at = revision;
        let mut items = Vec::new();
        loop {
            let want = match limit {
                0 => RANGE_CHUNK,
                limit => (limit - items.len()).min(RANGE_CHUNK),
            };
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(want as i64);
            if let Some(revision) = at {
                options = options.with_revision(revision);
            }
            let response = self
                .read(|c| {
                    let (from, options) = (from.clone(), options.clone());
                    async move {
                        c.kv_client()
                            .max_decoding_message_size(MAX_MESSAGE)
                            .get(from, Some(options))
                            .await
                    }
                })
                .await
                .map_err(|e| at_revision(e, revision.unwrap_or(0)))?;
            let read_at = *at.get_or_insert_with(|| header_revision(response.header()));
            let chunk = response.kvs();
            items.extend(chunk.iter().map(key_value));
            let remaining = response.count() - chunk.len() as i64;
            match chunk.last() {
                Some(last) if remaining > 0 && (limit == 0 || items.len() < limit) => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => {
                    return Ok(Range {
                        items,
                        revision: read_at,
                        remaining,
                    });
                }
            }
        }
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue> {
        wasmkube_store::check_size(key, &value)?;
        let put = self.put_options(ttl).await?;
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), Some(put))])
            .or_else([TxnOp::get(key, None)]);
        let response = self.txn(txn).await?;
        if !response.succeeded() {
            return Err(Error::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let revision = header_revision(response.header());
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue> {
        wasmkube_store::check_size(key, &value)?;
        let put = self.put_options(ttl).await?.with_prev_key();
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value.to_vec(), Some(put))])
            .or_else([TxnOp::get(key, None)]);
        let response = self.txn(txn).await?;
        if !response.succeeded() {
            return Err(cas_failure(key, Some(expected), found(&response)));
        }
        let created = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
            _ => None,
        });
        let revision = header_revision(response.header());
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: created.unwrap_or(revision),
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let condition = match expected {
            Some(revision) => Compare::mod_revision(key, CompareOp::Equal, revision),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([condition])
            .and_then([TxnOp::delete(
                key,
                Some(etcd_client::DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self.txn(txn).await?;
        if !response.succeeded() {
            return Err(cas_failure(key, expected, found(&response)));
        }
        let revision = header_revision(response.header());
        let prev = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(delete) => delete.prev_kvs().first().map(key_value),
            _ => None,
        });
        // Deleted between the compare and the delete cannot happen in one
        // transaction; an empty answer means the key was already gone.
        let prev = prev.ok_or_else(|| Error::NotFound {
            key: key.to_owned(),
        })?;
        Ok(KeyValue {
            mod_revision: revision,
            ..prev
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let client = self.client.clone();
        let prefix = prefix.to_owned();
        let attempts = self.options.attempts;
        Ok(Box::pin(async_stream::stream! {
            let mut last = after;
            let mut failures = 0;
            'connect: loop {
                let options = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(last + 1)
                    .with_prev_key();
                let mut stream = match client.watch_client().watch(prefix.as_str(), Some(options)).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        failures += 1;
                        if failures >= attempts {
                            yield Err(Error::Unavailable(format!("watch of {prefix} lost: {e}")));
                            break 'connect;
                        }
                        tokio::time::sleep(backoff(failures)).await;
                        continue 'connect;
                    }
                };
                loop {
                    match stream.message().await {
                        Ok(Some(response)) => {
                            failures = 0;
                            if response.compact_revision() > 0 {
                                yield Err(Error::Expired { requested: last + 1 });
                                break 'connect;
                            }
                            if response.canceled() {
                                let why = response.cancel_reason().to_owned();
                                yield Err(Error::Unavailable(format!("watch of {prefix} canceled: {why}")));
                                break 'connect;
                            }
                            for event in response.events() {
                                if let Some(event) = convert(event) {
                                    last = event.revision();
                                    yield Ok(event);
                                }
                            }
                        }
                        Ok(None) | Err(_) => {
                            tracing::debug!(prefix, last, "etcd watch broken; resuming");
                            failures += 1;
                            tokio::time::sleep(backoff(failures)).await;
                            continue 'connect;
                        }
                    }
                }
            }
        }))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.client
            .clone()
            .compact(revision, None)
            .await
            .map_err(|e| at_revision(map_error(e), revision))?;
        Ok(())
    }

    async fn revision(&self) -> Result<Revision> {
        let response = self.read(|mut c| async move { c.status().await }).await?;
        Ok(header_revision(response.header()))
    }
}

/// A watch event of etcd as the store's.
fn convert(event: &etcd_client::Event) -> Option<Event> {
    let kv = event.kv()?;
    let prev = event.prev_kv().map(key_value);
    Some(match event.event_type() {
        EtcdEventType::Put if kv.create_revision() == kv.mod_revision() => Event {
            kind: EventType::Added,
            kv: key_value(kv),
            prev: None,
        },
        EtcdEventType::Put => Event {
            kind: EventType::Modified,
            kv: key_value(kv),
            prev,
        },
        EtcdEventType::Delete => Event {
            kind: EventType::Deleted,
            kv: KeyValue {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: prev.as_ref().map_or_else(Bytes::new, |p| p.value.clone()),
                create_revision: prev.as_ref().map_or(0, |p| p.create_revision),
                mod_revision: kv.mod_revision(),
            },
            prev,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0");
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80");
        assert_eq!(prefix_end(""), [0]);
    }

    #[test]
    fn a_request_cut_by_a_broken_connection_is_unavailable() {
        let broken = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let status = tonic::Status::from_error(Box::new(broken));
        assert_eq!(status.code(), Code::Unknown);
        let mapped = map_error(etcd_client::Error::GRpcStatus(status));
        assert!(matches!(mapped, Error::Unavailable(_)), "{mapped:?}");
        let refused = tonic::Status::new(Code::Unknown, "something else");
        let mapped = map_error(etcd_client::Error::GRpcStatus(refused));
        assert!(matches!(mapped, Error::Backend(_)), "{mapped:?}");
    }
}
