//! CRI conformance cases on the model of critest's, against a real
//! containerd of each test's own: the runtime's version, sandbox and
//! container lifecycles with their status transitions, stops and removals
//! idempotent, the CRI log format, exec's output and exit codes, image
//! status. Sandboxes here share the node's network: the pod network is the
//! agent's, tested with it.

use std::time::{Duration, Instant};

use wasmkube_cri::containerd::{BUSYBOX, Containerd};
use wasmkube_cri::logs::{self, Stream};
use wasmkube_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxState,
};
use wasmkube_cri::{Cri, image_spec};

async fn connected() -> (Containerd, Cri) {
    let containerd = Containerd::start();
    let (cri, _) = Cri::connect(&containerd.endpoint()).await.unwrap();
    (containerd, cri)
}

/// A sandbox on the node's network, its logs under the test's directory.
fn sandbox_config(containerd: &Containerd, name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "conformance".into(),
            attempt: 0,
        }),
        log_directory: containerd
            .dir()
            .join("logs")
            .join(name)
            .display()
            .to_string(),
        labels: [("test".to_owned(), name.to_owned())].into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..NamespaceOption::default()
                }),
                ..LinuxSandboxSecurityContext::default()
            }),
            ..LinuxPodSandboxConfig::default()
        }),
        ..PodSandboxConfig::default()
    }
}

/// A busybox container running `script` with `sh -c`, its log `NAME.log`.
fn busybox(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(image_spec(BUSYBOX)),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}.log"),
        ..ContainerConfig::default()
    }
}

/// Waits until container `id` is in `state`; its status then.
async fn until_state(
    cri: &Cri,
    id: &str,
    state: ContainerState,
) -> wasmkube_cri::v1::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = cri
            .container_status(id)
            .await
            .unwrap()
            .expect("the container is there");
        if status.state == state as i32 {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} stayed {:?}",
            status.state()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_runtime_is_containerd_speaking_cri_v1() {
    let containerd = Containerd::start();
    let (_, version) = Cri::connect(&containerd.endpoint()).await.unwrap();
    assert_eq!(version.runtime_name, "containerd");
    assert_eq!(version.runtime_api_version, "v1");
    assert!(!version.runtime_version.is_empty());
    let missing = containerd.dir().join("nothing.sock");
    let refused = Cri::connect(&format!("unix://{}", missing.display())).await;
    assert!(refused.is_err(), "a socket nobody serves is an error");
}

#[tokio::test]
async fn a_sandbox_runs_stops_and_goes_and_each_step_can_be_asked_twice() {
    let (containerd, cri) = connected().await;
    let id = cri
        .run_sandbox(sandbox_config(&containerd, "lifecycle"), "")
        .await
        .unwrap();
    let status = cri.sandbox_status(&id).await.unwrap().unwrap();
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(status.metadata.unwrap().name, "lifecycle");
    let listed = cri.sandboxes(&[("test", "lifecycle")]).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [id.as_str()]
    );
    assert!(
        cri.sandboxes(&[("test", "other")])
            .await
            .unwrap()
            .is_empty()
    );

    cri.stop_sandbox(&id).await.unwrap();
    let status = cri.sandbox_status(&id).await.unwrap().unwrap();
    assert_eq!(status.state, PodSandboxState::SandboxNotready as i32);
    cri.stop_sandbox(&id).await.unwrap();

    cri.remove_sandbox(&id).await.unwrap();
    assert!(cri.sandbox_status(&id).await.unwrap().is_none());
    cri.remove_sandbox(&id).await.unwrap();
    cri.stop_sandbox(&id).await.unwrap();
}

