//! `get`, `describe`, `apply`, `delete` and `logs` for users without kubectl:
//! the same API requests kubectl makes, and output shaped like kubectl's
//! (the tables are the server's own, as `kubectl get` prints them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use futures::AsyncReadExt;
use http::{Method, header};
use serde_json::{Value, json};

use crate::cluster::{Cluster, Resource, request};
use crate::exit::Failure;

/// Which namespace a verb works in.
#[derive(Debug, Args)]
pub struct Scope {
    /// The namespace (default: the kubeconfig context's, else `default`).
    #[arg(short, long)]
    pub namespace: Option<String>,
}

impl Scope {
    pub fn namespace<'a>(&'a self, cluster: &'a Cluster) -> &'a str {
        self.namespace.as_deref().unwrap_or(&cluster.namespace)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The server's columns and the wide ones.
    Wide,
    Yaml,
    Json,
    /// `kind.group/name`, one a line.
    Name,
}

#[derive(Debug, Args)]
pub struct GetArgs {
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
    #[arg(short, long, value_enum)]
    pub output: Option<Output>,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// A kind and names, or `KIND/NAME`.
    #[arg(required = true, value_name = "KIND [NAME…]")]
    pub what: Vec<String>,
    #[command(flatten)]
    pub scope: Scope,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Manifests: a YAML or JSON file (several documents allowed), a
    /// directory of them, or `-` for standard input.
    #[arg(short, long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub scope: Scope,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// A kind and names, or `KIND/NAME`.
    #[arg(value_name = "KIND [NAME…]")]
    pub what: Vec<String>,
    /// Delete what these manifests name instead.
    #[arg(short, long = "filename")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub scope: Scope,
    /// Succeed when an object is already gone.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Wait until the objects are gone (finalizers, graceful pod stops).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub wait: bool,
    /// Seconds a pod gets to stop (default: its own
    /// `terminationGracePeriodSeconds`).
    #[arg(long)]
    pub grace_period: Option<i64>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The pod.
    pub pod: String,
    /// The container (default: the pod's only one).
    #[arg(short, long)]
    pub container: Option<String>,
    #[command(flatten)]
    pub scope: Scope,
    /// Keep streaming as the container writes.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<i64>,
    /// The previous run of a restarted container.
    #[arg(short, long)]
    pub previous: bool,
    /// Each line with the time it was written.
    #[arg(long)]
    pub timestamps: bool,
}

/// The end of a verb that went on past failures: each failure but the last
/// is printed, the last is the verb's error.
fn settle(mut failures: Vec<anyhow::Error>) -> Result<()> {
    let Some(last) = failures.pop() else {
        return Ok(());
    };
    for failure in failures {
        eprintln!("error: {failure:#}");
    }
    Err(last)
}

/// Kinds and names as kubectl takes them: `pods web db`, `po,svc`,
/// `pod/web deploy/api`.
async fn targets(cluster: &Cluster, what: &[String]) -> Result<Vec<(Resource, Vec<String>)>> {
    if what.iter().all(|w| w.contains('/')) {
        let mut targets: Vec<(Resource, Vec<String>)> = Vec::new();
        for item in what {
            let (kind, name) = item.split_once('/').expect("checked");
            let resource = cluster.resource(kind).await?;
            match targets.iter_mut().find(|(r, _)| *r == resource) {
                Some((_, names)) => names.push(name.to_owned()),
                None => targets.push((resource, vec![name.to_owned()])),
            }
        }
        return Ok(targets);
    }
    let Some((kinds, names)) = what.split_first() else {
        return Err(Failure::Usage.because("name a kind: `pods`, `deployments`…"));
    };
    if names.iter().any(|n| n.contains('/')) {
        return Err(Failure::Usage.because(
            "there is no need to specify a resource type as a separate argument when \
             passing arguments in resource/name form",
        ));
    }
    let mut targets = Vec::new();
    for kind in kinds.split(',') {
        targets.push((cluster.resource(kind).await?, names.to_vec()));
    }
    Ok(targets)
}

/// Prints the objects asked for, as a table (or YAML, JSON, names).
pub async fn get(cluster: &Cluster, args: GetArgs) -> Result<()> {
    let targets = targets(cluster, &args.what).await?;
    let namespace = (!args.all_namespaces).then(|| args.scope.namespace(cluster));
    let several = targets.len() > 1;
    let mut out = std::io::stdout().lock();
    let mut failed = Vec::new();
    let mut printed = false;
    for (resource, names) in &targets {
        let mut objects = Vec::new();
        if names.is_empty() {
            let mut path = resource.path(namespace, None);
            if let Some(selector) = &args.selector {
                path = format!("{path}?labelSelector={}", encode(selector));
            }
            objects.push(path);
        } else {
            objects.extend(names.iter().map(|n| resource.path(namespace, Some(n))));
        }
        let mut tables = Vec::new();
        for path in objects {
            let fetched = match args.output {
                None | Some(Output::Wide) => table(cluster, &path).await,
                _ => cluster.get(&path).await,
            };
            match fetched {
                Ok(value) => tables.push(value),
                Err(e) => failed.push(e),
            }
        }
        match args.output {
            None | Some(Output::Wide) => {
                let wide = args.output == Some(Output::Wide);
                let prefix = several.then_some(resource);
                let text = render_tables(&tables, wide, args.all_namespaces, prefix);
                if !text.is_empty() {
                    if printed {
                        writeln!(out)?;
                    }
                    write!(out, "{text}")?;
                    printed = true;
                }
            }
            Some(Output::Name) => {
                for object in tables.iter().flat_map(items) {
                    writeln!(out, "{}", resource.qualified(name_of(object)))?;
                    printed = true;
                }
            }
            Some(format) => {
                let items: Vec<Value> = tables.iter().flat_map(items).cloned().collect();
                let shown = if names.len() == 1 && items.len() == 1 {
                    items[0].clone()
                } else {
                    json!({"apiVersion": "v1", "kind": "List", "items": items,
                           "metadata": {"resourceVersion": ""}})
                };
                if format == Output::Json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&shown)?)?;
                } else {
                    write!(out, "{}", serde_yaml_ng::to_string(&shown)?)?;
                }
                printed = true;
            }
        }
    }
    if !printed && failed.is_empty() {
        match namespace {
            Some(ns) => eprintln!("No resources found in {ns} namespace."),
            None => eprintln!("No resources found"),
        }
    }
    settle(failed)
}

