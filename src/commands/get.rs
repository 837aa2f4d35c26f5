//! `get`: objects as `kubectl get` shows them — the server's own Tables (the
//! request kubectl makes), or the objects as YAML, JSON or names.

use std::future::Future;
use std::io::Write;

use anyhow::Result;
use clap::{Args, ValueEnum};
use http::header;
use kube::api::{Api, DynamicObject, GetParams, ListParams};
use kube::core::Request;
use serde_json::{Value, json};

use super::{OnCluster, Scope, print, settle, targets};
use crate::cluster::{Cluster, refusal};
use crate::kinds::Kind;

/// What kubectl asks for to get the server's Table (JSON when it has none).
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// How `get` shows objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The server's columns and the wide ones.
    Wide,
    /// The objects as YAML.
    Yaml,
    /// The objects as JSON.
    Json,
    /// `kind.group/name`, one a line.
    Name,
}

/// Shows objects, as `kubectl get` does.
#[derive(Debug, Args)]
pub struct Get {
    /// Kinds, comma-separated (`pods`, `po,svc`, `deployments.apps`),
    /// optionally followed by names; or `KIND/NAME`.
    #[arg(required = true, value_name = "KIND[,KIND] [NAME…]")]
    pub what: Vec<String>,
    #[command(flatten)]
    pub scope: Scope,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only objects whose labels match (`app=web,tier!=db`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// How to show them (default: the server's table).
    #[arg(short, long, value_enum)]
    pub output: Option<Output>,
}

impl OnCluster for Get {
    /// Prints the objects asked for, as a table (or YAML, JSON, names).
    async fn run(self, cluster: &Cluster) -> Result<()> {
        let targets = targets(cluster, &self.what).await?;
        let namespace = (!self.all_namespaces).then(|| self.scope.namespace(cluster));
        let several = targets.len() > 1;
        let listed = match &self.selector {
            Some(selector) => ListParams::default().labels(selector),
            None => ListParams::default(),
        };
        let mut out = std::io::stdout().lock();
        let mut failed = Vec::new();
        let mut printed = false;
        for (kind, names) in &targets {
            let text = match self.output {
                None | Some(Output::Wide) => {
                    let table = |name| table(cluster, kind, namespace, name, &listed);
                    let tables = each(names, table, &mut failed).await;
                    let wide = self.output == Some(Output::Wide);
                    let prefix = several.then_some(*kind);
                    let text = print::tables(&tables, wide, self.all_namespaces, prefix);
                    // Tables stand apart by a blank line.
                    if printed && !text.is_empty() {
                        format!("\n{text}")
                    } else {
                        text
                    }
                }
                Some(format) => {
                    let api = kind.api(&cluster.client, namespace);
                    let objects = |name| objects(&api, name, &listed);
                    let objects = each(names, objects, &mut failed).await.concat();
                    shown(format, kind, names.len(), objects)?
                }
            };
            write!(out, "{text}")?;
            printed |= !text.is_empty();
        }
        if !printed && failed.is_empty() {
            match namespace {
                Some(ns) => eprintln!("No resources found in {ns} namespace."),
                None => eprintln!("No resources found"),
            }
        }
        settle(failed)
    }
}

/// `objects` of `kind` as YAML, JSON or names; one object asked for by name
/// is shown alone, others in a `List`.
fn shown(format: Output, kind: &Kind, names: usize, objects: Vec<DynamicObject>) -> Result<String> {
    if format == Output::Name {
        let names = objects
            .iter()
            .map(|o| o.metadata.name.as_deref().unwrap_or(""));
        return Ok(names.map(|n| kind.qualified(n) + "\n").collect());
    }
    let items = objects
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<Value>, _>>()?;
    let shown = match items.as_slice() {
        [one] if names == 1 => one.clone(),
        _ => json!({"apiVersion": "v1", "kind": "List", "items": items,
                    "metadata": {"resourceVersion": ""}}),
    };
    Ok(match format {
        Output::Json => serde_json::to_string_pretty(&shown)? + "\n",
        _ => serde_yaml_ng::to_string(&shown)?,
    })
}

/// The object `name`, or without a name the objects `listed` selects.
async fn objects(
    api: &Api<DynamicObject>,
    name: Option<&str>,
    listed: &ListParams,
) -> Result<Vec<DynamicObject>> {
    Ok(match name {
        Some(name) => vec![api.get(name).await.map_err(refusal)?],
        None => api.list(listed).await.map_err(refusal)?.items,
    })
}

/// What `fetch` gives for each name (or, without names, for the whole
/// collection); failures go to `failed`, and the rest goes on.
async fn each<'n, T, F>(
    names: &'n [String],
    fetch: impl Fn(Option<&'n str>) -> F,
    failed: &mut Vec<anyhow::Error>,
) -> Vec<T>
where
    F: Future<Output = Result<T>>,
{
    let mut fetched = Vec::new();
    let asked: Vec<Option<&str>> = match names {
        [] => vec![None],
        names => names.iter().map(|n| Some(n.as_str())).collect(),
    };
    for name in asked {
        match fetch(name).await {
            Ok(value) => fetched.push(value),
            Err(e) => failed.push(e),
        }
    }
    fetched
}

/// The server's Table of the object `name` of `kind`, or of its collection
/// (`kubectl get`'s request).
async fn table(
    cluster: &Cluster,
    kind: &Kind,
    namespace: Option<&str>,
    name: Option<&str>,
    listed: &ListParams,
) -> Result<Value> {
    let request = Request::new(kind.url_path(namespace));
    let mut get = match name {
        Some(name) => request.get(name, &GetParams::default()),
        None => request.list(listed),
    }
    .map_err(|e| refusal(kube::Error::BuildRequest(e)))?;
    get.headers_mut()
        .insert(header::ACCEPT, header::HeaderValue::from_static(TABLE));
    cluster.client.request(get).await.map_err(refusal)
}
