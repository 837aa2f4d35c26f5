//! The authorizer: an [`Index`] behind a lock, kept current from the store.

use std::sync::{Arc, RwLockReadGuard, RwLockWriteGuard};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use wasmkube_apiserver::access::{Attributes, Authorizer, Decision, Rules, UserInfo};
use wasmkube_store::{KeyValue, Store};

use crate::follow::{Mirror, Shared, Source, follow};
use crate::index::{Index, Kind};
use crate::{Error, Result};

/// Kubernetes' RBAC authorizer: decisions and rules from a shared [`Index`].
/// Clones share the index.
#[derive(Clone, Debug, Default)]
pub struct Rbac {
    index: Shared<Index>,
}

impl Rbac {
    /// An authorizer over `index`, which its owner keeps current through
    /// [`Rbac::write`].
    pub fn new(index: Index) -> Rbac {
        Rbac {
            index: Shared::new(index),
        }
    }

    /// The index, to read.
    pub fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read()
    }

    /// The index, to change.
    pub fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write()
    }

    /// An authorizer over the RBAC objects in `store`, kept current by
    /// watching them until `closing`. Returns once every object is loaded;
    /// after a watch fails (history compacted, watcher too slow, store gone)
    /// the kind is listed again.
    pub async fn follow(store: Arc<dyn Store>, closing: CancellationToken) -> Result<Rbac> {
        let rbac = Rbac::default();
        let sources = Kind::ALL
            .into_iter()
            .map(|kind| {
                let prefix = storage_root(kind);
                let mirror = Arc::new(Objects {
                    rbac: rbac.clone(),
                    kind,
                    prefix: prefix.clone(),
                });
                Source { prefix, mirror }
            })
            .collect();
        follow(store, sources, closing).await?;
        Ok(rbac)
    }
}

/// The objects of one kind, as the index holds them.
struct Objects {
    rbac: Rbac,
    kind: Kind,
    prefix: String,
}

impl Mirror for Objects {
    fn reset(&self, objects: &[KeyValue]) {
        let (kind, prefix) = (self.kind, self.prefix.as_str());
        let mut index = self.rbac.write();
        let present: std::collections::HashSet<(String, String)> = objects
            .iter()
            .filter_map(|kv| key_names(prefix, kind, &kv.key))
            .collect();
        for (namespace, name) in index.names(kind) {
            if !present.contains(&(namespace.clone(), name.clone())) {
                index.remove(kind, &namespace, &name);
            }
        }
        for kv in objects {
            put(&mut index, prefix, kind, kv);
        }
    }

    fn put(&self, kv: &KeyValue) {
        put(&mut self.rbac.write(), &self.prefix, self.kind, kv);
    }

    fn remove(&self, key: &str) {
        if let Some((namespace, name)) = key_names(&self.prefix, self.kind, key) {
            self.rbac.write().remove(self.kind, &namespace, &name);
        }
    }
}

fn storage_root(kind: Kind) -> String {
    kind.resource()
        .storage_root()
        .expect("the RBAC kinds are stored")
}

/// The namespace ("" for the cluster kinds) and name a store key names.
fn key_names(prefix: &str, kind: Kind, key: &str) -> Option<(String, String)> {
    let rest = key.strip_prefix(prefix)?;
    if kind == Kind::Role || kind == Kind::RoleBinding {
        let (namespace, name) = rest.split_once('/')?;
        Some((namespace.to_owned(), name.to_owned()))
    } else {
        Some((String::new(), rest.to_owned()))
    }
}

/// Puts the object stored as `kv` in the index; one that cannot be read as
/// its kind is taken out, so that it grants nothing.
fn put(index: &mut Index, prefix: &str, kind: Kind, kv: &KeyValue) {
    let applied = serde_json::from_slice::<Value>(&kv.value)
        .map_err(|source| Error::Decode {
            kind,
            name: kv.key.clone(),
            source,
        })
        .and_then(|object| index.apply(kind, &object));
    if let Err(e) = applied {
        tracing::warn!(key = %kv.key, error = %e, "ignoring an RBAC object");
        if let Some((namespace, name)) = key_names(prefix, kind, &kv.key) {
            index.remove(kind, &namespace, &name);
        }
    }
}

impl Authorizer for Rbac {
    fn authorize<'a>(&'a self, attributes: &'a Attributes) -> BoxFuture<'a, Decision> {
        let decision = self.read().authorize(attributes);
        futures::future::ready(decision).boxed()
    }

