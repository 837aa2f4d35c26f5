//! What the kubelet asks of a runtime for a pod and its containers, made
//! from the Pod: the sandbox's metadata, labels, namespaces, DNS and ports;
//! a container's command, environment, mounts, resources, security and the
//! path of its log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, PodSpec, SecurityContext};

use crate::image_spec;
use crate::v1::{
    Capability, ContainerConfig, ContainerMetadata, DnsConfig, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol,
};

/// The labels the kubelet puts on sandboxes and containers, by which it
/// finds them again.
pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The annotation with a container's restart count.
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";

/// What a node gives every sandbox.
#[derive(Clone, Debug)]
pub struct Node {
    /// Where pods' logs go: each pod's in `NAMESPACE_NAME_UID` under it.
    pub log_root: PathBuf,
    /// The cluster's DNS server and domain (`cluster.local`), if it has one.
    pub dns: Option<(String, String)>,
}

/// The directory of a pod's logs under `log_root`, as the kubelet names it.
pub fn pod_log_dir(log_root: &Path, pod: &Pod) -> PathBuf {
    let meta = &pod.metadata;
    log_root.join(format!(
        "{}_{}_{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default()
    ))
}

/// The sandbox of `pod`, its `attempt`-th on this node.
pub fn sandbox(pod: &Pod, attempt: u32, node: &Node) -> PodSandboxConfig {
    let meta = &pod.metadata;
    let no_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&no_spec);
    let host_network = spec.host_network == Some(true);
    let (name, namespace, uid) = (
        meta.name.clone().unwrap_or_default(),
        meta.namespace.clone().unwrap_or_default(),
        meta.uid.clone().unwrap_or_default(),
    );
    let mut labels: HashMap<String, String> = meta
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend([
        (POD_NAME.to_owned(), name.clone()),
        (POD_NAMESPACE.to_owned(), namespace.clone()),
        (POD_UID.to_owned(), uid.clone()),
    ]);
    let hostname = if host_network {
        String::new()
    } else {
        spec.hostname.clone().unwrap_or_else(|| name.clone())
    };
    let dns_config = dns(&spec.dns_policy, host_network, &namespace, node);
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = p.host_port.filter(|port| *port > 0)?;
            Some(PortMapping {
                protocol: protocol(p.protocol.as_deref()) as i32,
                container_port: p.container_port,
                host_port,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect();
    let no_context = PodSecurityContext::default();
    let context = spec.security_context.as_ref().unwrap_or(&no_context);
    let security_context = LinuxSandboxSecurityContext {
        namespace_options: Some(namespaces(spec)),
        run_as_user: context.run_as_user.map(|value| Int64Value { value }),
        run_as_group: context.run_as_group.map(|value| Int64Value { value }),
        supplemental_groups: context.supplemental_groups.clone().unwrap_or_default(),
        ..LinuxSandboxSecurityContext::default()
    };
    let sysctls = context
        .sysctls
        .iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name,
            uid,
            namespace,
            attempt,
        }),
        hostname,
        log_directory: pod_log_dir(&node.log_root, pod).display().to_string(),
        dns_config,
        port_mappings,
        labels,
        annotations: meta
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(security_context),
            sysctls,
            ..LinuxPodSandboxConfig::default()
        }),
        windows: None,
    }
}

