//! PodSecurity: the Pod Security Standards (privileged, baseline,
//! restricted) as Kubernetes' Pod Security admission applies them, from the
//! `pod-security.kubernetes.io/<mode>` labels of a pod's namespace (modes
//! `enforce`, `warn`, `audit`; `<mode>-version` pins a version), with
//! cluster defaults and exemptions from the policy's settings, as
//! Kubernetes' `PodSecurityConfiguration` has them:
//!
//! ```json
//! {"defaults": {"enforce": "baseline", "warn": "restricted"},
//!  "exemptions": {"usernames": [], "namespaces": ["kube-system"], "runtimeClasses": []}}
//! ```
//!
//! `enforce` refuses a pod (`violates PodSecurity "restricted:latest": …`);
//! `warn` answers with a warning (`would violate PodSecurity …`), for pods
//! and for the pod templates of workloads, which `enforce` leaves to their
//! pods. The checks are Kubernetes' own, in their order, with their words;
//! in a Wasm pod they hold as in a container: a hostPath volume or the host's
//! network is what the pod may reach outside its sandbox.

use serde_json::Value;
use wasmkube_admission_sdk::{Cluster, Operation, Policy, Request, Verdict};

/// The labels of a namespace that set its levels.
const LABEL: &str = "pod-security.kubernetes.io/";

/// The levels, from the most permissive.
const LEVELS: [&str; 3] = ["privileged", "baseline", "restricted"];

/// Capabilities a baseline pod may add.
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Volume types a restricted pod may use.
const RESTRICTED_VOLUMES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Sysctls a baseline pod may set.
const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_syncookies",
];

/// Workload kinds whose pod templates are checked (warnings only), and where
/// their template is.
const TEMPLATES: [(&str, &str, &str); 8] = [
    ("apps", "deployments", "/spec/template"),
    ("apps", "replicasets", "/spec/template"),
    ("apps", "statefulsets", "/spec/template"),
    ("apps", "daemonsets", "/spec/template"),
    ("batch", "jobs", "/spec/template"),
    ("batch", "cronjobs", "/spec/jobTemplate/spec/template"),
    ("", "replicationcontrollers", "/spec/template"),
    ("", "podtemplates", "/template"),
];

/// The PodSecurity admission policy.
#[derive(Debug, Default)]
pub struct PodSecurity {
    /// The levels of namespaces without labels, by mode.
    defaults: Vec<(String, String)>,
    exempt_users: Vec<String>,
    exempt_namespaces: Vec<String>,
    exempt_runtime_classes: Vec<String>,
}

/// A level and the version it is pinned to (`latest`).
struct Level {
    level: &'static str,
    version: String,
}