    fn rules(&self, user: &UserInfo, namespace: &str) -> Rules {
        self.read().rules(user, namespace)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use serde_json::json;
    use wasmkube_apiserver::access::ResourceAttributes;
    use wasmkube_store::{Bytes, Range, Revision, WatchStream};
    use wasmkube_store_embedded::{EmbeddedStore, Options};

    use super::*;

    /// A store whose first watches fail, as after a compaction.
    struct Forgetful {
        inner: EmbeddedStore,
        failures: AtomicUsize,
    }

    #[async_trait]
    impl Store for Forgetful {
        async fn get(&self, key: &str) -> wasmkube_store::Result<Option<KeyValue>> {
            self.inner.get(key).await
        }
        async fn range(
            &self,
            prefix: &str,
            start: &str,
            limit: usize,
            revision: Option<Revision>,
        ) -> wasmkube_store::Result<Range> {
            self.inner.range(prefix, start, limit, revision).await
        }
        async fn create(
            &self,
            key: &str,
            value: Bytes,
            ttl: Option<Duration>,
        ) -> wasmkube_store::Result<KeyValue> {
            self.inner.create(key, value, ttl).await
        }
        async fn update(
            &self,
            key: &str,
            value: Bytes,
            expected: Revision,
            ttl: Option<Duration>,
        ) -> wasmkube_store::Result<KeyValue> {
            self.inner.update(key, value, expected, ttl).await
        }
        async fn delete(
            &self,
            key: &str,
            expected: Option<Revision>,
        ) -> wasmkube_store::Result<KeyValue> {
            self.inner.delete(key, expected).await
        }
        async fn watch(
            &self,
            prefix: &str,
            after: Revision,
        ) -> wasmkube_store::Result<WatchStream> {
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                return Err(wasmkube_store::Error::Expired { requested: after });
            }
            self.inner.watch(prefix, after).await
        }
        async fn compact(&self, revision: Revision) -> wasmkube_store::Result<()> {
            self.inner.compact(revision).await
        }
        async fn revision(&self) -> wasmkube_store::Result<Revision> {
            self.inner.revision().await
        }
    }

    fn ask(user: &str, verb: &str, namespace: &str) -> Attributes {
        Attributes {
            user: UserInfo {
                name: user.into(),
                ..UserInfo::default()
            },
            verb: verb.into(),
            resource: Some(ResourceAttributes {
                group: String::new(),
                version: "v1".into(),
                resource: "pods".into(),
                subresource: String::new(),
                namespace: namespace.into(),
                name: String::new(),
            }),
            path: String::new(),
        }
    }

    async fn write(store: &dyn Store, kind: Kind, namespace: Option<&str>, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap();
        let key = kind.resource().storage_key(namespace, name).unwrap();
        let value = Bytes::from(serde_json::to_vec(&object).unwrap());
        match store.get(&key).await.unwrap() {
            Some(old) => drop(
                store
                    .update(&key, value, old.mod_revision, None)
                    .await
                    .unwrap(),
            ),
            None => drop(store.create(&key, value, None).await.unwrap()),
        }
    }

    fn reader(verbs: &[&str]) -> Value {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": verbs}],
        })
    }

    fn bind(namespace: &str, user: &str) -> Value {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "read", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"},
            "subjects": [{"kind": "User", "name": user}],
        })
    }

    async fn eventually(rbac: &Rbac, attributes: &Attributes, expected: &Decision) {
        for _ in 0..200 {
            if rbac.authorize(attributes).await == *expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{attributes:?} never became {expected:?}");
    }

    #[tokio::test]
    async fn follows_the_store_and_lists_again_when_a_watch_fails() {
        let dir = tempfile::tempdir().unwrap();
        let inner = EmbeddedStore::open(dir.path().join("store.db"), Options::default()).unwrap();
        let store: Arc<dyn Store> = Arc::new(Forgetful {
            inner,
            failures: AtomicUsize::new(2),
        });
        write(store.as_ref(), Kind::ClusterRole, None, reader(&["get"])).await;
        write(
            store.as_ref(),
            Kind::RoleBinding,
            Some("web"),
            bind("web", "alice"),
        )
        .await;
        // Not a role: ignored, granting nothing.
        let junk = Bytes::from_static(b"not json");
        store
            .create("/registry/clusterroles/junk", junk, None)
            .await
            .unwrap();

        let closing = CancellationToken::new();
        let rbac = Rbac::follow(store.clone(), closing.clone()).await.unwrap();
        // Ready on return.
        assert_eq!(
            rbac.authorize(&ask("alice", "get", "web")).await,
            Decision::Allow
        );
        assert_eq!(rbac.read().names(Kind::ClusterRole).len(), 1);

        let none = Decision::NoOpinion(String::new());
        write(
            store.as_ref(),
            Kind::ClusterRole,
            None,
            reader(&["get", "list"]),
        )
        .await;
        eventually(&rbac, &ask("alice", "list", "web"), &Decision::Allow).await;
        write(
            store.as_ref(),
            Kind::RoleBinding,
            Some("db"),
            bind("db", "alice"),
        )
        .await;
        eventually(&rbac, &ask("alice", "get", "db"), &Decision::Allow).await;
        let key = Kind::RoleBinding
            .resource()
            .storage_key(Some("web"), "read")
            .unwrap();
        store.delete(&key, None).await.unwrap();
        eventually(&rbac, &ask("alice", "get", "web"), &none).await;
        store
            .delete("/registry/clusterroles/reader", None)
            .await
            .unwrap();
        let missing = Decision::NoOpinion(
            r#"RBAC: clusterrole.rbac.authorization.k8s.io "reader" not found"#.into(),
        );
        eventually(&rbac, &ask("alice", "get", "db"), &missing).await;
        assert_eq!(
            rbac.rules(&ask("alice", "", "").user, "db"),
            Rules::default()
        );
        closing.cancel();
    }

    #[test]
    fn store_keys_name_objects() {
        let roles = storage_root(Kind::Role);
        assert_eq!(roles, "/registry/roles/");
        assert_eq!(
            key_names(&roles, Kind::Role, "/registry/roles/web/r"),
            Some(("web".into(), "r".into()))
        );
        assert_eq!(key_names(&roles, Kind::Role, "/registry/roles/web"), None);
        let cluster = storage_root(Kind::ClusterRole);
        assert_eq!(
            key_names(
                &cluster,
                Kind::ClusterRole,
                "/registry/clusterroles/system:node"
            ),
            Some((String::new(), "system:node".into()))
        );
    }
}
