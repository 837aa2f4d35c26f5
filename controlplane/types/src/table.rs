//! Table columns: what `kubectl get` shows for each kind, and the cells computed
//! from an object, as the Kubernetes API server's printers compute them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};

use crate::selector::labels::Selector;

/// Computes one cell from an object, given the time now (Unix seconds).
pub type Cell = fn(&Value, i64) -> Value;

/// One column of a kind's table.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// The column's title (kubectl prints it upper-cased).
    pub name: &'static str,
    /// `string`, `integer`, `date`…
    pub kind: &'static str,
    /// `name` for the object's name column, else empty.
    pub format: &'static str,
    /// 0: always shown; 1: shown with `-o wide`.
    pub priority: i32,
    /// What the column holds.
    pub description: &'static str,
    /// Computes the cell.
    pub cell: Cell,
}

const fn col(name: &'static str, description: &'static str, cell: Cell) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        priority: 0,
        description,
        cell,
    }
}

const fn int(name: &'static str, description: &'static str, cell: Cell) -> Column {
    Column {
        kind: "integer",
        ..col(name, description, cell)
    }
}

const fn wide(column: Column) -> Column {
    Column {
        priority: 1,
        ..column
    }
}

/// The name column every kind's table starts with.
pub const NAME: Column = Column {
    format: "name",
    ..col("Name", "Name must be unique within a namespace.", |o, _| {
        json!(text(o, "metadata.name"))
    })
};

/// The age column, computed from the creation time.
pub const AGE: Column = col(
    "Age",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
    |o, now| json!(age(o, "metadata.creationTimestamp", now)),
);

/// The columns of a kind without columns of its own.
pub const DEFAULT: &[Column] = &[NAME, AGE];

/// Pods.
pub const POD: &[Column] = &[
    NAME,
    col("Ready", "The number of containers ready.", pod_ready),
    col(
        "Status",
        "The aggregate status of the containers in this pod.",
        pod_status,
    ),
    int(
        "Restarts",
        "The number of times the containers in this pod have been restarted.",
        |o, _| {
            json!(
                items(o, "status.containerStatuses")
                    .iter()
                    .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                    .sum::<i64>()
            )
        },
    ),
    AGE,
    wide(col("IP", "IP address allocated to the pod.", |o, _| {
        json!(or_none(text(o, "status.podIP")))
    })),
    wide(col(
        "Node",
        "Name of the node the pod is bound to.",
        |o, _| json!(or_none(text(o, "spec.nodeName"))),
    )),
    wide(col(
        "Nominated Node",
        "Name of the node the pod is nominated to.",
        |o, _| json!(or_none(text(o, "status.nominatedNodeName"))),
    )),
    wide(col("Readiness Gates", "Pod readiness gates.", |o, _| {
        let gates = items(o, "spec.readinessGates");
        json!(if gates.is_empty() {
            "<none>".to_owned()
        } else {
            gates.len().to_string()
        })
    })),
];

/// Ready replicas of the desired ones, `2/3`.
const READY_OF_DESIRED: Column = col("Ready", "Number of the pod with ready state.", |o, _| {
    json!(format!(
        "{}/{}",
        number(o, "status.readyReplicas"),
        number(o, "spec.replicas")
    ))
});

/// The containers of a workload's pod template.
const CONTAINERS: Column = col(
    "Containers",
    "Names of each container in the template.",
    |o, _| json!(containers(o, "name")),
);

/// The images of a workload's pod template.
const IMAGES: Column = col(
    "Images",
    "Images referenced by each container in the template.",
    |o, _| json!(containers(o, "image")),
);

/// A workload's pod selector.
const SELECTOR: Column = col("Selector", "Label selector for pods.", |o, _| {
    json!(selector(o))
});

/// Deployments.
pub const DEPLOYMENT: &[Column] = &[
    NAME,
    READY_OF_DESIRED,
    int(
        "Up-to-date",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
        |o, _| json!(number(o, "status.updatedReplicas")),
    ),
    int(
        "Available",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
        |o, _| json!(number(o, "status.availableReplicas")),
    ),
    AGE,
    wide(CONTAINERS),
    wide(IMAGES),
    wide(SELECTOR),
];

