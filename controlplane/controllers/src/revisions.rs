//! ControllerRevisions: the history of a DaemonSet's or StatefulSet's pod
//! template, one object per template (`<owner>-<hash>`) holding it as the
//! strategic merge patch that restores it and numbered in the order the
//! templates were last current. `kubectl rollout history` lists them and
//! `kubectl rollout undo` applies one. The oldest beyond
//! `revisionHistoryLimit` go, unless a pod still runs that template.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::runtime::{Context, Error};

/// The label naming the template a pod or revision was made from.
pub(crate) const HASH_LABEL: &str = "controller-revision-hash";

/// Makes the revision `name` of `template` the newest of `owner`'s history,
/// and trims the history to `limit` (keeping the revisions named in
/// `in_use`).
pub(crate) async fn record<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    owner: &K,
    template: &PodTemplateSpec,
    name: &str,
    hash: &str,
    limit: i32,
    in_use: &HashSet<String>,
) -> Result<(), Error> {
    let namespace = owner.namespace().unwrap_or_default();
    let uid = owner.uid().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut history: Vec<ControllerRevision> = api
        .list(&ListParams::default().labels(HASH_LABEL))
        .await?
        .items
        .into_iter()
        .filter(|r| {
            r.owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .collect();
    history.sort_by_key(|r| r.revision);
    let newest = history.last().map_or(0, |r| r.revision);
    match history.iter().find(|r| r.name_any() == name) {
        Some(current) if current.revision == newest => {}
        Some(_) => {
            let patch = json!({"revision": newest + 1});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        None => {
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash.into());
            let mut restore = serde_json::to_value(template).unwrap_or_default();
            restore["$patch"] = json!("replace");
            let mut revision = ControllerRevision {
                data: Some(RawExtension(json!({"spec": {"template": restore}}))),
                revision: newest + 1,
                ..ControllerRevision::default()
            };
            revision.metadata.name = Some(name.into());
            revision.metadata.labels = Some(labels);
            revision.metadata.owner_references = owner.controller_owner_ref(&()).map(|mut r| {
                r.block_owner_deletion = Some(true);
                vec![r]
            });
            match api.create(&PostParams::default(), &revision).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            history.push(revision);
        }
    }
    // The oldest go first, beyond the limit, but not the current one nor
    // one a pod runs.
    let removable: Vec<&ControllerRevision> = history
        .iter()
        .filter(|r| r.name_any() != name && !in_use.contains(&r.name_any()))
        .collect();
    let surplus = removable.len().saturating_sub(limit.max(0) as usize);
    for old in &removable[..surplus] {
        match api.delete(&old.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
