//! Resource names as an `EncryptionConfiguration` gives them (`secrets`,
//! `deployments.apps`, `*.`, `*.apps`, `*.*`), and which resource a store key
//! belongs to.
//!
//! Built-in kinds are found through the registry's storage roots
//! (`/registry/secrets/`, `/registry/services/specs/`, …); a custom resource is
//! kept under `/registry/<group>/<plural>/`, its group always holding a dot.

use std::fmt;

use wasmkube_types::registry::BUILTIN;

/// Where every resource is kept.
const ROOT: &str = "/registry/";

/// A resource and its API group, either of which may be `*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GroupResource {
    /// The group; "" for the core group.
    pub(crate) group: String,
    /// The plural resource name.
    pub(crate) resource: String,
}

impl GroupResource {
    /// `name` as Kubernetes reads it: the resource up to the first dot, the group
    /// after it (`deployments.apps`; `secrets` is in the core group, `*.` is every
    /// core resource, `*.*` everything).
    pub(crate) fn parse(name: &str) -> GroupResource {
        let (resource, group) = name.split_once('.').unwrap_or((name, ""));
        GroupResource {
            group: group.to_owned(),
            resource: resource.to_owned(),
        }
    }

    /// Whether this is `*.*`.
    pub(crate) fn is_everything(&self) -> bool {
        self.group == "*" && self.resource == "*"
    }

    /// Why Kubernetes refuses this name in a configuration, if it does.
    pub(crate) fn refusal(&self, name: &str) -> Option<&'static str> {
        if name.to_lowercase() != name {
            return Some("resource names are lower case");
        }
        if name == "*" {
            return Some(
                "use \"*.\" for every resource of the core group or \"*.*\" for every resource",
            );
        }
        if matches!(
            name,
            "apiserveripinfo" | "serviceipallocations" | "servicenodeportallocations"
        ) {
            return Some("it has no REST API, so it cannot be encrypted");
        }
        if self.group == "events.k8s.io" {
            return Some("events of events.k8s.io are stored as core events: name them \"events\"");
        }
        if self.group == "extensions" {
            return Some("the extensions group has been removed");
        }
        if self.group == "*" && self.resource != "*" {
            return Some("one resource cannot be encrypted across every group");
        }
        None
    }

    /// Whether a wildcard of this list covers another name in it.
    pub(crate) fn overlaps(&self, other: &GroupResource) -> bool {
        self.is_everything()
            || other.is_everything()
            || (self.group == other.group && (self.resource == "*" || other.resource == "*"))
    }
}

/// The name as a configuration writes it: `secrets`, `deployments.apps`, `*.`.
impl fmt::Display for GroupResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            if self.resource == "*" {
                f.write_str("*.")
            } else {
                f.write_str(&self.resource)
            }
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// The resource a store key belongs to, if the key is a resource's.
pub(crate) enum Owner<'a> {
    /// A built-in kind: the index of its storage root in [`builtin_roots`].
    Builtin(usize),
    /// A custom resource.
    Custom {
        /// Its group.
        group: &'a str,
        /// Its plural name.
        resource: &'a str,
    },
    /// A key under `/registry/` of no resource (an allocation of a port or an
    /// address).
    Other,
}

/// Every built-in storage root with the resource stored there, each once.
pub(crate) fn builtin_roots() -> Vec<(String, GroupResource)> {
    let mut roots: Vec<(String, GroupResource)> = Vec::new();
    for kind in BUILTIN {
        let Some(root) = kind.storage_root() else {
            continue;
        };
        if roots.iter().all(|(r, _)| *r != root) {
            roots.push((
                root,
                GroupResource {
                    group: kind.group.to_owned(),
                    resource: kind.plural.to_owned(),
                },
            ));
        }
    }
    roots
}

/// Whether a built-in kind is served in `group`.
pub(crate) fn is_builtin_group(group: &str) -> bool {
    BUILTIN.iter().any(|kind| kind.group == group)
}

/// Whether `resource` is a built-in kind stored in `group`.
pub(crate) fn is_builtin(group: &str, resource: &str) -> bool {
    BUILTIN
        .iter()
        .any(|kind| kind.group == group && kind.plural == resource && kind.storage_root().is_some())
}

/// Which resource `key` belongs to; `None` for a key outside `/registry/`.
pub(crate) fn owner<'a>(roots: &[(String, GroupResource)], key: &'a str) -> Option<Owner<'a>> {
    let rest = key.strip_prefix(ROOT)?;
    if let Some(index) = roots
        .iter()
        .position(|(root, _)| key.starts_with(root.as_str()))
    {
        return Some(Owner::Builtin(index));
    }
    if let Some((group, tail)) = rest.split_once('/')
        && group.contains('.')
        && let Some((resource, _)) = tail.split_once('/')
    {
        return Some(Owner::Custom { group, resource });
    }
    Some(Owner::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_kubernetes_parses_them() {
        let gr = |name| {
            let gr = GroupResource::parse(name);
            (gr.resource, gr.group)
        };
        assert_eq!(gr("secrets"), ("secrets".into(), "".into()));
        assert_eq!(
            gr("deployments.apps"),
            ("deployments".into(), "apps".into())
        );
        assert_eq!(
            gr("widgets.example.com"),
            ("widgets".into(), "example.com".into())
        );
        assert_eq!(gr("*."), ("*".into(), "".into()));
        assert_eq!(gr("*.*"), ("*".into(), "*".into()));
        for name in ["secrets", "deployments.apps", "*.", "*.*", "*.apps"] {
            assert_eq!(GroupResource::parse(name).to_string(), name);
        }
    }

    #[test]
    fn names_kubernetes_refuses_are_refused() {
        for name in [
            "Secrets",
            "*",
            "serviceipallocations",
            "events.events.k8s.io",
            "deployments.extensions",
            "secrets.*",
        ] {
            assert!(GroupResource::parse(name).refusal(name).is_some(), "{name}");
        }
        for name in ["secrets", "*.", "*.*", "*.apps", "widgets.example.com"] {
            assert_eq!(GroupResource::parse(name).refusal(name), None, "{name}");
        }
    }

    #[test]
    fn keys_find_their_resource() {
        let roots = builtin_roots();
        let builtin = |key| match owner(&roots, key) {
            Some(Owner::Builtin(i)) => roots[i].1.to_string(),
            _ => panic!("{key} is not a built-in kind's"),
        };
        assert_eq!(builtin("/registry/secrets/default/db"), "secrets");
        assert_eq!(
            builtin("/registry/deployments/default/web"),
            "deployments.apps"
        );
        assert_eq!(builtin("/registry/services/specs/default/web"), "services");
        assert_eq!(builtin("/registry/minions/n1"), "nodes");
        assert!(matches!(
            owner(&roots, "/registry/example.com/widgets/default/w"),
            Some(Owner::Custom {
                group: "example.com",
                resource: "widgets"
            })
        ));
        assert!(matches!(
            owner(&roots, "/registry/services/nodeports/30001"),
            Some(Owner::Other)
        ));
        assert!(owner(&roots, "/elsewhere/x").is_none());
    }
}
