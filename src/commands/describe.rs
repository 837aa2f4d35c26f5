//! `describe`: each object as kubectl's generic describer shows it — name,
//! namespace, labels and annotations, then the rest of the object as
//! indented fields, then the Events about it.

use anyhow::Result;
use clap::Args;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use serde_json::Value;

use super::{OnCluster, Scope, print, targets};
use crate::cluster::{Cluster, refusal};
use crate::kinds::Kind;

/// Shows objects in detail, with the Events about them.
#[derive(Debug, Args)]
pub struct Describe {
    /// A kind and names, or `KIND/NAME`.
    #[arg(required = true, value_name = "KIND [NAME…]")]
    what: Vec<String>,
    #[command(flatten)]
    scope: Scope,
}

impl OnCluster for Describe {
    /// Prints each object named (or each of the kind), then its Events.
    async fn run(self, cluster: &Cluster) -> Result<()> {
        let namespace = self.scope.namespace(cluster);
        let mut out = String::new();
        for (kind, names) in targets(cluster, &self.what).await? {
            let api = kind.api(&cluster.client, Some(namespace));
            let objects = if names.is_empty() {
                api.list(&ListParams::default())
                    .await
                    .map_err(refusal)?
                    .items
            } else {
                let mut objects = Vec::new();
                for name in &names {
                    objects.push(api.get(name).await.map_err(refusal)?);
                }
                objects
            };
            for object in objects {
                if !out.is_empty() {
                    out.push_str("\n\n");
                }
                out.push_str(&described(kind, &serde_json::to_value(&object)?));
                if let Some(uid) = &object.metadata.uid {
                    let namespace = object.metadata.namespace.as_deref();
                    out.push_str(&events_about(cluster, uid, namespace).await?);
                }
            }
        }
        print!("{out}");
        Ok(())
    }
}

/// The object's own part of its description.
fn described(kind: &Kind, object: &Value) -> String {
    let meta = &object["metadata"];
    let pairs = |field: &str| {
        let text: Vec<String> = meta[field]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        if text.is_empty() {
            "<none>".to_owned()
        } else {
            text.join("\n              ")
        }
    };
    let name = meta["name"].as_str().unwrap_or("");
    let mut text = format!("Name:         {name}\n");
    if kind.namespaced() {
        let ns = meta["namespace"].as_str().unwrap_or("");
        text.push_str(&format!("Namespace:    {ns}\n"));
    }
    text.push_str(&format!("Labels:       {}\n", pairs("labels")));
    text.push_str(&format!("Annotations:  {}\n", pairs("annotations")));
    text.push_str(&format!("API Version:  {}\n", kind.resource.api_version));
    text.push_str(&format!("Kind:         {}\n", kind.resource.kind));
    if let Some(fields) = object.as_object() {
        for (key, value) in fields {
            if ["apiVersion", "kind", "metadata"].contains(&key.as_str()) {
                continue;
            }
            text.push_str(&format!("{}:\n", title(key)));
            text.push_str(&indented(value, 1));
        }
    }
    text
}

/// `terminationGracePeriodSeconds` → `Termination Grace Period Seconds`.
fn title(key: &str) -> String {
    let mut text = String::new();
    for (i, c) in key.char_indices() {
        if i == 0 {
            text.extend(c.to_uppercase());
        } else if c.is_uppercase() && key[..i].ends_with(|p: char| p.is_lowercase()) {
            text.push(' ');
            text.push(c);
        } else {
            text.push(c);
        }
    }
    text
}

/// A value's fields, one a line, indented two spaces a level.
fn indented(value: &Value, depth: usize) -> String {
    let pad = "  ".repeat(depth);
    match value {
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| match v {
                Value::Object(_) | Value::Array(_) => {
                    format!("{pad}{}:\n{}", title(k), indented(v, depth + 1))
                }
                _ => format!("{pad}{}:  {}\n", title(k), print::cell(v)),
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Object(_) | Value::Array(_) => indented(item, depth),
                _ => format!("{pad}{}\n", print::cell(item)),
            })
            .collect(),
        other => format!("{pad}{}\n", print::cell(other)),
    }
}

/// The Events section: every Event whose `involvedObject` has `uid`.
async fn events_about(cluster: &Cluster, uid: &str, namespace: Option<&str>) -> Result<String> {
    let api: Api<Event> = match namespace {
        Some(ns) => Api::namespaced(cluster.client.clone(), ns),
        None => Api::all(cluster.client.clone()),
    };
    let about = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
    let mut events = api.list(&about).await.map_err(refusal)?.items;
    if events.is_empty() {
        return Ok("Events:       <none>\n".into());
    }
    let when = |e: &Event| {
        let last = e.last_timestamp.as_ref().map(|t| t.0);
        last.or(e.event_time.as_ref().map(|t| t.0))
    };
    events.sort_by_key(when);
    let now = Timestamp::now();
    let rows = events.iter().map(|e| {
        let from = e.source.as_ref().and_then(|s| s.component.clone());
        vec![
            e.type_.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            when(e).map_or_else(|| "<unknown>".into(), |then| age(then, now)),
            from.or(e.reporting_component.clone()).unwrap_or_default(),
            e.message.as_deref().unwrap_or("").trim().to_owned(),
        ]
    });
    let header = ["Type", "Reason", "Age", "From", "Message"].map(String::from);
    let rule = ["----", "------", "----", "----", "-------"].map(String::from);
    let table = print::aligned([header.to_vec(), rule.to_vec()].into_iter().chain(rows));
    let body: String = table.lines().map(|l| format!("  {l}\n")).collect();
    Ok(format!("Events:\n{body}"))
}

/// How long before `now` a time was, as kubectl prints ages (`5s`, `3m2s`,
/// `4h`, `2d`).
fn age(then: Timestamp, now: Timestamp) -> String {
    let s = (now.as_second() - then.as_second()).max(0);
    match s {
        0..120 => format!("{s}s"),
        120..600 => format!("{}m{}s", s / 60, s % 60),
        600..10_800 => format!("{}m", s / 60),
        10_800..28_800 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        28_800..172_800 => format!("{}h", s / 3600),
        172_800..691_200 => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_read_like_kubectls() {
        let t0: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let at = |s: i64| Timestamp::from_second(t0.as_second() + s).unwrap();
        assert_eq!(age(t0, at(5)), "5s");
        assert_eq!(age(t0, at(185)), "3m5s");
        assert_eq!(age(t0, at(4 * 3600)), "4h0m");
        assert_eq!(age(t0, at(3 * 86_400)), "3d0h");
        assert_eq!(age(t0, at(-5)), "0s");
    }

    #[test]
    fn described_objects_title_their_fields() {
        assert_eq!(
            title("terminationGracePeriodSeconds"),
            "Termination Grace Period Seconds"
        );
        assert_eq!(title("podIPs"), "Pod IPs");
        assert_eq!(title("imageID"), "Image ID");
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"nodeName": "edge-1", "containers": [{"args": ["x"], "name": "c"}]}});
        let pods = crate::kinds::tests::kind("", "pods", "Pod", &[], "Namespaced");
        let text = described(&pods, &pod);
        assert!(
            text.starts_with("Name:         web\nNamespace:    shop\n"),
            "{text}"
        );
        assert!(
            text.contains("Labels:       app=web\nAnnotations:  <none>\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "Spec:\n  Containers:\n    Args:\n      x\n    Name:  c\n  Node Name:  edge-1\n"
            ),
            "{text}"
        );
    }
}
