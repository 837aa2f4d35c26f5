//! Which part of the API a request path names.

use wasmkube_types::ResourceType;

use crate::crd::Kinds;
use crate::error::{ApiError, ApiResult};

/// What a path under `/api` or `/apis` names.
#[derive(Debug, PartialEq)]
pub enum Route {
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: every group.
    Groups,
    /// `/apis/<group>`: one group.
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`: the resources of a group-version.
    Resources {
        /// The group ("" for core).
        group: String,
        /// The version.
        version: String,
    },
    /// Objects of one kind.
    Objects(Target),
}

/// A collection, an object or an object's subresource.
#[derive(Debug, PartialEq)]
pub struct Target {
    /// The kind.
    pub resource: &'static ResourceType,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The object's name, if the path names one.
    pub name: Option<String>,
    /// The subresource, if the path names one.
    pub subresource: Option<String>,
}

/// Reads a path (without the query), against the kinds served.
pub fn parse(path: &str, kinds: &Kinds) -> ApiResult<Route> {
    let group_versions = kinds.group_versions();
    let all = kinds.all();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["apis", group] => {
            if group_versions.iter().any(|(g, _)| g == group) {
                return Ok(Route::Group((*group).to_owned()));
            }
            return Err(ApiError::no_such_path());
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_such_path()),
    };
    if !group_versions.contains(&(group, version)) {
        return Err(ApiError::no_such_path());
    }
    let find = |plural: &str| {
        all.iter()
            .copied()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    };
    let owned = |s: &&str| (*s).to_owned();
    let (resource, namespace, rest) = match rest {
        [] => {
            return Ok(Route::Resources {
                group: group.to_owned(),
                version: version.to_owned(),
            });
        }
        // `namespaces/<ns>/<plural>…` when <plural> is a namespaced kind; otherwise
        // the path names a Namespace object (or its subresource).
        ["namespaces", ns, plural, rest @ ..] if find(plural).is_some_and(|r| r.namespaced) => {
            (find(plural).expect("found"), Some(owned(ns)), rest)
        }
        [plural, rest @ ..] => (find(plural).ok_or_else(ApiError::no_such_path)?, None, rest),
    };
    let (name, subresource) = match rest {
        [] => (None, None),
        [name] => (Some(owned(name)), None),
        [name, sub] => {
            if resource.subresource(sub).is_none() {
                return Err(ApiError::no_such_path());
            }
            (Some(owned(name)), Some(owned(sub)))
        }
        _ => return Err(ApiError::no_such_path()),
    };
    if let Some(name) = &name
        && (name.is_empty() || name == "." || name == ".." || name.contains('%'))
    {
        return Err(ApiError::bad_request(format!(
            "invalid resource name {name:?}"
        )));
    }
    if let Some(ns) = &namespace
        && ns.is_empty()
    {
        return Err(ApiError::no_such_path());
    }
    Ok(Route::Objects(Target {
        resource,
        namespace,
        name,
        subresource,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> (String, Option<String>, Option<String>, Option<String>) {
        match parse(path, &Kinds::default()).unwrap() {
            Route::Objects(t) => (
                t.resource.plural.to_owned(),
                t.namespace,
                t.name,
                t.subresource,
            ),
            other => panic!("{path}: {other:?}"),
        }
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(
            parse("/api", &Kinds::default()).unwrap(),
            Route::CoreVersions
        );
        assert_eq!(
            parse("/api/", &Kinds::default()).unwrap(),
            Route::CoreVersions
        );
        assert_eq!(parse("/apis", &Kinds::default()).unwrap(), Route::Groups);
        assert_eq!(
            parse("/apis/apps", &Kinds::default()).unwrap(),
            Route::Group("apps".into())
        );
        assert_eq!(
            parse("/apis/apps/v1", &Kinds::default()).unwrap(),
            Route::Resources {
                group: "apps".into(),
                version: "v1".into()
            }
        );
        assert_eq!(
            parse("/apis/apps/v2", &Kinds::default()),
            Err(ApiError::no_such_path())
        );
        assert_eq!(
            parse("/apis/nope", &Kinds::default()),
            Err(ApiError::no_such_path())
        );
    }

    #[test]
    fn object_paths() {
        assert_eq!(target("/api/v1/pods"), ("pods".into(), None, None, None));
        assert_eq!(
            target("/api/v1/namespaces/default/pods"),
            ("pods".into(), s("default"), None, None)
        );
        assert_eq!(
            target("/api/v1/namespaces/default/pods/web/status"),
            ("pods".into(), s("default"), s("web"), s("status"))
        );
        assert_eq!(
            target("/api/v1/namespaces"),
            ("namespaces".into(), None, None, None)
        );
        assert_eq!(
            target("/api/v1/namespaces/kube-system"),
            ("namespaces".into(), None, s("kube-system"), None)
        );
        assert_eq!(
            target("/api/v1/namespaces/kube-system/status"),
            ("namespaces".into(), None, s("kube-system"), s("status"))
        );
        assert_eq!(
            target("/apis/apps/v1/namespaces/a/deployments/d/scale"),
            ("deployments".into(), s("a"), s("d"), s("scale"))
        );
        assert_eq!(
            target("/api/v1/nodes/n1"),
            ("nodes".into(), None, s("n1"), None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/a/pods/web/nope", &Kinds::default()),
            Err(ApiError::no_such_path())
        );
        assert_eq!(
            parse("/api/v1/widgets", &Kinds::default()),
            Err(ApiError::no_such_path())
        );
        assert_eq!(
            parse("/api/v1/pods/a/b/c", &Kinds::default()),
            Err(ApiError::no_such_path())
        );
        assert_eq!(
            parse("/api/v1/namespaces/a/pods/..", &Kinds::default())
                .unwrap_err()
                .code,
            400
        );
    }
}