/// The namespaces of a pod's sandbox and containers: the node's when the pod
/// asks for them, else the pod's own (its processes' own unless it shares
/// them).
fn namespaces(spec: &PodSpec) -> NamespaceOption {
    let mode = |host: Option<bool>, own: NamespaceMode| {
        if host == Some(true) {
            NamespaceMode::Node as i32
        } else {
            own as i32
        }
    };
    let pid_own = if spec.share_process_namespace == Some(true) {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    NamespaceOption {
        network: mode(spec.host_network, NamespaceMode::Pod),
        pid: mode(spec.host_pid, pid_own),
        ipc: mode(spec.host_ipc, NamespaceMode::Pod),
        ..NamespaceOption::default()
    }
}

/// DNS as the kubelet sets it: the cluster's server and search path for
/// `ClusterFirst` (the default), and for `ClusterFirstWithHostNet`; the
/// node's own resolver (nothing set) for `Default` and for pods on the
/// node's network.
fn dns(
    policy: &Option<String>,
    host_network: bool,
    namespace: &str,
    node: &Node,
) -> Option<DnsConfig> {
    let (server, domain) = node.dns.as_ref()?;
    let cluster = match policy.as_deref() {
        None | Some("ClusterFirst") => !host_network,
        Some("ClusterFirstWithHostNet") => true,
        _ => false,
    };
    cluster.then(|| DnsConfig {
        servers: vec![server.clone()],
        searches: vec![
            format!("{namespace}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.clone(),
        ],
        options: vec!["ndots:5".to_owned()],
    })
}

fn protocol(name: Option<&str>) -> Protocol {
    match name {
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// What a container gets that the agent found for it: its image as the
/// runtime knows it, its environment (values resolved, in order), its
/// mounts, and how many times it ran before.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub image: String,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub attempt: u32,
}

/// The container `container` of `pod`, in a sandbox made by [`sandbox`].
pub fn container(pod: &Pod, container: &Container, inputs: Inputs) -> ContainerConfig {
    let meta = &pod.metadata;
    let no_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&no_spec);
    let env = expand_env(&inputs.env);
    let lookup: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let expand_all = |words: &Option<Vec<String>>| -> Vec<String> {
        words.iter().flatten().map(|w| expand(w, &lookup)).collect()
    };
    let labels = HashMap::from([
        (POD_NAME.to_owned(), meta.name.clone().unwrap_or_default()),
        (
            POD_NAMESPACE.to_owned(),
            meta.namespace.clone().unwrap_or_default(),
        ),
        (POD_UID.to_owned(), meta.uid.clone().unwrap_or_default()),
        (CONTAINER_NAME.to_owned(), container.name.clone()),
    ]);
    let annotations = HashMap::from([(RESTART_COUNT.to_owned(), inputs.attempt.to_string())]);
    let mut security = security(container.security_context.as_ref());
    security.namespace_options = Some(namespaces(spec));
    let no_context = PodSecurityContext::default();
    let pod_context = spec.security_context.as_ref().unwrap_or(&no_context);
    if security.run_as_user.is_none() {
        security.run_as_user = pod_context.run_as_user.map(|value| Int64Value { value });
    }
    if security.run_as_group.is_none() {
        security.run_as_group = pod_context.run_as_group.map(|value| Int64Value { value });
    }
    security.supplemental_groups = pod_context.supplemental_groups.clone().unwrap_or_default();
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: container.name.clone(),
            attempt: inputs.attempt,
        }),
        image: Some(image_spec(&inputs.image)),
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env
            .into_iter()
            .map(|(key, value)| KeyValue { key, value })
            .collect(),
        mounts: inputs.mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", container.name, inputs.attempt),
        stdin: container.stdin == Some(true),
        stdin_once: container.stdin_once == Some(true),
        tty: container.tty == Some(true),
        linux: Some(LinuxContainerConfig {
            resources: Some(resources(container)),
            security_context: Some(security),
        }),
        ..ContainerConfig::default()
    }
}

/// A container's security context as CRI asks it.
fn security(context: Option<&SecurityContext>) -> LinuxContainerSecurityContext {
    let Some(context) = context else {
        return LinuxContainerSecurityContext::default();
    };
    let capabilities = context.capabilities.as_ref().map(|c| Capability {
        add_capabilities: c.add.clone().unwrap_or_default(),
        drop_capabilities: c.drop.clone().unwrap_or_default(),
        ..Capability::default()
    });
    LinuxContainerSecurityContext {
        capabilities,
        privileged: context.privileged == Some(true),
        run_as_user: context.run_as_user.map(|value| Int64Value { value }),
        run_as_group: context.run_as_group.map(|value| Int64Value { value }),
        readonly_rootfs: context.read_only_root_filesystem == Some(true),
        no_new_privs: context.allow_privilege_escalation == Some(false),
        ..LinuxContainerSecurityContext::default()
    }
}

