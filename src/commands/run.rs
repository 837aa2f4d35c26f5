//! `run`: a Wasm component as a Deployment (and, with a port, a Service of
//! the same name), waited for until every pod is ready.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::wait::await_condition;
use serde_json::json;

use super::upload::image_for;
use super::{OnCluster, Scope, apply::apply};
use crate::cluster::{Cluster, refusal};
use crate::exit::Failure;

/// How long `run` waits for the pods to be ready.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// Runs a component as a Deployment (and, with a port, a Service).
#[derive(Debug, Args)]
pub struct Run {
    /// The name of the Deployment (and Service).
    name: String,
    /// The component: a `.wasm` file (pushed to the built-in registry) or an
    /// image reference pods can pull.
    #[arg(long, value_name = "FILE|REF")]
    wasm: String,
    /// Serve this port (a wasi:http component's) through a Service of the
    /// same name.
    #[arg(long)]
    port: Option<u16>,
    /// How many pods.
    #[arg(long, default_value_t = 1)]
    replicas: u32,
    /// Environment of the component: `NAME=VALUE`, repeatable.
    #[arg(long, value_name = "NAME=VALUE")]
    env: Vec<String>,
    #[command(flatten)]
    scope: Scope,
    /// Wait until every pod is ready, then print where the Service answers.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    wait: bool,
    /// Arguments of a wasi:cli component.
    #[arg(last = true)]
    args: Vec<String>,
}

impl OnCluster for Run {
    /// Applies the Deployment (and Service), then waits until it answers.
    async fn run(self, cluster: &Cluster) -> Result<()> {
        let image = image_for(cluster, &self.wasm, &self.name).await?;
        let namespace = self.scope.namespace(cluster);
        let labels = json!({"app": self.name});
        let mut env = Vec::new();
        for pair in &self.env {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(Failure::Usage.because(format!("--env {pair}: expected NAME=VALUE")));
            };
            env.push(json!({"name": name, "value": value}));
        }
        let mut container = json!({
            "name": self.name, "image": image, "imagePullPolicy": "IfNotPresent",
            "env": env, "args": self.args,
        });
        if let Some(port) = self.port {
            container["ports"] = json!([{"containerPort": port, "protocol": "TCP"}]);
            container["readinessProbe"] = json!({"tcpSocket": {"port": port}, "periodSeconds": 1});
        }
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": self.name, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        });
        apply(cluster, &self.scope, serde_json::from_value(deployment)?).await?;
        if let Some(port) = self.port {
            let service = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": self.name, "namespace": namespace, "labels": labels},
                "spec": {"selector": labels,
                         "ports": [{"name": "http", "port": port, "targetPort": port}]},
            });
            apply(cluster, &self.scope, serde_json::from_value(service)?).await?;
        }
        if !self.wait {
            return Ok(());
        }
        let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
        let replicas = i32::try_from(self.replicas).unwrap_or(i32::MAX);
        let ready = |d: Option<&Deployment>| {
            let status = d.and_then(|d| d.status.as_ref());
            status.and_then(|s| s.ready_replicas).unwrap_or(0) >= replicas
        };
        let waited = await_condition(deployments, &self.name, ready);
        let Ok(waited) = tokio::time::timeout(READY_WITHIN, waited).await else {
            return Err(Failure::Other.because(format!(
                "deployment {} is not ready after 2 minutes: \
                 `wasmkube get pods -l app={}` and `wasmkube describe pod NAME` say why",
                self.name, self.name
            )));
        };
        waited?;
        match self.port {
            Some(port) => {
                let services: Api<Service> = Api::namespaced(cluster.client.clone(), namespace);
                let service = services.get(&self.name).await.map_err(refusal)?;
                let ip = service.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
                println!("{} is answering at http://{ip}:{port}/", self.name);
            }
            None => println!("{} is running", self.name),
        }
        Ok(())
    }
}