/// ReplicaSets and ReplicationControllers.
pub const REPLICA_SET: &[Column] = &[
    NAME,
    int("Desired", "Number of desired pods.", |o, _| {
        json!(number(o, "spec.replicas"))
    }),
    int("Current", "Number of actual replicas.", |o, _| {
        json!(number(o, "status.replicas"))
    }),
    int("Ready", "The number of ready replicas.", |o, _| {
        json!(number(o, "status.readyReplicas"))
    }),
    AGE,
    wide(CONTAINERS),
    wide(IMAGES),
    wide(SELECTOR),
];

/// StatefulSets.
pub const STATEFUL_SET: &[Column] = &[NAME, READY_OF_DESIRED, AGE];

/// DaemonSets.
pub const DAEMON_SET: &[Column] = &[
    NAME,
    int(
        "Desired",
        "The number of nodes that should be running the daemon pod.",
        |o, _| json!(number(o, "status.desiredNumberScheduled")),
    ),
    int(
        "Current",
        "The number of nodes running at least one daemon pod.",
        |o, _| json!(number(o, "status.currentNumberScheduled")),
    ),
    int(
        "Ready",
        "The number of nodes with a ready daemon pod.",
        |o, _| json!(number(o, "status.numberReady")),
    ),
    int(
        "Up-to-date",
        "The number of nodes running the updated daemon pod.",
        |o, _| json!(number(o, "status.updatedNumberScheduled")),
    ),
    int(
        "Available",
        "The number of nodes with an available daemon pod.",
        |o, _| json!(number(o, "status.numberAvailable")),
    ),
    col("Node Selector", "The node selector of the pods.", |o, _| {
        json!(or_none(pairs(
            o.pointer("/spec/template/spec/nodeSelector")
        )))
    }),
    AGE,
];

/// Jobs.
pub const JOB: &[Column] = &[
    NAME,
    col("Status", "Status of the job.", |o, _| {
        let done = condition(o, "Complete") == Some("True");
        let failed = condition(o, "Failed") == Some("True");
        json!(if done {
            "Complete"
        } else if failed {
            "Failed"
        } else {
            "Running"
        })
    }),
    col(
        "Completions",
        "The desired number of successfully finished pods.",
        |o, _| {
            let completions = o
                .pointer("/spec/completions")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            json!(format!("{}/{completions}", number(o, "status.succeeded")))
        },
    ),
    AGE,
];

/// CronJobs.
pub const CRON_JOB: &[Column] = &[
    NAME,
    col("Schedule", "The schedule in Cron format.", |o, _| {
        json!(text(o, "spec.schedule"))
    }),
    col("Suspend", "Whether the cron job is suspended.", |o, _| {
        let suspended = o.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
        json!(if suspended { "True" } else { "False" })
    }),
    int("Active", "The number of running jobs.", |o, _| {
        json!(items(o, "status.active").len())
    }),
    col(
        "Last Schedule",
        "When the job was last scheduled.",
        |o, now| json!(or_none(age(o, "status.lastScheduleTime", now))),
    ),
    AGE,
];

/// Nodes.
pub const NODE: &[Column] = &[
    NAME,
    col("Status", "The status of the node.", |o, _| {
        let mut status = match condition(o, "Ready") {
            Some("True") => "Ready",
            Some("False") => "NotReady",
            _ => "Unknown",
        }
        .to_owned();
        if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
            status.push_str(",SchedulingDisabled");
        }
        json!(status)
    }),
    col("Roles", "The roles of the node.", |o, _| {
        let roles: Vec<&str> = o
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
            .collect();
        json!(or_none(roles.join(",")))
    }),
    AGE,
    col(
        "Version",
        "Kubelet Version reported by the node.",
        |o, _| json!(text(o, "status.nodeInfo.kubeletVersion")),
    ),
    wide(col("Internal-IP", "List of internal IPs.", |o, _| {
        json!(or_none(address(o, "InternalIP")))
    })),
    wide(col("External-IP", "List of external IPs.", |o, _| {
        json!(or_none(address(o, "ExternalIP")))
    })),
    wide(col("OS-Image", "OS image reported by the node.", |o, _| {
        json!(or_unknown(text(o, "status.nodeInfo.osImage")))
    })),
    wide(col(
        "Kernel-Version",
        "Kernel version reported by the node.",
        |o, _| json!(or_unknown(text(o, "status.nodeInfo.kernelVersion"))),
    )),
    wide(col(
        "Container-Runtime",
        "Container runtime and version.",
        |o, _| {
            json!(or_unknown(text(
                o,
                "status.nodeInfo.containerRuntimeVersion"
            )))
        },
    )),
];