/// CPU and memory as the kubelet gives them to the runtime: shares from the
/// CPU request (1024 a core, at least 2), a quota from the CPU limit over a
/// 100 ms period, and the memory limit.
pub fn resources(container: &Container) -> LinuxContainerResources {
    let resources = container.resources.clone().unwrap_or_default();
    let milli = |list: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
                 name: &str| {
        list.as_ref()?
            .get(name)
            .and_then(|q| wasmkube_quantity::milli_value(&q.0))
    };
    let cpu_request = milli(&resources.requests, "cpu").or_else(|| milli(&resources.limits, "cpu"));
    let cpu_limit = milli(&resources.limits, "cpu");
    let memory_limit = resources
        .limits
        .as_ref()
        .and_then(|l| l.get("memory"))
        .and_then(|q| wasmkube_quantity::value(&q.0));
    const PERIOD: i64 = 100_000;
    LinuxContainerResources {
        cpu_shares: cpu_request.map_or(2, |m| (m * 1024 / 1000).max(2)),
        cpu_period: if cpu_limit.is_some() { PERIOD } else { 0 },
        cpu_quota: cpu_limit.map_or(0, |m| (m * PERIOD / 1000).max(1000)),
        memory_limit_in_bytes: memory_limit.unwrap_or(0),
        ..LinuxContainerResources::default()
    }
}

/// The environment with each value's `$(NAME)` references to the variables
/// before it expanded, as Kubernetes expands them.
fn expand_env(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut done: Vec<(String, String)> = Vec::with_capacity(env.len());
    for (name, value) in env {
        let lookup: HashMap<&str, &str> =
            done.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let value = expand(value, &lookup);
        done.push((name.clone(), value));
    }
    done
}