/// The objects of a list, or the object itself.
fn items(value: &Value) -> Vec<&Value> {
    match value["items"].as_array() {
        Some(items) if value["kind"].as_str().is_some_and(|k| k.ends_with("List")) => {
            items.iter().collect()
        }
        _ => vec![value],
    }
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

/// `path` as the server's Table (`kubectl get`'s request).
async fn table(cluster: &Cluster, path: &str) -> Result<Value> {
    let mut get = request(Method::GET, path, Vec::new())?;
    get.headers_mut().insert(
        header::ACCEPT,
        header::HeaderValue::from_static(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        ),
    );
    Ok(serde_json::from_str(&cluster.send(get).await?)?)
}

/// Tables as `kubectl get` prints them: upper-case headers, columns padded to
/// their widest cell and three spaces; the wide columns only when `wide`; a
/// NAMESPACE column first for `-A`; names as `kind/name` when several kinds
/// are shown.
fn render_tables(
    tables: &[Value],
    wide: bool,
    namespaces: bool,
    prefix: Option<&Resource>,
) -> String {
    let Some(first) = tables.first() else {
        return String::new();
    };
    let columns: Vec<(usize, String)> = first["columnDefinitions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(|(_, c)| wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, c)| (i, c["name"].as_str().unwrap_or("").to_uppercase()))
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for table in tables {
        for row in table["rows"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let mut cells: Vec<String> = columns
                .iter()
                .map(|(i, name)| {
                    let cell = cell_text(&row["cells"][*i]);
                    match prefix {
                        Some(resource) if name == "NAME" => resource.qualified(&cell),
                        _ => cell,
                    }
                })
                .collect();
            if namespaces {
                let ns = row["object"]["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("");
                cells.insert(0, ns.to_owned());
            }
            rows.push(cells);
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    let mut headers: Vec<String> = columns.into_iter().map(|(_, name)| name).collect();
    if namespaces {
        headers.insert(0, "NAMESPACE".into());
    }
    aligned(std::iter::once(headers).chain(rows))
}

fn cell_text(cell: &Value) -> String {
    match cell {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

/// Rows padded into columns three spaces apart, as kubectl's tab writer does.
pub fn aligned(rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (c, cell) in row.iter().enumerate() {
            text.push_str(cell);
            if c < last {
                let pad = widths[c] - cell.chars().count() + 3;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.push('\n');
    }
    text
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prints each object as kubectl's generic describer does: name, namespace,
/// labels and annotations, then the rest of the object as indented fields,
/// then the Events about it.
pub async fn describe(cluster: &Cluster, args: DescribeArgs) -> Result<()> {
    let namespace = args.scope.namespace(cluster);
    let mut out = String::new();
    for (resource, names) in targets(cluster, &args.what).await? {
        let objects = if names.is_empty() {
            let list = cluster.get(&resource.path(Some(namespace), None)).await?;
            list["items"].as_array().cloned().unwrap_or_default()
        } else {
            let mut objects = Vec::new();
            for name in &names {
                objects.push(
                    cluster
                        .get(&resource.path(Some(namespace), Some(name)))
                        .await?,
                );
            }
            objects
        };
        for object in objects {
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&described(&resource, &object));
            out.push_str(&events_about(cluster, &object).await?);
        }
    }
    print!("{out}");
    Ok(())
}

fn described(resource: &Resource, object: &Value) -> String {
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
    let mut text = format!("Name:         {}\n", name_of(object));
    if resource.namespaced {
        let ns = meta["namespace"].as_str().unwrap_or("");
        text.push_str(&format!("Namespace:    {ns}\n"));
    }
    text.push_str(&format!("Labels:       {}\n", pairs("labels")));
    text.push_str(&format!("Annotations:  {}\n", pairs("annotations")));
    text.push_str(&format!("API Version:  {}\n", resource.api_version()));
    text.push_str(&format!("Kind:         {}\n", resource.kind));
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
                _ => format!("{pad}{}:  {}\n", title(k), cell_text(v)),
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Object(_) | Value::Array(_) => indented(item, depth),
                _ => format!("{pad}{}\n", cell_text(item)),
            })
            .collect(),
        other => format!("{pad}{}\n", cell_text(other)),
    }
}

/// The Events section: every Event whose `involvedObject` is `object`.
async fn events_about(cluster: &Cluster, object: &Value) -> Result<String> {
    let meta = &object["metadata"];
    let (Some(uid), ns) = (meta["uid"].as_str(), meta["namespace"].as_str()) else {
        return Ok(String::new());
    };
    let selector = encode(&format!("involvedObject.uid={uid}"));
    let path = match ns {
        Some(ns) => format!("/api/v1/namespaces/{ns}/events?fieldSelector={selector}"),
        None => format!("/api/v1/events?fieldSelector={selector}"),
    };
    let mut events = cluster.get(&path).await?["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if events.is_empty() {
        return Ok("Events:       <none>\n".into());
    }
    let when = |e: &Value| {
        e["lastTimestamp"]
            .as_str()
            .or(e["eventTime"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    events.sort_by_key(when);
    let now = std::time::SystemTime::now();
    let rows = events.iter().map(|e| {
        vec![
            e["type"].as_str().unwrap_or("").to_owned(),
            e["reason"].as_str().unwrap_or("").to_owned(),
            age(&when(e), now),
            e["source"]["component"]
                .as_str()
                .or(e["reportingComponent"].as_str())
                .unwrap_or("")
                .to_owned(),
            e["message"].as_str().unwrap_or("").trim().to_owned(),
        ]
    });
    let header = ["Type", "Reason", "Age", "From", "Message"].map(String::from);
    let rule = ["----", "------", "----", "----", "-------"].map(String::from);
    let table = aligned([header.to_vec(), rule.to_vec()].into_iter().chain(rows));
    let body: String = table.lines().map(|l| format!("  {l}\n")).collect();
    Ok(format!("Events:\n{body}"))
}

/// How long ago an RFC 3339 time was, as kubectl prints ages (`5s`, `3m2s`,
/// `4h`, `2d`).
fn age(time: &str, now: std::time::SystemTime) -> String {
    let Some(then) = parse_time(time) else {
        return "<unknown>".into();
    };
    let seconds = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        - then;
    let s = seconds.max(0);
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

/// Seconds since the epoch of `2026-01-02T03:04:05Z`.
fn parse_time(time: &str) -> Option<i64> {
    let (date, clock) = time.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let clock = clock.split('.').next()?;
    let mut c = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (c.next()??, c.next()??, c.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + sec)
}

/// The objects of manifest files (YAML or JSON, several documents each; a
/// `List` counts as its items), each with where it came from.
pub fn manifests(files: &[PathBuf]) -> Result<Vec<(String, Value)>> {
    let mut objects = Vec::new();
    for file in files {
        let paths: Vec<PathBuf> = if file.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(file)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
                })
                .collect();
            entries.sort();
            entries
        } else {
            vec![file.clone()]
        };
        for path in paths {
            let text = read_manifest(&path)?;
            let source = path.display().to_string();
            for document in serde_yaml_ng::Deserializer::from_str(&text) {
                let value: Value = serde::Deserialize::deserialize(document).map_err(|e| {
                    Failure::Usage.because(format!("{source}: not a YAML or JSON manifest: {e}"))
                })?;
                if value.is_null() {
                    continue;
                }
                if value["kind"].as_str().is_some_and(|k| k.ends_with("List")) {
                    for item in value["items"].as_array().into_iter().flatten() {
                        objects.push((source.clone(), item.clone()));
                    }
                } else {
                    objects.push((source.clone(), value));
                }
            }
        }
    }
    Ok(objects)
}

fn read_manifest(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| {
        Failure::Usage.because(format!(
            "the path \"{}\" cannot be read: {e}",
            path.display()
        ))
    })
}

/// Creates or updates each object of the manifests (server-side apply) and
/// says what became of it: `deployment.apps/web created`.
pub async fn apply(cluster: &Cluster, args: ApplyArgs) -> Result<()> {
    let objects = manifests(&args.files)?;
    if objects.is_empty() {
        return Err(Failure::Usage.because("no objects passed to apply"));
    }
    let mut failed = Vec::new();
    for (source, object) in objects {
        if let Err(e) = apply_one(cluster, &args.scope, &object).await {
            failed.push(e.context(format!("applying {source}")));
        }
    }
    settle(failed)
}

/// Applies `object`; what became of it.
pub async fn apply_one(cluster: &Cluster, scope: &Scope, object: &Value) -> Result<String> {
    let resource = cluster.resource_of(object).await?;
    let name = object["metadata"]["name"]
        .as_str()
        .ok_or_else(|| Failure::Usage.because("an object without metadata.name"))?;
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or(scope.namespace(cluster));
    let path = resource.path(Some(namespace), Some(name));
    let before = cluster.get_optional(&path).await?;
    let mut object = object.clone();
    if resource.namespaced {
        object["metadata"]["namespace"] = json!(namespace);
    }
    let after = cluster.apply(&path, &object).await?;
    // What the apply could change: not the status, which controllers write
    // meanwhile, nor the bookkeeping of every write.
    let applied = |o: &Value| {
        let mut o = o.clone();
        if let Some(fields) = o.as_object_mut() {
            fields.remove("status");
        }
        if let Some(meta) = o["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
        o
    };
    let what = match before {
        None => "created",
        Some(before) if applied(&before) == applied(&after) => "unchanged",
        Some(_) => "configured",
    };
    let said = format!("{} {what}", resource.qualified(name));
    println!("{said}");
    Ok(said)
}

/// Deletes what is named (or what the manifests name), waiting until it is
/// gone unless told not to.
pub async fn delete(cluster: &Cluster, args: DeleteArgs) -> Result<()> {
    let namespace = args.scope.namespace(cluster).to_owned();
    let mut doomed: Vec<(Resource, String, String)> = Vec::new();
    if !args.files.is_empty() {
        for (_, object) in manifests(&args.files)? {
            let resource = cluster.resource_of(&object).await?;
            let ns = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or(&namespace);
            doomed.push((resource, ns.to_owned(), name_of(&object).to_owned()));
        }
    } else {
        for (resource, names) in targets(cluster, &args.what).await? {
            if names.is_empty() {
                return Err(Failure::Usage.because(format!(
                    "name the {} to delete (or give -f FILE)",
                    resource.plural
                )));
            }
            doomed.extend(
                names
                    .into_iter()
                    .map(|n| (resource.clone(), namespace.clone(), n)),
            );
        }
    }
    if doomed.is_empty() {
        return Err(Failure::Usage.because("name what to delete: KIND NAME, KIND/NAME or -f FILE"));
    }
    let mut failed = Vec::new();
    let mut waiting = Vec::new();
    for (resource, ns, name) in doomed {
        let path = resource.path(Some(&ns), Some(&name));
        let options = match args.grace_period {
            Some(seconds) => json!({"kind": "DeleteOptions", "apiVersion": "v1",
                                   "gracePeriodSeconds": seconds}),
            None => json!({"kind": "DeleteOptions", "apiVersion": "v1",
                          "propagationPolicy": "Background"}),
        };
        let sent = cluster
            .send(request(
                Method::DELETE,
                &path,
                serde_json::to_vec(&options)?,
            )?)
            .await;
        match sent {
            Ok(_) => {
                println!("{} \"{name}\" deleted", resource.singular);
                waiting.push(path);
            }
            Err(e) if args.ignore_not_found && Failure::of(&e) == Failure::NotFound => {}
            Err(e) => failed.push(e),
        }
    }
    if args.wait {
        for path in waiting {
            while cluster.get_optional(&path).await?.is_some() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    settle(failed)
}

/// Prints a container's log (following it with `-f`).
pub async fn logs(cluster: &Cluster, args: LogsArgs) -> Result<()> {
    let namespace = args.scope.namespace(cluster);
    let mut query = Vec::new();
    if let Some(container) = &args.container {
        query.push(format!("container={}", encode(container)));
    }
    if args.follow {
        query.push("follow=true".into());
    }
    if let Some(tail) = args.tail {
        query.push(format!("tailLines={tail}"));
    }
    if args.previous {
        query.push("previous=true".into());
    }
    if args.timestamps {
        query.push("timestamps=true".into());
    }
    let path = format!(
        "/api/v1/namespaces/{namespace}/pods/{}/log?{}",
        args.pod,
        query.join("&")
    );
    let mut stream = cluster
        .client
        .request_stream(request(Method::GET, &path, Vec::new())?)
        .await
        .map_err(crate::cluster::refusal)?;
    let mut buffer = vec![0; 64 * 1024];
    let mut out = std::io::stdout();
    loop {
        let n = stream.read(&mut buffer).await.context("reading the log")?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buffer[..n])?;
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_print_as_kubectl_prints_them() {
        let table = json!({
            "kind": "Table",
            "columnDefinitions": [
                {"name": "Name", "priority": 0}, {"name": "Ready", "priority": 0},
                {"name": "IP", "priority": 1}],
            "rows": [
                {"cells": ["web-1", "1/1", "127.64.0.2"],
                 "object": {"metadata": {"namespace": "shop"}}},
                {"cells": ["db", "0/1", null], "object": {"metadata": {"namespace": "a"}}}]
        });
        let narrow = render_tables(std::slice::from_ref(&table), false, false, None);
        assert_eq!(narrow, "NAME    READY\nweb-1   1/1\ndb      0/1\n");
        let wide = render_tables(std::slice::from_ref(&table), true, true, None);
        assert_eq!(
            wide,
            "NAMESPACE   NAME    READY   IP\n\
             shop        web-1   1/1     127.64.0.2\n\
             a           db      0/1     <none>\n"
        );
        assert_eq!(render_tables(&[], false, false, None), "");
    }

    #[test]
    fn ages_read_like_kubectls() {
        let at = |s: u64| std::time::UNIX_EPOCH + Duration::from_secs(s);
        let t0 = "2026-11-27T10:00:00Z";
        let base = parse_time(t0).unwrap() as u64;
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2000-03-01T00:00:01.5Z"), Some(951_868_801));
        assert_eq!(age(t0, at(base + 5)), "5s");
        assert_eq!(age(t0, at(base + 185)), "3m5s");
        assert_eq!(age(t0, at(base + 4 * 3600)), "4h0m");
        assert_eq!(age(t0, at(base + 3 * 86_400)), "3d0h");
        assert_eq!(age("garbage", at(base)), "<unknown>");
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
        let resource = Resource {
            group: String::new(),
            version: "v1".into(),
            plural: "pods".into(),
            singular: "pod".into(),
            kind: "Pod".into(),
            short_names: vec![],
            namespaced: true,
        };
        let text = described(&resource, &pod);
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

    #[test]
    fn manifests_split_documents_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.yaml");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n\
             {\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\
             {\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"b\"}}]}\n",
        )
        .unwrap();
        let objects = manifests(&[file]).unwrap();
        let names: Vec<&str> = objects.iter().map(|(_, o)| name_of(o)).collect();
        assert_eq!(names, ["a", "b"]);
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "a: [unclosed").unwrap();
        let e = manifests(&[bad]).unwrap_err();
        assert_eq!(Failure::of(&e), Failure::Usage);
        assert!(e.to_string().contains("bad.yaml"), "{e}");
    }
}