/// Services.
pub const SERVICE: &[Column] = &[
    NAME,
    col("Type", "The type of the service.", |o, _| {
        json!(text(o, "spec.type"))
    }),
    col("Cluster-IP", "The cluster IP of the service.", |o, _| {
        json!(or_none(text(o, "spec.clusterIP")))
    }),
    col("External-IP", "The external IPs of the service.", |o, _| {
        let ingress: Vec<String> = items(o, "status.loadBalancer.ingress")
            .iter()
            .filter_map(|i| {
                i["ip"]
                    .as_str()
                    .or(i["hostname"].as_str())
                    .map(str::to_owned)
            })
            .chain(
                items(o, "spec.externalIPs")
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned)),
            )
            .collect();
        let pending = text(o, "spec.type") == "LoadBalancer" && ingress.is_empty();
        json!(if pending {
            "<pending>".to_owned()
        } else {
            or_none(ingress.join(","))
        })
    }),
    col("Port(s)", "The ports of the service.", |o, _| {
        let ports: Vec<String> = items(o, "spec.ports")
            .iter()
            .map(|p| {
                let proto = p["protocol"].as_str().unwrap_or("TCP");
                match p["nodePort"].as_i64().filter(|n| *n != 0) {
                    Some(node) => format!("{}:{node}/{proto}", p["port"]),
                    None => format!("{}/{proto}", p["port"]),
                }
            })
            .collect();
        json!(or_none(ports.join(",")))
    }),
    AGE,
    wide(col("Selector", "The selector of the service.", |o, _| {
        json!(or_none(pairs(o.pointer("/spec/selector"))))
    })),
];

/// Endpoints.
pub const ENDPOINTS: &[Column] = &[
    NAME,
    col("Endpoints", "Endpoints of the service.", |o, _| {
        let mut out = Vec::new();
        for subset in items(o, "subsets") {
            for address in subset["addresses"].as_array().into_iter().flatten() {
                for port in subset["ports"].as_array().into_iter().flatten() {
                    out.push(format!(
                        "{}:{}",
                        address["ip"].as_str().unwrap_or(""),
                        port["port"]
                    ));
                }
            }
        }
        json!(or_none(out.join(",")))
    }),
    AGE,
];

/// Namespaces.
pub const NAMESPACE: &[Column] = &[
    NAME,
    col("Status", "The status of the namespace.", |o, _| {
        json!(text(o, "status.phase"))
    }),
    AGE,
];

/// ConfigMaps.
pub const CONFIG_MAP: &[Column] = &[
    NAME,
    int("Data", "The number of entries.", |o, _| {
        json!(entries(o, "data") + entries(o, "binaryData"))
    }),
    AGE,
];

/// Secrets.
pub const SECRET: &[Column] = &[
    NAME,
    col("Type", "The type of the secret.", |o, _| {
        json!(text(o, "type"))
    }),
    int("Data", "The number of entries.", |o, _| {
        json!(entries(o, "data"))
    }),
    AGE,
];

/// ServiceAccounts.
pub const SERVICE_ACCOUNT: &[Column] = &[
    NAME,
    int("Secrets", "The number of secrets.", |o, _| {
        json!(items(o, "secrets").len())
    }),
    AGE,
];

