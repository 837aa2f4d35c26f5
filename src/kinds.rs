//! The kinds a server serves, from its aggregated discovery documents (`/api`
//! and `/apis`, the two requests kubectl makes first): kube's `ApiResource`
//! and `ApiCapabilities` for each, with the names kubectl takes for it —
//! plural, singular, kind or short name, optionally followed by its group
//! (`po`, `deploy`, `deployments.apps`). kube's own `Discovery` keeps neither
//! singular nor short names, so the documents are read here, once.

use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::core::discovery::v2::{APIGroupDiscovery, APIResourceDiscovery};
use kube::core::{GroupVersionKind, Resource, TypeMeta};
use kube::discovery::{ApiCapabilities, ApiResource, Scope};

/// A kind the server serves, at its group's preferred version.
#[derive(Clone, Debug)]
pub struct Kind {
    /// Group, version, kind and plural, as kube's dynamic `Api` takes them.
    pub resource: ApiResource,
    /// Its scope, verbs and subresources.
    pub capabilities: ApiCapabilities,
    /// `deployment`.
    pub singular: String,
    /// `deploy`.
    pub short_names: Vec<String>,
}

impl Kind {
    /// The kind a discovery entry describes, in `group` at `version`.
    fn new(group: &str, version: &str, entry: APIResourceDiscovery) -> Kind {
        let scope = match entry.scope.as_deref() {
            Some("Namespaced") => Scope::Namespaced,
            _ => Scope::Cluster,
        };
        let kind_of = |gvk: Option<kube::core::discovery::v2::GroupVersionKind>| {
            gvk.and_then(|k| k.kind).unwrap_or_default()
        };
        let resource = |kind: &str, plural: &str| {
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
        };
        let subresources = entry
            .subresources
            .into_iter()
            .map(|sub| {
                let name = sub.subresource.unwrap_or_default();
                let capabilities = ApiCapabilities {
                    scope: scope.clone(),
                    subresources: Vec::new(),
                    operations: sub.verbs,
                };
                (resource(&kind_of(sub.response_kind), &name), capabilities)
            })
            .collect();
        let kind = kind_of(entry.response_kind);
        let singular = match entry.singular_resource {
            Some(singular) if !singular.is_empty() => singular,
            _ => kind.to_lowercase(),
        };
        Kind {
            resource: resource(&kind, &entry.resource.unwrap_or_default()),
            capabilities: ApiCapabilities {
                scope,
                subresources,
                operations: entry.verbs,
            },
            singular,
            short_names: entry.short_names,
        }
    }

    /// Whether its objects live in namespaces.
    pub fn namespaced(&self) -> bool {
        self.capabilities.scope == Scope::Namespaced
    }

    /// Its objects in `namespace` (if it has namespaces), else everywhere.
    pub fn api(&self, client: &Client, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace.filter(|_| self.namespaced()) {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &self.resource),
            None => Api::all_with(client.clone(), &self.resource),
        }
    }

    /// The path of its collection in `namespace` (if it has namespaces),
    /// else of all of it.
    pub fn url_path(&self, namespace: Option<&str>) -> String {
        DynamicObject::url_path(&self.resource, namespace.filter(|_| self.namespaced()))
    }

    /// How kubectl names an object of this kind: `deployment.apps/web`.
    pub fn qualified(&self, name: &str) -> String {
        match self.resource.group.as_str() {
            "" => format!("{}/{name}", self.singular),
            group => format!("{}.{group}/{name}", self.singular),
        }
    }
}

/// Every kind a server serves.
#[derive(Debug, Default)]
pub struct Kinds(Vec<Kind>);

impl Kinds {
    /// Reads the server's aggregated discovery documents: the core group's,
    /// then every other group's.
    pub async fn discover(client: &Client) -> kube::Result<Kinds> {
        let core = client.list_core_api_versions_aggregated().await?;
        let groups = client.list_api_groups_aggregated().await?;
        Ok(Kinds::of_groups(core.items.into_iter().chain(groups.items)))
    }

    /// The kinds of each group's preferred (first) version.
    fn of_groups(groups: impl Iterator<Item = APIGroupDiscovery>) -> Kinds {
        let mut kinds = Vec::new();
        for group in groups {
            let name = group.metadata.and_then(|m| m.name).unwrap_or_default();
            let Some(preferred) = group.versions.into_iter().next() else {
                continue;
            };
            let version = preferred.version.unwrap_or_default();
            let served = preferred.resources.into_iter();
            kinds.extend(served.map(|entry| Kind::new(&name, &version, entry)));
        }
        Kinds(kinds)
    }