#[tokio::test]
async fn a_container_is_created_runs_exits_with_its_code_and_logs_in_cri_format() {
    let (containerd, cri) = connected().await;
    let config = sandbox_config(&containerd, "logs");
    let sandbox = cri.run_sandbox(config.clone(), "").await.unwrap();
    let script = "echo out one; echo err one >&2; printf 'no newline'; exit 3";
    let id = cri
        .create_container(&sandbox, busybox("app", script), config.clone())
        .await
        .unwrap();
    let created = cri.container_status(&id).await.unwrap().unwrap();
    assert_eq!(created.state, ContainerState::ContainerCreated as i32);
    assert_eq!(created.metadata.unwrap().name, "app");

    cri.start_container(&id).await.unwrap();
    let exited = until_state(&cri, &id, ContainerState::ContainerExited).await;
    assert_eq!(exited.exit_code, 3);
    // (containerd may stamp the start after the end of so short a run.)
    assert!(
        exited.started_at > 0 && exited.finished_at > 0,
        "{exited:?}"
    );
    assert_eq!(exited.reason, "Error");
    assert_eq!(exited.log_path, format!("{}/app.log", config.log_directory));

    let text = std::fs::read(&exited.log_path).unwrap();
    let lines: Vec<(Stream, String)> = logs::lines(&text)
        .into_iter()
        .map(|l| (l.stream, String::from_utf8(l.content).unwrap()))
        .collect();
    assert!(
        lines.contains(&(Stream::Stdout, "out one".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(Stream::Stderr, "err one".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(Stream::Stdout, "no newline".into())),
        "{lines:?}"
    );

    // A container in the sandbox is listed, then removed, twice over.
    let listed = cri.containers(&sandbox).await.unwrap();
    assert_eq!(listed.len(), 1);
    cri.remove_container(&id).await.unwrap();
    assert!(cri.container_status(&id).await.unwrap().is_none());
    cri.remove_container(&id).await.unwrap();
    cri.stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    cri.stop_sandbox(&sandbox).await.unwrap();
    cri.remove_sandbox(&sandbox).await.unwrap();
}

#[tokio::test]
async fn a_stop_ends_a_container_that_ignores_sigterm_once_its_grace_is_over() {
    let (containerd, cri) = connected().await;
    let config = sandbox_config(&containerd, "stop");
    let sandbox = cri.run_sandbox(config.clone(), "").await.unwrap();
    // A shell that ignores SIGTERM, as does the program it waits for.
    let stubborn = cri
        .create_container(
            &sandbox,
            busybox("stubborn", "trap '' TERM; sleep 1000 & wait"),
            config.clone(),
        )
        .await
        .unwrap();
    // A shell that traps SIGTERM ends at once, with its own code.
    let polite = cri
        .create_container(
            &sandbox,
            busybox("polite", "trap 'exit 0' TERM; sleep 1000 & wait"),
            config.clone(),
        )
        .await
        .unwrap();
    for id in [&stubborn, &polite] {
        cri.start_container(id).await.unwrap();
        until_state(&cri, id, ContainerState::ContainerRunning).await;
    }
    cri.stop_container(&stubborn, Duration::from_secs(1))
        .await
        .unwrap();
    let killed = until_state(&cri, &stubborn, ContainerState::ContainerExited).await;
    assert_eq!(killed.exit_code, 137, "killed by SIGKILL");
    cri.stop_container(&polite, Duration::from_secs(30))
        .await
        .unwrap();
    let ended = until_state(&cri, &polite, ContainerState::ContainerExited).await;
    assert_eq!(ended.exit_code, 0);
    // Stopping what has ended is done.
    cri.stop_container(&stubborn, Duration::from_secs(1))
        .await
        .unwrap();
    // Removing the sandbox removes its containers.
    cri.stop_sandbox(&sandbox).await.unwrap();
    cri.remove_sandbox(&sandbox).await.unwrap();
    assert!(cri.container_status(&polite).await.unwrap().is_none());
}

#[tokio::test]
async fn exec_gives_a_commands_output_and_exit_code() {
    let (containerd, cri) = connected().await;
    let config = sandbox_config(&containerd, "exec");
    let sandbox = cri.run_sandbox(config.clone(), "").await.unwrap();
    let id = cri
        .create_container(
            &sandbox,
            busybox(
                "app",
                "echo ready > /tmp/state; trap 'exit 0' TERM; sleep 1000 & wait",
            ),
            config.clone(),
        )
        .await
        .unwrap();
    cri.start_container(&id).await.unwrap();
    until_state(&cri, &id, ContainerState::ContainerRunning).await;

    let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let ran = cri
        .exec_sync(
            &id,
            &words(&["sh", "-c", "cat /tmp/state; echo oops >&2; exit 7"]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(ran.exit_code, 7);
    assert_eq!(ran.stdout, b"ready\n");
    assert_eq!(ran.stderr, b"oops\n");
    let ok = cri
        .exec_sync(&id, &words(&["true"]), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(ok.exit_code, 0);
    let missing = cri
        .exec_sync(&id, &words(&["/no/such/program"]), Duration::from_secs(10))
        .await;
    assert!(
        missing.is_err() || missing.is_ok_and(|r| r.exit_code != 0),
        "a program that is not there does not succeed"
    );
    cri.stop_sandbox(&sandbox).await.unwrap();
    cri.remove_sandbox(&sandbox).await.unwrap();
}

#[tokio::test]
async fn image_status_finds_an_imported_image_and_not_a_missing_one() {
    let (_containerd, cri) = connected().await;
    let image = cri.image(BUSYBOX).await.unwrap().expect("imported");
    assert!(image.id.starts_with("sha256:"));
    assert!(
        image.repo_tags.iter().any(|t| t == BUSYBOX),
        "{:?}",
        image.repo_tags
    );
    assert!(image.size > 0);
    assert!(
        cri.image("wasmkube.local/nothing:1")
            .await
            .unwrap()
            .is_none()
    );
    // Without network a pull of what is not here fails, with the reference.
    let pulled = cri.pull_image("127.0.0.1:9/nothing:1", None, None).await;
    let error = pulled.unwrap_err().to_string();
    assert!(error.starts_with("PullImage"), "{error}");
}