/// PersistentVolumeClaims.
pub const PERSISTENT_VOLUME_CLAIM: &[Column] = &[
    NAME,
    col("Status", "The phase of the claim.", |o, _| {
        json!(text(o, "status.phase"))
    }),
    col("Volume", "The bound volume.", |o, _| {
        json!(text(o, "spec.volumeName"))
    }),
    col("Capacity", "The capacity of the bound volume.", |o, _| {
        json!(text(o, "status.capacity.storage"))
    }),
    col("Access Modes", "The access modes.", |o, _| {
        json!(access_modes(o, "status.accessModes"))
    }),
    col("StorageClass", "The storage class.", |o, _| {
        json!(text(o, "spec.storageClassName"))
    }),
    AGE,
];

/// PersistentVolumes.
pub const PERSISTENT_VOLUME: &[Column] = &[
    NAME,
    col("Capacity", "The capacity of the volume.", |o, _| {
        json!(text(o, "spec.capacity.storage"))
    }),
    col("Access Modes", "The access modes.", |o, _| {
        json!(access_modes(o, "spec.accessModes"))
    }),
    col(
        "Reclaim Policy",
        "What happens to the volume when released.",
        |o, _| json!(text(o, "spec.persistentVolumeReclaimPolicy")),
    ),
    col("Status", "The phase of the volume.", |o, _| {
        json!(text(o, "status.phase"))
    }),
    col("Claim", "The bound claim.", |o, _| {
        let claim = o.pointer("/spec/claimRef");
        json!(claim.map_or(String::new(), |c| format!(
            "{}/{}",
            c["namespace"].as_str().unwrap_or(""),
            c["name"].as_str().unwrap_or("")
        )))
    }),
    col("StorageClass", "The storage class.", |o, _| {
        json!(text(o, "spec.storageClassName"))
    }),
    AGE,
];

/// Leases.
pub const LEASE: &[Column] = &[
    NAME,
    col("Holder", "The holder of the lease.", |o, _| {
        json!(text(o, "spec.holderIdentity"))
    }),
    AGE,
];

/// Plugins.
pub const PLUGIN: &[Column] = &[
    NAME,
    col("Extension", "The kind of extension.", |o, _| {
        json!(text(o, "spec.extension"))
    }),
    col("Loaded", "Whether the plugin runs.", |o, _| {
        json!(or_unknown(
            condition(o, "Loaded").unwrap_or_default().to_owned()
        ))
    }),
    int(
        "Failures",
        "Calls of the loaded plugin that failed.",
        |o, _| json!(number(o, "status.failures")),
    ),
    AGE,
];

/// CertificateSigningRequests.
pub const CERTIFICATE_SIGNING_REQUEST: &[Column] = &[
    NAME,
    AGE,
    col("SignerName", "The signer the request is for.", |o, _| {
        json!(or_none(text(o, "spec.signerName")))
    }),
    col("Requestor", "Who created the request.", |o, _| {
        json!(text(o, "spec.username"))
    }),
    col(
        "RequestedDuration",
        "How long the certificate is asked to be valid.",
        |o, _| {
            json!(
                match at(o, "spec.expirationSeconds").and_then(Value::as_i64) {
                    Some(seconds) => human_duration(seconds),
                    None => "<none>".into(),
                }
            )
        },
    ),
    col(
        "Condition",
        "Approved or denied, failed, issued.",
        csr_condition,
    ),
];

/// Events: no name column, as `kubectl get events` shows them.
pub const EVENT: &[Column] = &[
    col(
        "Last Seen",
        "Time since the event was last seen.",
        |o, now| {
            let seen = ["lastTimestamp", "eventTime", "metadata.creationTimestamp"]
                .iter()
                .map(|p| age(o, p, now))
                .find(|a| !a.is_empty());
            json!(seen.unwrap_or_default())
        },
    ),
    col("Type", "The type of the event.", |o, _| {
        json!(text(o, "type"))
    }),
    col("Reason", "Why the event happened.", |o, _| {
        json!(text(o, "reason"))
    }),
    col("Object", "The object the event is about.", |o, _| {
        json!(format!(
            "{}/{}",
            text(o, "involvedObject.kind").to_ascii_lowercase(),
            text(o, "involvedObject.name")
        ))
    }),
    col("Message", "The event's message.", |o, _| {
        json!(text(o, "message"))
    }),
    wide(NAME),
];

/// The value at a dotted path of an object.
fn at<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(object, |v, key| v.get(key))
}

