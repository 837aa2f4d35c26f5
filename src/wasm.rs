//! The Wasm workflows kubectl lacks: pushing a component to a registry (the
//! cluster's built-in one by default), running one as a Deployment and a
//! Service, loading plugins as Plugin objects, and a node's local images.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use wasmkube_oci::{Credentials, ImageStore, names_a_registry, normalize};

use http::Method;

use crate::cluster::{Cluster, request};
use crate::exit::Failure;
use crate::verbs::{self, Scope};

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The component (`.wasm`).
    pub file: PathBuf,
    /// Where it goes: `[REGISTRY/]NAME[:TAG]` (default: the cluster's
    /// built-in registry, the file's name, `latest`).
    pub reference: Option<String>,
    /// A user of the registry (the password comes from
    /// `WASMKUBE_REGISTRY_PASSWORD`).
    #[arg(long)]
    pub username: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The name of the Deployment (and Service).
    pub name: String,
    /// The component: a `.wasm` file (pushed to the built-in registry) or an
    /// image reference pods can pull.
    #[arg(long, value_name = "FILE|REF")]
    pub wasm: String,
    /// Serve this port (a wasi:http component's) through a Service of the
    /// same name.
    #[arg(long)]
    pub port: Option<u16>,
    /// How many pods.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// Environment of the component: `NAME=VALUE`, repeatable.
    #[arg(long, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    #[command(flatten)]
    pub scope: Scope,
    /// Wait until every pod is ready, then print where the Service answers.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub wait: bool,
    /// Arguments of a wasi:cli component.
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// List the Plugin objects: whether each is loaded, how often it failed.
    Ls,
    /// Declare a plugin: a `.wasm` file (pushed to the built-in registry
    /// first) or an image reference becomes a Plugin object the scheduler
    /// loads.
    Load(LoadArgs),
    /// Delete a Plugin object; the scheduler lets the plugin go.
    Unload {
        /// The Plugin's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The plugin: a `.wasm` file or an image reference.
    #[arg(value_name = "FILE|REF")]
    pub source: String,
    /// The Plugin's name (default: the file's name).
    #[arg(long)]
    pub name: Option<String>,
    /// What kind of plugin it is.
    #[arg(long, default_value = "Scheduler")]
    pub extension: String,
    /// The scheduler profiles that run it (default: every profile).
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    /// Where a scheduler plugin runs: `Filter`, `Score` or `Filter,Score`.
    #[arg(long, value_delimiter = ',')]
    pub extension_points: Vec<String>,
    /// Its score's weight.
    #[arg(long)]
    pub weight: Option<i64>,
    /// Its arguments, as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub args: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Put a component in a node's local image store (for air-gapped
    /// nodes); pods then name it with `imagePullPolicy: Never` or
    /// `IfNotPresent`.
    Import {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The name pods use: `NAME[:TAG]`.
        reference: String,
    },
    /// List the components in a node's local image store.
    Ls,
    /// Remove a tag from a node's local image store (and the component once
    /// no tag names it).
    Rm {
        /// `NAME[:TAG]`, one or more.
        #[arg(required = true)]
        references: Vec<String>,
    },
}