    /// Whether the server serves no kind at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The kind `name` names: plural, singular, kind or short name, each
    /// optionally followed by `.group`.
    pub fn named(&self, name: &str) -> Option<&Kind> {
        let name = name.to_ascii_lowercase();
        let (word, group) = match name.split_once('.') {
            Some((word, group)) => (word, Some(group)),
            None => (name.as_str(), None),
        };
        let named = |k: &&Kind| {
            let r = &k.resource;
            (r.plural == word
                || k.singular == word
                || r.kind.eq_ignore_ascii_case(word)
                || k.short_names.iter().any(|s| s == word))
                && group.is_none_or(|g| r.group == g || r.group.starts_with(&format!("{g}.")))
        };
        // The core group wins a name several groups use (`events`).
        self.0
            .iter()
            .filter(named)
            .min_by_key(|k| !k.resource.group.is_empty())
    }

    /// The kind of an object's `apiVersion` and `kind`.
    pub fn of(&self, types: &TypeMeta) -> Option<&Kind> {
        self.0
            .iter()
            .find(|k| k.resource.api_version == types.api_version && k.resource.kind == types.kind)
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use serde_json::json;

    /// A kind as a discovery document describes it.
    pub fn kind(group: &str, plural: &str, kind: &str, short: &[&str], scope: &str) -> Kind {
        let entry = json!({
            "resource": plural, "responseKind": {"group": group, "version": "v1", "kind": kind},
            "scope": scope, "shortNames": short, "verbs": ["get", "list"],
            "subresources": [{"subresource": "status", "responseKind": {"kind": kind},
                              "verbs": ["get"]}],
        });
        Kind::new(group, "v1", serde_json::from_value(entry).unwrap())
    }

    #[test]
    fn kinds_are_found_by_every_name_kubectl_takes() {
        let all = Kinds(vec![
            kind("", "pods", "Pod", &["po"], "Namespaced"),
            kind(
                "apps",
                "deployments",
                "Deployment",
                &["deploy"],
                "Namespaced",
            ),
            kind("events.k8s.io", "events", "Event", &[], "Namespaced"),
            kind("", "events", "Event", &["ev"], "Namespaced"),
        ]);
        for name in ["pods", "pod", "po", "Pod", "pods."] {
            let found = all.named(name.trim_end_matches('.'));
            assert_eq!(
                found.map(|k| k.resource.kind.as_str()),
                Some("Pod"),
                "{name}"
            );
        }
        for name in ["deploy", "deployments.apps", "deployment.apps"] {
            assert_eq!(all.named(name).unwrap().resource.group, "apps", "{name}");
        }
        assert_eq!(all.named("events").unwrap().resource.group, "");
        let events = all.named("events.events").unwrap();
        assert_eq!(events.resource.group, "events.k8s.io");
        assert!(all.named("deployments.batch").is_none());
        assert!(all.named("nothing").is_none());
        let types = TypeMeta {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
        };
        assert_eq!(all.of(&types).unwrap().resource.plural, "deployments");
    }

    #[test]
    fn discovery_documents_become_kinds_at_the_preferred_version() {
        let groups = json!([{
            "metadata": {"name": "apps"},
            "versions": [
                {"version": "v1", "resources": [{
                    "resource": "deployments", "singularResource": "deployment",
                    "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                    "scope": "Namespaced", "shortNames": ["deploy"], "verbs": ["get", "list"],
                    "subresources": [{"subresource": "scale", "verbs": ["get"],
                        "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}}]}]},
                {"version": "v1beta1", "resources": [{"resource": "old", "verbs": []}]}]
        }]);
        let groups: Vec<APIGroupDiscovery> = serde_json::from_value(groups).unwrap();
        let kinds = Kinds::of_groups(groups.into_iter());
        let [deployments] = kinds.0.as_slice() else {
            panic!("{kinds:?}");
        };
        assert_eq!(deployments.resource.api_version, "apps/v1");
        assert_eq!(deployments.short_names, ["deploy"]);
        assert!(deployments.namespaced());
        assert_eq!(deployments.capabilities.subresources[0].0.plural, "scale");
    }

    #[test]
    fn paths_and_names_follow_the_group() {
        let deploy = kind("apps", "deployments", "Deployment", &[], "Namespaced");
        assert_eq!(
            deploy.url_path(Some("shop")),
            "/apis/apps/v1/namespaces/shop/deployments"
        );
        assert_eq!(deploy.qualified("web"), "deployment.apps/web");
        let node = kind("", "nodes", "Node", &[], "Cluster");
        assert_eq!(node.url_path(Some("shop")), "/api/v1/nodes");
        assert_eq!(node.qualified("n1"), "node/n1");
    }
}
