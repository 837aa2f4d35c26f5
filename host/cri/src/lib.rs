//! The node's client of a container runtime over the Container Runtime
//! Interface (CRI v1, gRPC on a unix socket), as the kubelet is: containerd
//! with its CRI plugin runs the pods whose images are OCI images.
//!
//! - [`Cri`]: the runtime and image services, each call bounded in time,
//!   stops and removals idempotent as CRI requires (what is gone is done).
//! - [`config`]: what the kubelet asks of a runtime for a pod and its
//!   containers (the sandbox's metadata, labels, namespaces and DNS; a
//!   container's command, environment, mounts, resources and log path), from
//!   the Pod.
//! - [`logs`]: the CRI log format the runtime writes a container's output in,
//!   read back into lines for `kubectl logs`.
//!
//! - `containerd` (feature `containerd`): a containerd of its own, for tests.
//!
//! The messages come from the `k8s-cri` crate, generated from Kubernetes'
//! `api.proto`; they are re-exported as [`v1`].

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

pub mod config;
#[cfg(feature = "containerd")]
pub mod containerd;
pub mod logs;

pub use k8s_cri::v1;

use v1::{
    AuthConfig, ContainerConfig, ContainerStatus, ContainerStatusRequest, CreateContainerRequest,
    ExecSyncRequest, ImageSpec, ImageStatusRequest, ListContainersRequest, ListPodSandboxRequest,
    PodSandbox, PodSandboxConfig, PodSandboxFilter, PodSandboxStatus, PodSandboxStatusRequest,
    PullImageRequest, RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopContainerRequest, StopPodSandboxRequest, VersionRequest,
    VersionResponse,
};

/// The CRI version this client speaks.
pub const API_VERSION: &str = "v1";

/// How long one call may take, beyond what the call itself waits for (a
/// stop's grace period, an exec's timeout): a runtime that does not answer
/// fails the call, not the node.
const CALL_LIMIT: Duration = Duration::from_secs(120);

/// An error of the runtime or of reaching it.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The endpoint is not `unix:///PATH` (or a path).
    #[error("container runtime endpoint {0:?}: not unix:///PATH")]
    Endpoint(String),
    /// The runtime could not be reached.
    #[error("container runtime at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    /// The runtime speaks another version of CRI.
    #[error("container runtime {name} {version} speaks CRI {api}, not {API_VERSION}")]
    Version {
        name: String,
        version: String,
        api: String,
    },
    /// A call failed: the gRPC status, as the runtime gave it.
    #[error("{call}: {}: {}", .status.code(), .status.message())]
    Call { call: &'static str, status: Status },
    /// A call took longer than it may.
    #[error("{0}: the container runtime did not answer in time")]
    Timeout(&'static str),
}

impl CriError {
    /// Whether the runtime said what was asked for is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CriError::Call { status, .. } if status.code() == Code::NotFound)
    }
}

/// A client of one container runtime. Clones share its connection.
#[derive(Clone, Debug)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// The socket path of a kubelet-style endpoint, `unix:///run/containerd/containerd.sock`.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CriError> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(CriError::Endpoint(endpoint.to_owned()))
    }
}