/// The string at `path`, or "".
fn text(object: &Value, path: &str) -> String {
    match at(object, path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn number(object: &Value, path: &str) -> i64 {
    at(object, path).and_then(Value::as_i64).unwrap_or(0)
}

fn items<'a>(object: &'a Value, path: &str) -> &'a [Value] {
    at(object, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn entries(object: &Value, path: &str) -> usize {
    at(object, path)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

fn or_unknown(s: String) -> String {
    if s.is_empty() { "<unknown>".into() } else { s }
}

/// `k=v,k2=v2` of a string map.
fn pairs(map: Option<&Value>) -> String {
    map.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

/// The selector of a workload as `kubectl` prints it: a label selector in its
/// string form, or the `k=v` pairs of a ReplicationController's map.
fn selector(object: &Value) -> String {
    let Some(selector) = object.pointer("/spec/selector") else {
        return "<none>".into();
    };
    if selector.get("matchLabels").is_none() && selector.get("matchExpressions").is_none() {
        return or_none(pairs(Some(selector)));
    }
    serde_json::from_value::<LabelSelector>(selector.clone())
        .ok()
        .and_then(|s| Selector::from_label_selector(&s).ok())
        .map_or_else(|| "<invalid>".into(), |s| or_none(s.to_string()))
}

fn containers(object: &Value, field: &str) -> String {
    items(object, "spec.template.spec.containers")
        .iter()
        .filter_map(|c| c[field].as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    items(object, "status.conditions")
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
}

fn address(object: &Value, kind: &str) -> String {
    items(object, "status.addresses")
        .iter()
        .filter(|a| a["type"] == kind)
        .filter_map(|a| a["address"].as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn access_modes(object: &Value, path: &str) -> String {
    items(object, path)
        .iter()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn pod_ready(pod: &Value, _: i64) -> Value {
    let ready = items(pod, "status.containerStatuses")
        .iter()
        .filter(|c| c["ready"] == true)
        .count();
    json!(format!("{ready}/{}", items(pod, "spec.containers").len()))
}

fn pod_status(pod: &Value, _: i64) -> Value {
    if at(pod, "metadata.deletionTimestamp").is_some_and(|t| !t.is_null()) {
        return json!("Terminating");
    }
    let waiting = items(pod, "status.containerStatuses").iter().find_map(|c| {
        c.pointer("/state/waiting/reason")
            .or_else(|| c.pointer("/state/terminated/reason"))
            .and_then(Value::as_str)
    });
    let reason = text(pod, "status.reason");
    json!(
        match (waiting, reason.as_str(), text(pod, "status.phase").as_str()) {
            (_, r, _) if !r.is_empty() => r.to_owned(),
            (Some(w), _, _) => w.to_owned(),
            (None, _, "") => "Pending".to_owned(),
            (None, _, phase) => phase.to_owned(),
        }
    )
}

/// Where a CertificateSigningRequest is, as kubectl says it: `Pending`,
/// `Approved` or `Denied`, then `,Failed` and `,Issued` when they are so.
fn csr_condition(csr: &Value, _: i64) -> Value {
    let has = |kind: &str| {
        items(csr, "status.conditions")
            .iter()
            .any(|c| c["type"] == kind)
    };
    let mut condition = String::from(if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    });
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if !text(csr, "status.certificate").is_empty() {
        condition.push_str(",Issued");
    }
    json!(condition)
}

/// How long ago the time at `path` was, as kubectl prints ages ("5m", "3h12m").
fn age(object: &Value, path: &str, now: i64) -> String {
    at(object, path).map_or_else(String::new, |t| age_of(t, now))
}

/// How long before `now` (seconds since the epoch) an RFC 3339 time was; empty
/// when it is not one.
pub fn age_of(time: &Value, now: i64) -> String {
    match time
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    {
        Some(then) => human_duration(now - then.as_second()),
        None => String::new(),
    }
}

/// Kubernetes' short human-readable duration.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h) = (s / 60, s / 3600);
    let (d, y) = (h / 24, h / (24 * 365));
    let pair = |a: i64, ua: &str, b: i64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua}{b}{ub}")
        }
    };
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        pair(m, "m", s % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        pair(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        pair(d, "d", h % 24, "h")
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        pair(y, "y", d % 365, "d")
    } else {
        format!("{y}y")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(columns: &[Column], object: &Value, now: i64) -> Vec<Value> {
        columns
            .iter()
            .filter(|c| c.priority == 0)
            .map(|c| (c.cell)(object, now))
            .collect()
    }

    const T0: &str = "2026-01-01T00:00:00Z";
    const T0_SECONDS: i64 = 1_767_225_600;

    #[test]
    fn human_durations_like_kubectl() {
        for (s, want) in [
            (-5, "<invalid>"),
            (0, "0s"),
            (119, "119s"),
            (150, "2m30s"),
            (300, "5m"),
            (3599, "59m"),
            (3 * 3600 + 120, "3h2m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
            (40 * 86400, "40d"),
            (3 * 365 * 86400, "3y"),
            (3 * 365 * 86400 + 86400 * 10, "3y10d"),
            (10 * 365 * 86400, "10y"),
        ] {
            assert_eq!(human_duration(s), want, "{s}s");
        }
    }

    #[test]
    fn pod_row() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": T0},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
                {"ready": true, "restartCount": 2}, {"ready": false, "restartCount": 1,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        });
        assert_eq!(
            row(POD, &pod, T0_SECONDS + 300),
            [
                json!("web"),
                json!("1/2"),
                json!("CrashLoopBackOff"),
                json!(3),
                json!("5m")
            ]
        );
        assert_eq!((POD[5].cell)(&pod, 0), json!("10.0.0.5"));
        assert_eq!((POD[6].cell)(&pod, 0), json!("n1"));
        let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{}]}});
        assert_eq!((POD[2].cell)(&pending, 0), json!("Pending"));
        assert_eq!((POD[5].cell)(&pending, 0), json!("<none>"));
    }

    #[test]
    fn deployment_node_service_rows() {
        let deploy = json!({"metadata": {"name": "d", "creationTimestamp": T0},
            "spec": {"replicas": 3}, "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            row(DEPLOYMENT, &deploy, T0_SECONDS + 7200),
            [json!("d"), json!("2/3"), json!(3), json!(2), json!("120m")]
        );
        let node = json!({"metadata": {"name": "n", "creationTimestamp": T0,
                "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0"}}});
        assert_eq!(
            row(NODE, &node, T0_SECONDS + 10),
            [
                json!("n"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane"),
                json!("10s"),
                json!("v1.33.0")
            ]
        );
        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        assert_eq!(
            row(SERVICE, &svc, 0),
            [
                json!("s"),
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("")
            ]
        );
    }

    #[test]
    fn event_row_has_no_name_column_by_default() {
        let event = json!({"metadata": {"name": "e1"}, "type": "Normal", "reason": "Scheduled",
            "involvedObject": {"kind": "Pod", "name": "web"}, "message": "assigned", "lastTimestamp": T0});
        assert_eq!(
            row(EVENT, &event, T0_SECONDS + 61),
            [
                json!("61s"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/web"),
                json!("assigned")
            ]
        );
    }

    #[test]
    fn csr_rows_say_who_asked_and_where_the_request_is() {
        let mut csr = json!({"metadata": {"name": "node-csr-1", "creationTimestamp": T0},
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "username": "system:bootstrap:abcdef"}});
        let pending = row(CERTIFICATE_SIGNING_REQUEST, &csr, T0_SECONDS + 5);
        assert_eq!(
            pending,
            [
                json!("node-csr-1"),
                json!("5s"),
                json!("kubernetes.io/kube-apiserver-client-kubelet"),
                json!("system:bootstrap:abcdef"),
                json!("<none>"),
                json!("Pending")
            ]
        );
        csr["spec"]["expirationSeconds"] = json!(86_400);
        csr["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}],
            "certificate": "LS0t"});
        let issued = row(CERTIFICATE_SIGNING_REQUEST, &csr, T0_SECONDS);
        assert_eq!(
            (&issued[4], &issued[5]),
            (&json!("24h"), &json!("Approved,Issued"))
        );
    }
}
