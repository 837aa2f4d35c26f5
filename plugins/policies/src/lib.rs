//! The built-in admission policies, as Kubernetes' admission plugins of the
//! same names behave, with their messages: plain Rust over the admission
//! SDK's [`Policy`](wasmkube_admission_sdk::Policy) trait, unit-tested
//! natively. Each is exported as a Wasm component by a crate of its own in
//! `plugins/`; the API server embeds those components and calls them for
//! every write their rules match.
//!
//! | policy | mutates | refuses |
//! |---|---|---|
//! | [`NamespaceLifecycle`] | | new objects in a namespace being deleted or missing; deleting `default`, `kube-system`, `kube-public` |
//! | [`LimitRanger`] | containers' default requests and limits | requests and limits outside a LimitRange's min, max and ratio |
//! | [`PodSecurity`] | | pods above their namespace's Pod Security level (`enforce`); warns for `warn` |
//! | [`ServiceAccount`] | a pod's account (`default`), its token volume in every container, the account's pull secrets | pods naming an account that does not exist |
//! | [`ResourceQuota`] | | writes that take a namespace past a ResourceQuota, as its status counts it |

mod lifecycle;
mod limits;
mod pod_security;
mod quota;
mod service_account;

pub use lifecycle::NamespaceLifecycle;
pub use limits::LimitRanger;
pub use pod_security::PodSecurity;
pub use quota::ResourceQuota;
pub use service_account::ServiceAccount;

#[cfg(test)]
pub(crate) mod testing {
    //! A cluster of a few objects, for the policies' tests.

    use serde_json::{Value, json};
    use wasmkube_admission_sdk::{Cluster, Operation, Request};

    /// The create of a pod `p` with `spec` in the namespace `shop`.
    pub(crate) fn pod_in_shop(spec: Value) -> Request {
        let pod = json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec});
        Request::new(
            Operation::Create,
            ("", "v1", "pods"),
            "Pod",
            "shop",
            Some(pod),
            None,
        )
    }

    /// Objects by (resource, namespace, name).
    #[derive(Default)]
    pub(crate) struct Objects(pub(crate) Vec<(&'static str, &'static str, Value)>);

    impl Cluster for Objects {
        fn get(
            &self,
            _api_version: &str,
            resource: &str,
            namespace: &str,
            name: &str,
        ) -> Result<Option<Value>, String> {
            Ok(self
                .0
                .iter()
                .find(|(r, ns, o)| {
                    *r == resource && *ns == namespace && o["metadata"]["name"] == name
                })
                .map(|(_, _, o)| o.clone()))
        }

        fn list(
            &self,
            _api_version: &str,
            resource: &str,
            namespace: &str,
            _selector: &str,
            _limit: u32,
        ) -> Result<Vec<Value>, String> {
            Ok(self
                .0
                .iter()
                .filter(|(r, ns, _)| *r == resource && *ns == namespace)
                .map(|(_, _, o)| o.clone())
                .collect())
        }
    }
}
