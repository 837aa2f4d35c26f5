//! [`Encrypted`]: a [`Store`] in front of another that encrypts the values of
//! the configured resources on the way in and decrypts them on every way out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use wasmkube_store::{Bytes, Error, Event, KeyValue, Range, Result, Revision, Store, WatchStream};

use crate::config::EncryptionConfig;
use crate::provider::TransformError;

/// A store whose values, for the resources an [`EncryptionConfig`] names, are
/// kept encrypted in `inner`.
///
/// Creates and updates encrypt with the first provider of the key's resource;
/// gets, ranges (and so lists), deletes and watch events (their previous values
/// too) decrypt with whichever configured provider and key the stored value
/// names. Keys, revisions, TTLs, compaction and every error of `inner` pass
/// through unchanged. A value that cannot be decrypted is an
/// [`Error::Backend`] naming its key.
pub struct Encrypted {
    inner: Arc<dyn Store>,
    config: Arc<EncryptionConfig>,
}

impl std::fmt::Debug for Encrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encrypted")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Encrypted {
    /// `inner`, with the values of the resources `config` names encrypted.
    pub fn new(inner: Arc<dyn Store>, config: EncryptionConfig) -> Encrypted {
        Encrypted {
            inner,
            config: Arc::new(config),
        }
    }
}

fn backend(e: TransformError) -> Error {
    Error::Backend(Box::new(e))
}

/// `kv` with its value decrypted.
fn open(config: &EncryptionConfig, mut kv: KeyValue) -> Result<KeyValue> {
    kv.value = config.open(&kv.key, kv.value).map_err(backend)?;
    Ok(kv)
}

/// `event` with its values decrypted.
fn open_event(config: &EncryptionConfig, mut event: Event) -> Result<Event> {
    event.kv = open(config, event.kv)?;
    event.prev = event.prev.map(|prev| open(config, prev)).transpose()?;
    Ok(event)
}

#[async_trait]
impl Store for Encrypted {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner
            .get(key)
            .await?
            .map(|kv| open(&self.config, kv))
            .transpose()
    }

    async fn range(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<Range> {
        let mut range = self.inner.range(prefix, start, limit, revision).await?;
        range.items = range
            .items
            .into_iter()
            .map(|kv| open(&self.config, kv))
            .collect::<Result<_>>()?;
        Ok(range)
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue> {
        let sealed = self.config.seal(key, value.clone()).map_err(backend)?;
        let mut kv = self.inner.create(key, sealed, ttl).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue> {
        let sealed = self.config.seal(key, value.clone()).map_err(backend)?;
        let mut kv = self.inner.update(key, sealed, expected, ttl).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        open(&self.config, self.inner.delete(key, expected).await?)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let config = self.config.clone();
        let events = self.inner.watch(prefix, after).await?;
        Ok(Box::pin(events.map(move |event| {
            event.and_then(|event| open_event(&config, event))
        })))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn revision(&self) -> Result<Revision> {
        self.inner.revision().await
    }
}