impl Level {
    fn rank(&self) -> usize {
        LEVELS.iter().position(|l| *l == self.level).unwrap_or(0)
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

fn known_level(level: &str) -> Option<&'static str> {
    LEVELS.iter().find(|l| **l == level).copied()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

impl Policy for PodSecurity {
    fn new(settings: Value) -> Result<Self, String> {
        let mut defaults = Vec::new();
        if let Some(given) = settings["defaults"].as_object() {
            for (mode, value) in given {
                let value = value
                    .as_str()
                    .ok_or_else(|| format!("defaults.{mode}: must be a string"))?;
                let known = ["enforce", "warn", "audit"];
                let versioned = mode.strip_suffix("-version");
                match versioned {
                    Some(m) if known.contains(&m) => {}
                    None if known.contains(&mode.as_str()) => {
                        if known_level(value).is_none() {
                            return Err(format!(
                                "defaults.{mode}: {value:?} is not one of \"privileged\", \"baseline\", \"restricted\""
                            ));
                        }
                    }
                    _ => return Err(format!("defaults.{mode}: not a mode")),
                }
                defaults.push((mode.clone(), value.to_owned()));
            }
        }
        let exemptions = &settings["exemptions"];
        Ok(PodSecurity {
            defaults,
            exempt_users: strings(&exemptions["usernames"]),
            exempt_namespaces: strings(&exemptions["namespaces"]),
            exempt_runtime_classes: strings(&exemptions["runtimeClasses"]),
        })
    }

    fn validate(&self, request: &Request, cluster: &dyn Cluster) -> Verdict {
        if request.namespace.is_empty()
            || request.operation != Operation::Create
            || !request.sub_resource.is_empty()
            || self.exempt_users.contains(&request.username)
            || self.exempt_namespaces.contains(&request.namespace)
        {
            return Verdict::allow();
        }
        let template = TEMPLATES
            .iter()
            .find(|(group, plural, _)| request.is(group, plural))
            .map(|(_, _, path)| *path);
        let pod_spec_path = match template {
            Some(path) => format!("{path}/spec"),
            None if request.is("", "pods") => "/spec".to_owned(),
            None => return Verdict::allow(),
        };
        let Some(spec) = request.field(&pod_spec_path) else {
            return Verdict::allow();
        };
        if spec["runtimeClassName"]
            .as_str()
            .is_some_and(|c| self.exempt_runtime_classes.iter().any(|e| e == c))
        {
            return Verdict::allow();
        }
        let labels = match cluster.get("v1", "namespaces", "", &request.namespace) {
            Ok(Some(ns)) => ns["metadata"]["labels"].clone(),
            Ok(None) => Value::Null,
            Err(e) => return Verdict::refuse(500, "InternalError", e),
        };
        let level = |mode: &str| self.level(&labels, mode);
        let mut verdict = Verdict::allow();
        if template.is_none() {
            let enforce = level("enforce");
            let violations = violations(&spec, &enforce);
            if !violations.is_empty() {
                return request.forbid(format!("violates PodSecurity \"{enforce}\": {violations}"));
            }
        }
        let warn = level("warn");
        let violations = violations(&spec, &warn);
        if !violations.is_empty() {
            verdict = verdict.warn(format!(
                "would violate PodSecurity \"{warn}\": {violations}"
            ));
        }
        verdict
    }
}

impl PodSecurity {
    /// The level of `mode` a namespace with `labels` has: its label, else the
    /// default, else `privileged`; a label that names no level counts as
    /// `restricted`, as Kubernetes counts it.
    fn level(&self, labels: &Value, mode: &str) -> Level {
        let default = |key: &str| {
            self.defaults
                .iter()
                .find(|(m, _)| m == key)
                .map(|(_, v)| v.clone())
        };
        let labelled = |key: &str| labels[format!("{LABEL}{key}")].as_str().map(str::to_owned);
        let version_key = format!("{mode}-version");
        let level = labelled(mode)
            .or_else(|| default(mode))
            .map_or("privileged", |l| known_level(&l).unwrap_or("restricted"));
        let version = labelled(&version_key)
            .or_else(|| default(&version_key))
            .unwrap_or_else(|| "latest".to_owned());
        Level { level, version }
    }
}

/// A container's name and its securityContext.
struct Container<'a> {
    name: &'a str,
    context: &'a Value,
    spec: &'a Value,
}

fn containers(spec: &Value) -> Vec<Container<'_>> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| spec[*list].as_array().into_iter().flatten())
        .map(|c| Container {
            name: c["name"].as_str().unwrap_or(""),
            context: &c["securityContext"],
            spec: c,
        })
        .collect()
}

/// `"a", "b"`, as Kubernetes quotes lists.
fn quoted(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    quoted.join(", ")
}

/// `container "a"` or `containers "a", "b"`.
fn containers_named(names: &[&str]) -> String {
    let noun = if names.len() == 1 {
        "container"
    } else {
        "containers"
    };
    format!("{noun} {}", quoted(names))
}