/// `text` with `$(NAME)` replaced by the value of `NAME` where it has one
/// (left as written where it has not), and `$$` written as `$`, as
/// Kubernetes expands commands, arguments and environment values.
pub fn expand(text: &str, values: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(open) = after.strip_prefix('(')
            && let Some(close) = open.find(')')
        {
            let name = &open[..close];
            match values.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &open[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web"}, "annotations": {"note": "n"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn node() -> Node {
        Node {
            log_root: PathBuf::from("/var/log/pods"),
            dns: Some(("10.96.0.10".into(), "cluster.local".into())),
        }
    }

    fn namespaces_of(config: PodSandboxConfig) -> NamespaceOption {
        let linux = config.linux.unwrap();
        linux.security_context.unwrap().namespace_options.unwrap()
    }

    #[test]
    fn a_sandbox_carries_the_pods_identity_logs_dns_and_ports() {
        let pod = pod(json!({"containers": [{"name": "c", "image": "i",
            "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}]}));
        let config = sandbox(&pod, 1, &node());
        let meta = config.metadata.clone().unwrap();
        assert_eq!(
            (
                meta.name.as_str(),
                meta.namespace.as_str(),
                meta.uid.as_str(),
                meta.attempt
            ),
            ("web", "shop", "u-1", 1)
        );
        assert_eq!(config.hostname, "web");
        assert_eq!(config.log_directory, "/var/log/pods/shop_web_u-1");
        assert_eq!(config.labels[POD_UID], "u-1");
        assert_eq!(config.labels["app"], "web");
        assert_eq!(config.annotations["note"], "n");
        let dns = config.dns_config.clone().unwrap();
        assert_eq!(dns.servers, ["10.96.0.10"]);
        assert_eq!(
            dns.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(dns.options, ["ndots:5"]);
        assert_eq!(
            config.port_mappings.len(),
            1,
            "only ports with a host port are mapped"
        );
        assert_eq!(config.port_mappings[0].host_port, 8080);
        let namespaces = namespaces_of(config);
        assert_eq!(namespaces.network, NamespaceMode::Pod as i32);
        assert_eq!(namespaces.pid, NamespaceMode::Container as i32);
    }

    #[test]
    fn a_pod_on_the_nodes_network_keeps_the_nodes_names_and_resolver() {
        let on_node = pod(json!({"hostNetwork": true, "shareProcessNamespace": true,
            "containers": [{"name": "c", "image": "i"}]}));
        let config = sandbox(&on_node, 0, &node());
        assert_eq!(config.hostname, "");
        assert!(config.dns_config.is_none());
        let namespaces = namespaces_of(config);
        assert_eq!(namespaces.network, NamespaceMode::Node as i32);
        assert_eq!(namespaces.pid, NamespaceMode::Pod as i32);
        let with_policy = pod(
            json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet",
            "containers": [{"name": "c", "image": "i"}]}),
        );
        assert!(sandbox(&with_policy, 0, &node()).dns_config.is_some());
    }

    #[test]
    fn a_container_gets_its_expanded_command_environment_resources_and_log_path() {
        let pod = pod(json!({"securityContext": {"runAsUser": 1000},
            "containers": [{"name": "app", "image": "busybox",
            "command": ["sh", "-c"], "args": ["echo $(GREETING) $(MISSING) $$(GREETING)"],
            "workingDir": "/srv",
            "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}},
            "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}]}));
        let spec = pod.spec.as_ref().unwrap().containers[0].clone();
        let inputs = Inputs {
            image: "sha256:abc".into(),
            env: vec![
                ("NAME".into(), "world".into()),
                ("GREETING".into(), "hello $(NAME)".into()),
            ],
            mounts: vec![],
            attempt: 2,
        };
        let config = container(&pod, &spec, inputs);
        assert_eq!(config.command, ["sh", "-c"]);
        assert_eq!(config.args, ["echo hello world $(MISSING) $(GREETING)"]);
        assert_eq!(config.envs[1].value, "hello world");
        assert_eq!(config.working_dir, "/srv");
        assert_eq!(config.log_path, "app/2.log");
        assert_eq!(config.metadata.unwrap().attempt, 2);
        assert_eq!(config.image.unwrap().image, "sha256:abc");
        assert_eq!(config.labels[CONTAINER_NAME], "app");
        assert_eq!(config.annotations[RESTART_COUNT], "2");
        let linux = config.linux.unwrap();
        let resources = linux.resources.unwrap();
        assert_eq!(resources.cpu_shares, 256);
        assert_eq!(
            (resources.cpu_period, resources.cpu_quota),
            (100_000, 50_000)
        );
        assert_eq!(resources.memory_limit_in_bytes, 64 << 20);
        let security = linux.security_context.unwrap();
        assert!(security.readonly_rootfs && security.no_new_privs && !security.privileged);
        assert_eq!(
            security.run_as_user.unwrap().value,
            1000,
            "the pod's user when the container names none"
        );
        let capabilities = security.capabilities.unwrap();
        assert_eq!(
            (
                capabilities.add_capabilities,
                capabilities.drop_capabilities
            ),
            (vec!["NET_ADMIN".to_owned()], vec!["ALL".to_owned()])
        );
    }

    #[test]
    fn a_container_without_resources_gets_the_least_shares_and_no_limits() {
        let pod = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        let spec = pod.spec.as_ref().unwrap().containers[0].clone();
        let resources = resources(&spec);
        assert_eq!(resources.cpu_shares, 2);
        assert_eq!(
            (resources.cpu_quota, resources.memory_limit_in_bytes),
            (0, 0)
        );
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let values = HashMap::from([("A", "1"), ("B", "two")]);
        for (text, want) in [
            ("$(A)", "1"),
            ("x$(A)y$(B)z", "x1ytwoz"),
            ("$(C)", "$(C)"),
            ("$$(A)", "$(A)"),
            ("$$", "$"),
            ("a$b", "a$b"),
            ("$(A", "$(A"),
            ("cost: 5$", "cost: 5$"),
        ] {
            assert_eq!(expand(text, &values), want, "{text}");
        }
    }
}