impl Cri {
    /// Connects to the runtime at `endpoint` (`unix:///PATH`) and checks that
    /// it speaks CRI v1; the runtime's name and version.
    pub async fn connect(endpoint: &str) -> Result<(Cri, VersionResponse), CriError> {
        let path = socket_path(endpoint)?;
        let unreachable = |message: String| CriError::Unreachable {
            endpoint: endpoint.to_owned(),
            message,
        };
        // The URI is not used: every connection is to the socket.
        let channel = Endpoint::from_static("http://cri.local")
            .connect_timeout(Duration::from_secs(10))
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(&path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| unreachable(source_chain(&e)))?;
        let cri = Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        };
        let version = cri.version().await?;
        if version.runtime_api_version != API_VERSION {
            return Err(CriError::Version {
                name: version.runtime_name,
                version: version.runtime_version,
                api: version.runtime_api_version,
            });
        }
        Ok((cri, version))
    }

    /// The runtime's name and versions.
    pub async fn version(&self) -> Result<VersionResponse, CriError> {
        let request = VersionRequest {
            version: API_VERSION.to_owned(),
        };
        call("Version", self.runtime.clone().version(request)).await
    }

    /// Starts the sandbox of `config` (its namespaces, its network through
    /// the runtime's CNI); the sandbox's id.
    pub async fn run_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String, CriError> {
        let request = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: runtime_handler.to_owned(),
        };
        let response = call(
            "RunPodSandbox",
            self.runtime.clone().run_pod_sandbox(request),
        )
        .await?;
        Ok(response.pod_sandbox_id)
    }

    /// The status of sandbox `id`; `None` when it is not there.
    pub async fn sandbox_status(&self, id: &str) -> Result<Option<PodSandboxStatus>, CriError> {
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: false,
        };
        let status = call(
            "PodSandboxStatus",
            self.runtime.clone().pod_sandbox_status(request),
        )
        .await;
        absent_is_none(status.map(|r| r.status))
    }

    /// The sandboxes whose labels include every one of `labels`.
    pub async fn sandboxes(&self, labels: &[(&str, &str)]) -> Result<Vec<PodSandbox>, CriError> {
        let request = ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                label_selector: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..PodSandboxFilter::default()
            }),
        };
        let response = call(
            "ListPodSandbox",
            self.runtime.clone().list_pod_sandbox(request),
        )
        .await?;
        Ok(response.items)
    }

    /// Stops sandbox `id` and every container in it; done when it is gone.
    pub async fn stop_sandbox(&self, id: &str) -> Result<(), CriError> {
        let request = StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        let done = call(
            "StopPodSandbox",
            self.runtime.clone().stop_pod_sandbox(request),
        )
        .await;
        absent_is_done(done.map(drop))
    }

    /// Removes sandbox `id` and its containers; done when it is gone.
    pub async fn remove_sandbox(&self, id: &str) -> Result<(), CriError> {
        let request = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        let done = call(
            "RemovePodSandbox",
            self.runtime.clone().remove_pod_sandbox(request),
        )
        .await;
        absent_is_done(done.map(drop))
    }

    /// Creates the container of `config` in sandbox `sandbox` (made with
    /// `sandbox_config`); its id.
    pub async fn create_container(
        &self,
        sandbox: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String, CriError> {
        let request = CreateContainerRequest {
            pod_sandbox_id: sandbox.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let response = call(
            "CreateContainer",
            self.runtime.clone().create_container(request),
        )
        .await?;
        Ok(response.container_id)
    }

    /// Starts container `id`.
    pub async fn start_container(&self, id: &str) -> Result<(), CriError> {
        let request = StartContainerRequest {
            container_id: id.to_owned(),
        };
        call(
            "StartContainer",
            self.runtime.clone().start_container(request),
        )
        .await
        .map(drop)
    }

    /// The status of container `id`; `None` when it is not there.
    pub async fn container_status(&self, id: &str) -> Result<Option<ContainerStatus>, CriError> {
        let request = ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        };
        let status = call(
            "ContainerStatus",
            self.runtime.clone().container_status(request),
        )
        .await;
        absent_is_none(status.map(|r| r.status))
    }

    /// The containers of sandbox `sandbox`, in any state.
    pub async fn containers(&self, sandbox: &str) -> Result<Vec<v1::Container>, CriError> {
        let request = ListContainersRequest {
            filter: Some(v1::ContainerFilter {
                pod_sandbox_id: sandbox.to_owned(),
                ..v1::ContainerFilter::default()
            }),
        };
        let response = call(
            "ListContainers",
            self.runtime.clone().list_containers(request),
        )
        .await?;
        Ok(response.containers)
    }

    /// Stops container `id`: SIGTERM (or its image's stop signal), then
    /// SIGKILL after `grace`; done when it has ended or is gone.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), CriError> {
        let request = StopContainerRequest {
            container_id: id.to_owned(),
            timeout: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
        };
        let stopped = bounded(
            "StopContainer",
            grace + CALL_LIMIT,
            self.runtime.clone().stop_container(request),
        )
        .await;
        absent_is_done(stopped.map(drop))
    }

    /// Removes container `id`; done when it is gone.
    pub async fn remove_container(&self, id: &str) -> Result<(), CriError> {
        let request = RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        let done = call(
            "RemoveContainer",
            self.runtime.clone().remove_container(request),
        )
        .await;
        absent_is_done(done.map(drop))
    }

    /// Runs `command` in container `id` to its end or for at most `timeout`;
    /// its exit code, standard output and standard error.
    pub async fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<v1::ExecSyncResponse, CriError> {
        let request = ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: command.to_vec(),
            timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        };
        bounded(
            "ExecSync",
            timeout + CALL_LIMIT,
            self.runtime.clone().exec_sync(request),
        )
        .await
    }

    /// The runtime's image `reference`; `None` when it does not have it.
    pub async fn image(&self, reference: &str) -> Result<Option<v1::Image>, CriError> {
        let request = ImageStatusRequest {
            image: Some(image_spec(reference)),
            verbose: false,
        };
        let response = call("ImageStatus", self.images.clone().image_status(request)).await?;
        Ok(response.image)
    }

    /// Pulls image `reference` with `auth`; the image's id.
    pub async fn pull_image(
        &self,
        reference: &str,
        auth: Option<AuthConfig>,
        sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String, CriError> {
        let request = PullImageRequest {
            image: Some(image_spec(reference)),
            auth,
            sandbox_config,
        };
        let pulled = bounded(
            "PullImage",
            Duration::from_secs(15 * 60),
            self.images.clone().pull_image(request),
        )
        .await?;
        Ok(pulled.image_ref)
    }
}

