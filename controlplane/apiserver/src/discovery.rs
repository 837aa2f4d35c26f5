//! Discovery: which groups, versions and resources the server serves, in the legacy
//! documents (`/api`, `/apis`, `/api/v1`, …) and the aggregated ones (`apidiscovery.k8s.io`
//! v2 and v2beta1) that kubectl asks for first.

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use wasmkube_types::{ResourceType, Subresource};

use crate::crd::Kinds;
use crate::negotiate::{Format, accepted, respond};
use crate::path::Route;

/// The aggregated discovery version the client asks for first, if any.
fn aggregated(headers: &HeaderMap) -> Option<&'static str> {
    for range in accepted(headers) {
        if range.essence != "application/json" {
            continue;
        }
        match (range.param("g"), range.param("v"), range.param("as")) {
            (Some("apidiscovery.k8s.io"), Some("v2"), Some("APIGroupDiscoveryList")) => {
                return Some("v2");
            }
            (Some("apidiscovery.k8s.io"), Some("v2beta1"), Some("APIGroupDiscoveryList")) => {
                return Some("v2beta1");
            }
            (_, _, None) => return None,
            _ => {}
        }
    }
    None
}

/// Answers a discovery route.
pub fn serve(route: &Route, headers: &HeaderMap, kinds: &Kinds) -> Response {
    if let (Route::CoreVersions | Route::Groups, Some(version)) = (route, aggregated(headers)) {
        let core = matches!(route, Route::CoreVersions);
        let body = aggregated_list(kinds, version, core);
        let content_type =
            format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
        return ([(header::CONTENT_TYPE, content_type)], body.to_string()).into_response();
    }
    let body = match route {
        Route::CoreVersions => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [],
        }),
        Route::Groups => json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": groups(kinds).iter().map(|g| group(kinds, g)).collect::<Vec<_>>(),
        }),
        Route::Group(name) => group(kinds, name),
        Route::Resources { group, version } => resource_list(kinds, group, version),
        Route::Objects(_) => unreachable!("objects are not discovery"),
    };
    respond(Format::Json, 200, &body)
}

/// The named groups (not the core group), in table order.
fn groups(kinds: &Kinds) -> Vec<&'static str> {
    let mut names = Vec::new();
    for (g, _) in kinds.group_versions() {
        if !g.is_empty() && !names.contains(&g) {
            names.push(g);
        }
    }
    names
}

fn versions(kinds: &Kinds, group: &str) -> Vec<&'static str> {
    kinds
        .group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(_, v)| v)
        .collect()
}

fn group(kinds: &Kinds, name: &str) -> Value {
    let versions: Vec<Value> = versions(kinds, name)
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": versions,
        "preferredVersion": versions[0],
    })
}

fn verbs(verbs: &[wasmkube_types::Verb]) -> Vec<&'static str> {
    verbs.iter().map(|v| v.as_str()).collect()
}

fn resources_of(kinds: &Kinds, group: &str, version: &str) -> Vec<&'static ResourceType> {
    let mut all = kinds.all();
    all.retain(|r| r.group == group && r.version == version);
    all
}

fn resource_list(kinds: &Kinds, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in resources_of(kinds, group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs(r.verbs),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": sub_kind(r, sub).2,
                "verbs": verbs(sub.verbs),
            });
            if !sub.is_parent_kind() {
                entry["group"] = json!(sub.group);
                entry["version"] = json!(sub.version);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

/// Group, version and kind a subresource reads and writes.
fn sub_kind(
    parent: &ResourceType,
    sub: &Subresource,
) -> (&'static str, &'static str, &'static str) {
    if sub.is_parent_kind() {
        (parent.group, parent.version, parent.kind)
    } else {
        (sub.group, sub.version, sub.kind)
    }
}

fn aggregated_list(kinds: &Kinds, version: &str, core: bool) -> Value {
    let names: Vec<&str> = if core { vec![""] } else { groups(kinds) };
    let items: Vec<Value> = names
        .iter()
        .map(|g| {
            let versions: Vec<Value> = versions(kinds, g)
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = resources_of(kinds, g, v)
                        .into_iter()
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

fn aggregated_resource(r: &ResourceType) -> Value {
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|sub| {
            let (group, version, kind) = sub_kind(r, sub);
            json!({
                "subresource": sub.name,
                "responseKind": {"group": group, "version": version, "kind": kind},
                "verbs": verbs(sub.verbs),
            })
        })
        .collect();
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular(),
        "verbs": verbs(r.verbs),
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        entry["subresources"] = json!(subresources);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_resource_list_has_subresources() {
        let list = resource_list(&Kinds::default(), "apps", "v1");
        let resources = list["resources"].as_array().unwrap();
        let scale = resources
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(
            (scale["group"].as_str(), scale["kind"].as_str()),
            (Some("autoscaling"), Some("Scale"))
        );
        let deploy = resources
            .iter()
            .find(|r| r["name"] == "deployments")
            .unwrap();
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert_eq!(deploy["namespaced"], true);
    }

    #[test]
    fn aggregated_lists_every_group() {
        let apis = aggregated_list(&Kinds::default(), "v2", false);
        let names: Vec<_> = apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].clone())
            .collect();
        assert!(names.contains(&json!("apps")));
        assert!(!names.contains(&json!("")));
        let core = aggregated_list(&Kinds::default(), "v2beta1", true);
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let pods = &core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap()
            .clone();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["subresources"][0]["subresource"], "status");
    }
}