/// Runs an `image` subcommand on the store in `data_dir`.
pub fn image(data_dir: &Path, command: ImageCommand) -> Result<()> {
    let images = ImageStore::open(data_dir)
        .with_context(|| format!("opening the image store in {}", data_dir.display()))?;
    match command {
        ImageCommand::Import { file, reference } => {
            let image = images.import(&file, &reference)?;
            println!("{} is {}", normalize(&reference)?, image.digest);
        }
        ImageCommand::Ls => {
            let rows = images
                .list()?
                .into_iter()
                .map(|(reference, image, size)| vec![reference, image.digest, mebibytes(size)]);
            let header = ["IMAGE", "DIGEST", "SIZE"].map(String::from).to_vec();
            print!("{}", verbs::aligned(std::iter::once(header).chain(rows)));
        }
        ImageCommand::Rm { references } => {
            for reference in references {
                match images.remove(&reference)? {
                    Some(image) => {
                        println!("removed {} ({})", normalize(&reference)?, image.digest)
                    }
                    None => {
                        return Err(Failure::NotFound.because(format!(
                            "no image {reference} in {} (`wasmkube image ls` lists them)",
                            data_dir.display()
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

/// Pushes a component; the reference it was pushed to.
pub async fn push(cluster: Option<&Cluster>, args: PushArgs) -> Result<String> {
    let bytes = std::fs::read(&args.file)
        .map_err(|e| Failure::Usage.because(format!("reading {}: {e}", args.file.display())))?;
    let reference = match args.reference {
        Some(r) if names_a_registry(&r) => normalize(&r)?,
        named => {
            let Some(cluster) = cluster else {
                return Err(Failure::Usage.because("name a registry: REGISTRY/NAME[:TAG]"));
            };
            let name = named.unwrap_or_else(|| stem(&args.file));
            normalize(&format!("{}/{name}", cluster.server))?
        }
    };
    let credentials = args.username.map(|username| Credentials {
        username,
        password: std::env::var("WASMKUBE_REGISTRY_PASSWORD").unwrap_or_default(),
    });
    let digest = wasmkube_oci::digest(&bytes);
    upload(bytes, &reference, credentials.as_ref(), &args.file).await?;
    println!("pushed {reference} ({digest})");
    Ok(reference)
}

/// The file's name without `.wasm`, as an image name.
fn stem(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    stem.replace('_', "-")
}

/// Pushes `bytes` with a progress bar on a terminal.
async fn upload(
    bytes: Vec<u8>,
    reference: &str,
    credentials: Option<&Credentials>,
    file: &Path,
) -> Result<()> {
    let total = bytes.len() as u64;
    let bar = Progress::new(file.display().to_string(), total);
    let shown = bar.clone();
    wasmkube_oci::push(bytes, reference, credentials, move |sent| shown.show(sent))
        .await
        .map_err(|e| Failure::Refused.because(e))?;
    bar.show(total);
    bar.finish();
    Ok(())
}

/// A progress bar on standard error, drawn only on a terminal.
#[derive(Clone, Debug)]
struct Progress {
    label: String,
    total: u64,
    tty: bool,
    started: Instant,
}

impl Progress {
    fn new(label: String, total: u64) -> Progress {
        Progress {
            label,
            total,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
        }
    }

    fn show(&self, sent: u64) {
        if !self.tty {
            return;
        }
        const WIDTH: u64 = 30;
        let filled = (sent * WIDTH).checked_div(self.total).unwrap_or(WIDTH);
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '-' })
            .collect();
        let _ = write!(
            std::io::stderr(),
            "\r{} [{bar}] {} / {} {:.1}s",
            self.label,
            mebibytes(sent),
            mebibytes(self.total),
            self.started.elapsed().as_secs_f64()
        );
    }

    fn finish(&self) {
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// The image pods will pull for `source`: a file is pushed to the built-in
/// registry under `repository`, tagged by its digest (so a new file makes a
/// new rollout); a reference is taken as it is.
async fn image_for(cluster: &Cluster, source: &str, repository: &str) -> Result<String> {
    let file = Path::new(source);
    if !file.is_file() {
        if source.ends_with(".wasm") {
            return Err(Failure::Usage.because(format!("{source}: no such file")));
        }
        return Ok(source.to_owned());
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {source}"))?;
    let digest = wasmkube_oci::digest(&bytes);
    let hex = &digest["sha256:".len()..];
    let reference = format!("{}/{repository}:sha256-{}", cluster.server, &hex[..16]);
    upload(bytes, &reference, None, file).await?;
    Ok(reference)
}

/// Runs a component as a Deployment (and, with a port, a Service), waiting
/// until it answers.
pub async fn run(cluster: &Cluster, args: RunArgs) -> Result<()> {
    let image = image_for(cluster, &args.wasm, &args.name).await?;
    let namespace = args.scope.namespace(cluster).to_owned();
    let labels = json!({"app": args.name});
    let mut env = Vec::new();
    for pair in &args.env {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(Failure::Usage.because(format!("--env {pair}: expected NAME=VALUE")));
        };
        env.push(json!({"name": name, "value": value}));
    }
    let mut container = json!({
        "name": args.name, "image": image, "imagePullPolicy": "IfNotPresent",
        "env": env, "args": args.args,
    });
    if let Some(port) = args.port {
        container["ports"] = json!([{"containerPort": port, "protocol": "TCP"}]);
        container["readinessProbe"] = json!({"tcpSocket": {"port": port}, "periodSeconds": 1});
    }
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": args.name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": args.replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    });
    verbs::apply_one(cluster, &args.scope, &deployment).await?;
    let mut service_path = None;
    if let Some(port) = args.port {
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": args.name, "namespace": namespace, "labels": labels},
            "spec": {"selector": labels,
                     "ports": [{"name": "http", "port": port, "targetPort": port}]},
        });
        verbs::apply_one(cluster, &args.scope, &service).await?;
        service_path = Some(format!(
            "/api/v1/namespaces/{namespace}/services/{}",
            args.name
        ));
    }
    if !args.wait {
        return Ok(());
    }
    let deployment_path = format!(
        "/apis/apps/v1/namespaces/{namespace}/deployments/{}",
        args.name
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = &cluster.get(&deployment_path).await?["status"];
        if status["readyReplicas"].as_u64().unwrap_or(0) >= u64::from(args.replicas) {
            break;
        }
        if Instant::now() > deadline {
            return Err(Failure::Other.because(format!(
                "deployment {} is not ready after 2 minutes: \
                 `wasmkube get pods -l app={}` and `wasmkube describe pod NAME` say why",
                args.name, args.name
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match (service_path, args.port) {
        (Some(path), Some(port)) => {
            let service = cluster.get(&path).await?;
            let ip = service["spec"]["clusterIP"].as_str().unwrap_or("");
            println!("{} is answering at http://{ip}:{port}/", args.name);
        }
        _ => println!("{} is running", args.name),
    }
    Ok(())
}

/// Runs a `plugin` subcommand.
pub async fn plugin(cluster: &Cluster, command: PluginCommand) -> Result<()> {
    match command {
        PluginCommand::Ls => {
            let args = verbs::GetArgs {
                what: vec!["plugins".into()],
                scope: Scope { namespace: None },
                all_namespaces: false,
                selector: None,
                output: None,
            };
            verbs::get(cluster, args).await
        }
        PluginCommand::Load(args) => {
            let scheduler = args.extension == "Scheduler";
            if scheduler && args.extension_points.is_empty() {
                return Err(Failure::Usage.because(
                    "say where the plugin runs: --extension-points Filter, Score or Filter,Score",
                ));
            }
            let name = args
                .name
                .clone()
                .unwrap_or_else(|| stem(Path::new(&args.source)));
            let image = image_for(cluster, &args.source, &format!("plugins/{name}")).await?;
            let mut spec = json!({"extension": args.extension, "source": {"image": image}});
            if let Some(text) = &args.args {
                let value: Value = serde_json::from_str(text).map_err(|e| {
                    Failure::Usage.because(format!("--args must be a JSON object: {e}"))
                })?;
                spec["args"] = value;
            }
            if scheduler {
                let mut placement = json!({"profiles": args.profiles,
                                           "extensionPoints": args.extension_points});
                if let Some(weight) = args.weight {
                    placement["weight"] = json!(weight);
                }
                spec["scheduler"] = placement;
            }
            let mut plugin = json!({
                "apiVersion": "wasmkube.io/v1alpha1", "kind": "Plugin",
                "metadata": {"name": name}, "spec": spec,
            });
            // The spec is replaced whole, not merged: a plugin loaded from a
            // path before is loaded from the registry now.
            let resource = cluster.resource_of(&plugin).await?;
            let path = resource.path(None, Some(&name));
            let (method, path, what) = match cluster.get_optional(&path).await? {
                Some(old) => {
                    plugin["metadata"]["resourceVersion"] =
                        old["metadata"]["resourceVersion"].clone();
                    (Method::PUT, path, "configured")
                }
                None => (Method::POST, resource.path(None, None), "created"),
            };
            cluster
                .send(request(method, &path, serde_json::to_vec(&plugin)?)?)
                .await?;
            println!("{} {what}", resource.qualified(&name));
            Ok(())
        }
        PluginCommand::Unload { name } => {
            let args = verbs::DeleteArgs {
                what: vec!["plugins".into(), name],
                files: Vec::new(),
                scope: Scope { namespace: None },
                ignore_not_found: false,
                wait: true,
                grace_period: None,
            };
            verbs::delete(cluster, args).await
        }
    }
}