/// The image spec of `reference`.
pub fn image_spec(reference: &str) -> ImageSpec {
    ImageSpec {
        image: reference.to_owned(),
        user_specified_image: reference.to_owned(),
        ..ImageSpec::default()
    }
}

async fn call<T>(
    name: &'static str,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, CriError> {
    bounded(name, CALL_LIMIT, call).await
}

async fn bounded<T>(
    name: &'static str,
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, CriError> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(CriError::Call { call: name, status }),
        Err(_) => Err(CriError::Timeout(name)),
    }
}

/// A removal or stop of what is already gone succeeded.
fn absent_is_done(result: Result<(), CriError>) -> Result<(), CriError> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// A status of what is not there is `None`.
fn absent_is_none<T>(result: Result<Option<T>, CriError>) -> Result<Option<T>, CriError> {
    match result {
        Err(e) if e.is_not_found() => Ok(None),
        other => other,
    }
}

/// An error with its sources, as one line.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn endpoints_are_unix_sockets() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").unwrap(),
            Path::new("/run/containerd/containerd.sock")
        );
        assert_eq!(
            socket_path("/tmp/c.sock").unwrap(),
            Path::new("/tmp/c.sock")
        );
        assert!(matches!(
            socket_path("tcp://127.0.0.1:1"),
            Err(CriError::Endpoint(_))
        ));
        assert!(socket_path("unix://relative.sock").is_err());
    }

    #[test]
    fn not_found_is_done_for_removals_and_none_for_statuses() {
        let gone = || CriError::Call {
            call: "RemoveContainer",
            status: Status::not_found("no such container"),
        };
        assert!(absent_is_done(Err(gone())).is_ok());
        assert!(matches!(absent_is_none::<()>(Err(gone())), Ok(None)));
        let refused = CriError::Call {
            call: "RemoveContainer",
            status: Status::failed_precondition("running"),
        };
        assert!(absent_is_done(Err(refused)).is_err());
    }
}