/// The violations of `spec` at `level`, in Kubernetes' order and words:
/// `reason (detail), reason (detail)`; empty when it complies.
fn violations(spec: &Value, level: &Level) -> String {
    if level.rank() == 0 {
        return String::new();
    }
    let restricted = level.rank() >= 2;
    let all = containers(spec);
    let mut found: Vec<(&str, String)> = Vec::new();
    let mut check = |reason: &'static str, detail: Option<String>| {
        if let Some(detail) = detail {
            found.push((reason, detail));
        }
    };
    let named = |pick: &dyn Fn(&Container) -> bool| -> Vec<&str> {
        all.iter().filter(|c| pick(c)).map(|c| c.name).collect()
    };
    let some = |names: Vec<&str>, text: &dyn Fn(&str) -> String| {
        (!names.is_empty()).then(|| text(&containers_named(&names)))
    };
    if restricted {
        check(
            "allowPrivilegeEscalation != false",
            some(
                named(&|c| c.context["allowPrivilegeEscalation"] != false),
                &|who| format!("{who} must set securityContext.allowPrivilegeEscalation=false"),
            ),
        );
    }
    let added = |c: &Container| strings(&c.context["capabilities"]["add"]);
    if restricted {
        let mut details = Vec::new();
        let undropped = named(&|c| {
            !strings(&c.context["capabilities"]["drop"])
                .iter()
                .any(|d| d == "ALL")
        });
        if !undropped.is_empty() {
            details.push(format!(
                "{} must set securityContext.capabilities.drop=[\"ALL\"]",
                containers_named(&undropped)
            ));
        }
        let mut adders = Vec::new();
        let mut adds: Vec<String> = Vec::new();
        for c in &all {
            let extra: Vec<String> = added(c)
                .into_iter()
                .filter(|a| a != "NET_BIND_SERVICE")
                .collect();
            if !extra.is_empty() {
                adders.push(c.name);
                adds.extend(
                    extra
                        .into_iter()
                        .filter(|a| !adds.contains(a))
                        .collect::<Vec<_>>(),
                );
            }
        }
        if !adders.is_empty() {
            let adds: Vec<&str> = adds.iter().map(String::as_str).collect();
            details.push(format!(
                "{} must not include {} in securityContext.capabilities.add",
                containers_named(&adders),
                quoted(&adds)
            ));
        }
        check(
            "unrestricted capabilities",
            (!details.is_empty()).then(|| details.join("; ")),
        );
    } else {
        let mut adders = Vec::new();
        let mut adds: Vec<String> = Vec::new();
        for c in &all {
            let extra: Vec<String> = added(c)
                .into_iter()
                .filter(|a| !BASELINE_CAPABILITIES.contains(&a.as_str()))
                .collect();
            if !extra.is_empty() {
                adders.push(c.name);
                for a in extra {
                    if !adds.contains(&a) {
                        adds.push(a);
                    }
                }
            }
        }
        let adds: Vec<&str> = adds.iter().map(String::as_str).collect();
        check(
            "non-default capabilities",
            (!adders.is_empty()).then(|| {
                format!(
                    "{} must not include {} in securityContext.capabilities.add",
                    containers_named(&adders),
                    quoted(&adds)
                )
            }),
        );
    }
    let host: Vec<&str> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|field| spec[*field] == true)
        .collect();
    let host: Vec<String> = host.iter().map(|f| format!("{f}=true")).collect();
    check(
        "host namespaces",
        (!host.is_empty()).then(|| host.join(", ")),
    );
    let volumes: Vec<(&str, &str)> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let name = v["name"].as_str().unwrap_or("");
            let kind = v
                .as_object()
                .and_then(|o| o.keys().find(|k| *k != "name"))
                .map_or("", String::as_str);
            (name, kind)
        })
        .collect();
    if !restricted {
        let paths: Vec<&str> = volumes
            .iter()
            .filter(|(_, kind)| *kind == "hostPath")
            .map(|(name, _)| *name)
            .collect();
        let noun = if paths.len() == 1 {
            "volume"
        } else {
            "volumes"
        };
        check(
            "hostPath volumes",
            (!paths.is_empty()).then(|| format!("{noun} {}", quoted(&paths))),
        );
    }
    let mut users = Vec::new();
    let mut ports = Vec::new();
    for c in &all {
        let used: Vec<String> = c.spec["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["hostPort"].as_i64().filter(|p| *p != 0))
            .map(|p| p.to_string())
            .collect();
        if !used.is_empty() {
            users.push(c.name);
            ports.extend(used);
        }
    }
    check(
        "hostPort",
        (!users.is_empty()).then(|| {
            let (uses, noun) = match (users.len(), ports.len()) {
                (1, 1) => ("uses", "hostPort"),
                (1, _) => ("uses", "hostPorts"),
                (_, _) => ("use", "hostPorts"),
            };
            format!(
                "{} {uses} {noun} {}",
                containers_named(&users),
                ports.join(", ")
            )
        }),
    );
    check(
        "privileged",
        some(named(&|c| c.context["privileged"] == true), &|who| {
            format!("{who} must not set securityContext.privileged=true")
        }),
    );
    let mut mounts: Vec<&str> = Vec::new();
    let unmasked = named(&|c| {
        let mount = c.context["procMount"].as_str().unwrap_or("Default");
        mount != "Default"
    });
    for c in &all {
        if let Some(m) = c.context["procMount"].as_str().filter(|m| *m != "Default")
            && !mounts.contains(&m)
        {
            mounts.push(m);
        }
    }
    check(
        "procMount",
        some(unmasked, &|who| {
            format!(
                "{who} must not set securityContext.procMount to {}",
                quoted(&mounts)
            )
        }),
    );
    if restricted {
        let restricted_volumes: Vec<(&str, &str)> = volumes
            .iter()
            .copied()
            .filter(|(_, kind)| !RESTRICTED_VOLUMES.contains(kind))
            .collect();
        check(
            "restricted volume types",
            (!restricted_volumes.is_empty()).then(|| {
                let names: Vec<&str> = restricted_volumes.iter().map(|(n, _)| *n).collect();
                let mut kinds: Vec<&str> = Vec::new();
                for (_, kind) in &restricted_volumes {
                    if !kinds.contains(kind) {
                        kinds.push(kind);
                    }
                }
                let (noun, verb, types) = match names.len() {
                    1 => ("volume", "uses", "type"),
                    _ => ("volumes", "use", "types"),
                };
                let types = if kinds.len() == 1 { "type" } else { types };
                format!(
                    "{noun} {} {verb} restricted volume {types} {}",
                    quoted(&names),
                    quoted(&kinds)
                )
            }),
        );
        let pod = &spec["securityContext"];
        let non_root = if pod["runAsNonRoot"] == false {
            Some("pod must not set securityContext.runAsNonRoot=false".to_owned())
        } else {
            let explicit_false = named(&|c| c.context["runAsNonRoot"] == false);
            let unset = named(&|c| c.context["runAsNonRoot"].is_null());
            if !explicit_false.is_empty() {
                Some(format!(
                    "{} must not set securityContext.runAsNonRoot=false",
                    containers_named(&explicit_false)
                ))
            } else if pod["runAsNonRoot"] != true && !unset.is_empty() {
                Some(format!(
                    "pod or {} must set securityContext.runAsNonRoot=true",
                    containers_named(&unset)
                ))
            } else {
                None
            }
        };
        check("runAsNonRoot != true", non_root);
        let root_user = if pod["runAsUser"] == 0 {
            Some("pod must not set runAsUser=0".to_owned())
        } else {
            some(named(&|c| c.context["runAsUser"] == 0), &|who| {
                format!("{who} must not set runAsUser=0")
            })
        };
        check("runAsUser=0", root_user);
        let allowed = |profile: &Value| {
            matches!(
                profile["type"].as_str(),
                Some("RuntimeDefault" | "Localhost")
            )
        };
        let pod_profile = &pod["seccompProfile"];
        let seccomp = if !pod_profile.is_null() && !allowed(pod_profile) {
            Some(format!(
                "pod must not set securityContext.seccompProfile.type to {:?}",
                pod_profile["type"].as_str().unwrap_or("")
            ))
        } else {
            let bad = named(&|c| {
                !c.context["seccompProfile"].is_null() && !allowed(&c.context["seccompProfile"])
            });
            let unset = named(&|c| c.context["seccompProfile"].is_null());
            if !bad.is_empty() {
                Some(format!(
                    "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                    containers_named(&bad)
                ))
            } else if pod_profile.is_null() && !unset.is_empty() {
                Some(format!(
                    "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                    containers_named(&unset)
                ))
            } else {
                None
            }
        };
        check("seccompProfile", seccomp);
    } else {
        let unconfined = |profile: &Value| profile["type"] == "Unconfined";
        let seccomp = if unconfined(&spec["securityContext"]["seccompProfile"]) {
            Some(
                "pod must not set securityContext.seccompProfile.type to \"Unconfined\"".to_owned(),
            )
        } else {
            some(
                named(&|c| unconfined(&c.context["seccompProfile"])),
                &|who| {
                    format!(
                        "{who} must not set securityContext.seccompProfile.type to \"Unconfined\""
                    )
                },
            )
        };
        check("seccompProfile", seccomp);
    }
    let sysctls: Vec<String> = spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|name| !SAFE_SYSCTLS.contains(name))
        .map(str::to_owned)
        .collect();
    check(
        "forbidden sysctls",
        (!sysctls.is_empty()).then(|| sysctls.join(", ")),
    );
    let parts: Vec<String> = found
        .into_iter()
        .map(|(reason, detail)| format!("{reason} ({detail})"))
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{Objects, pod_in_shop};

    fn namespace(labels: Value) -> Objects {
        Objects(vec![(
            "namespaces",
            "",
            json!({"metadata": {"name": "shop", "labels": labels}}),
        )])
    }

    fn pod(spec: Value) -> Request {
        pod_in_shop(spec)
    }

    fn host_path_pod() -> Request {
        pod(json!({"containers": [{"name": "app", "image": "x"}],
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}))
    }

    #[test]
    fn restricted_refuses_with_every_reason_in_kubernetes_words() {
        let policy = PodSecurity::new(json!({})).unwrap();
        let refused = policy.validate(
            &host_path_pod(),
            &namespace(json!({"pod-security.kubernetes.io/enforce": "restricted"})),
        );
        assert_eq!(
            refused.status.unwrap().message,
            "pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\": \
             allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             restricted volume types (volume \"h\" uses restricted volume type \"hostPath\"), \
             runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        let compliant = pod(json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "image": "x", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "c", "configMap": {"name": "c"}}],
        }));
        let labels = json!({"pod-security.kubernetes.io/enforce": "restricted"});
        assert!(policy.validate(&compliant, &namespace(labels)).allowed);
    }

    #[test]
    fn warn_mode_warns_and_lets_the_pod_in() {
        let policy = PodSecurity::new(json!({})).unwrap();
        let labels = json!({"pod-security.kubernetes.io/warn": "baseline",
            "pod-security.kubernetes.io/warn-version": "v1.33"});
        let verdict = policy.validate(&host_path_pod(), &namespace(labels));
        assert!(verdict.allowed);
        assert_eq!(
            verdict.warnings,
            ["would violate PodSecurity \"baseline:v1.33\": hostPath volumes (volume \"h\")"]
        );
    }

    #[test]
    fn the_default_level_is_privileged_unless_settings_say_otherwise() {
        let open = PodSecurity::new(json!({})).unwrap();
        let verdict = open.validate(&host_path_pod(), &namespace(json!({})));
        assert!(verdict.allowed && verdict.warnings.is_empty());
        let strict = PodSecurity::new(json!({"defaults": {"enforce": "baseline"},
            "exemptions": {"namespaces": ["kube-system"]}}))
        .unwrap();
        let refused = strict.validate(&host_path_pod(), &namespace(json!({})));
        assert_eq!(
            refused.status.unwrap().message,
            "pods \"p\" is forbidden: violates PodSecurity \"baseline:latest\": hostPath volumes (volume \"h\")"
        );
        assert!(PodSecurity::new(json!({"defaults": {"enforce": "strict"}})).is_err());
    }

    #[test]
    fn baseline_names_host_namespaces_ports_privilege_and_capabilities() {
        let policy = PodSecurity::new(json!({})).unwrap();
        let spec = json!({"hostNetwork": true, "containers": [
            {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}],
             "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}},
        ]});
        let refused = policy.validate(
            &pod(spec),
            &namespace(json!({"pod-security.kubernetes.io/enforce": "baseline"})),
        );
        assert_eq!(
            refused.status.unwrap().message,
            "pods \"p\" is forbidden: violates PodSecurity \"baseline:latest\": \
             non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in securityContext.capabilities.add), \
             host namespaces (hostNetwork=true), hostPort (container \"a\" uses hostPort 8080), \
             privileged (container \"a\" must not set securityContext.privileged=true)"
        );
    }

    #[test]
    fn workload_templates_are_warned_of_never_refused() {
        let policy = PodSecurity::new(json!({})).unwrap();
        let deployment = json!({"metadata": {"name": "d", "namespace": "shop"}, "spec": {"template": {"spec": {
            "containers": [{"name": "app", "image": "x"}],
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}}}});
        let request = Request::new(
            Operation::Create,
            ("apps", "v1", "deployments"),
            "Deployment",
            "shop",
            Some(deployment),
            None,
        );
        let labels = json!({"pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "baseline"});
        let verdict = policy.validate(&request, &namespace(labels));
        assert!(verdict.allowed);
        assert_eq!(verdict.warnings.len(), 1, "{:?}", verdict.warnings);
    }
}
