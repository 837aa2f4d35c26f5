//! Cluster IPs and node ports of Services: handed out when a service is created,
//! kept across its updates, given back when it goes.
//!
//! Each address or port in use is a key of its own in the store, as Kubernetes
//! keeps IPAddress objects (`/registry/ipaddresses/127.192.0.10`): creating the key
//! is the allocation, so two API servers on one etcd can never hand out the same
//! one, and the key names the service that holds it. Keys are given back when the
//! service is deleted (a task follows deletions through the watch cache) and, at
//! start, when their service is gone (a crash between the two writes).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use rand::Rng;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wasmkube_store::{Bytes, Error as StoreError, EventType, ListOptions, Store};
use wasmkube_types::ResourceType;

use crate::cache::WatchCache;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::objects::meta_str;

/// The range cluster IPs come from: a /12 like kubeadm's 10.96.0.0/12, but
/// inside 127.0.0.0/8, where every node's Service proxy can listen on them
/// with no configuration (pods' addresses are in 127.64.0.0/10).
pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 192, 0, 0), 12);
/// The range node ports come from.
pub const NODE_PORTS: (u32, u32) = (30000, 32767);

/// One kind of thing handed out: its values and where each is kept.
struct Pool {
    /// The first value of the range and how many there are.
    first: u32,
    size: u32,
    /// Where a value is kept in the store.
    root: &'static str,
    /// How a value reads.
    show: fn(u32) -> String,
    /// What the range is, for messages.
    range: fn() -> String,
}

const ADDRESSES: Pool = Pool {
    // Neither the network address nor the broadcast address is handed out.
    // The first one is the `kubernetes` Service's, claimed by each server as
    // it starts.
    first: SERVICE_CIDR.0.to_bits() + 1,
    size: (1 << (32 - SERVICE_CIDR.1)) - 2,
    root: "/registry/ipaddresses/",
    show: |ip| Ipv4Addr::from_bits(ip).to_string(),
    range: || format!("{}/{}", SERVICE_CIDR.0, SERVICE_CIDR.1),
};

const PORTS: Pool = Pool {
    first: NODE_PORTS.0,
    size: NODE_PORTS.1 - NODE_PORTS.0 + 1,
    root: "/registry/services/nodeports/",
    show: |port| port.to_string(),
    range: || format!("{}-{}", NODE_PORTS.0, NODE_PORTS.1),
};

fn is_service(resource: &ResourceType) -> bool {
    resource.group.is_empty() && resource.kind == "Service"
}

fn service_type(service: &Value) -> &str {
    service["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

/// The store keys of what `service` holds.
pub fn held(service: &Value) -> BTreeSet<String> {
    let spec = &service["spec"];
    let ips = spec["clusterIPs"].as_array().into_iter().flatten();
    let ips = ips
        .chain(std::iter::once(&spec["clusterIP"]))
        .filter_map(Value::as_str)
        .filter(|ip| ip.parse::<Ipv4Addr>().is_ok())
        .map(|ip| format!("{}{ip}", ADDRESSES.root));
    let ports = spec["ports"].as_array().into_iter().flatten();
    let ports = ports
        .filter_map(|p| p["nodePort"].as_u64())
        .filter(|port| *port != 0)
        .map(|port| format!("{}{port}", PORTS.root));
    ips.chain(ports).collect()
}

/// The allocations of one request: claimed before the service is written, given
/// back if the write does not happen.
pub struct Claims {
    store: Arc<dyn Store>,
    keys: Vec<String>,
    /// The service, for errors.
    services: &'static ResourceType,
    name: String,
}

impl Claims {
    /// Gives everything claimed back.
    pub async fn release(self) {
        release(&*self.store, self.keys).await;
    }
}

/// Gives back what `old` held that `new` does not.
pub async fn release_dropped(store: &dyn Store, old: &Value, new: &Value) {
    let kept = held(new);
    release(store, held(old).into_iter().filter(|k| !kept.contains(k))).await;
}

async fn release(store: &dyn Store, keys: impl IntoIterator<Item = String>) {
    for key in keys {
        match store.delete(&key, None).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => tracing::warn!(key, error = %e, "giving back an allocation"),
        }
    }
}

/// Claims what `service` needs and does not hold yet, filling in the fields:
/// `spec.clusterIP(s)` (unless headless or ExternalName) and the node ports of
/// NodePort and LoadBalancer services. `holds` is what the service held before.
pub async fn claim(
    store: &Arc<dyn Store>,
    resource: &'static ResourceType,
    service: &mut Value,
    holds: &BTreeSet<String>,
) -> ApiResult<Claims> {
    let mut claims = Claims {
        store: store.clone(),
        keys: Vec::new(),
        services: resource,
        name: meta_str(service, "name").unwrap_or("").to_owned(),
    };
    if !is_service(resource) {
        return Ok(claims);
    }
    match claim_all(&mut claims, service, holds).await {
        Ok(()) => Ok(claims),
        Err(e) => {
            claims.release().await;
            Err(e)
        }
    }
}

async fn claim_all(
    claims: &mut Claims,
    service: &mut Value,
    holds: &BTreeSet<String>,
) -> ApiResult<()> {
    let parent = json!({
        "group": "", "resource": "services",
        "namespace": meta_str(service, "namespace"), "name": meta_str(service, "name"),
    });
    let kind = service_type(service).to_owned();
    let spec = &mut service["spec"];
    let ip = spec["clusterIP"].as_str().unwrap_or("").to_owned();
    if kind != "ExternalName" && ip != "None" {
        let wanted = match ip.as_str() {
            "" => None,
            ip => Some(claims.parse_ip(ip)?),
        };
        let ip = claims
            .take(&ADDRESSES, wanted, holds, &parent, "spec.clusterIPs[0]")
            .await?;
        let ip = (ADDRESSES.show)(ip);
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        let ports = spec["ports"].as_array_mut().into_iter().flatten();
        for (i, port) in ports.enumerate() {
            // 0 is how Go clients write "none yet".
            let wanted = port["nodePort"]
                .as_u64()
                .filter(|p| *p != 0)
                .map(|p| p as u32);
            let field = format!("spec.ports[{i}].nodePort");
            let port_number = claims.take(&PORTS, wanted, holds, &parent, &field).await?;
            port["nodePort"] = json!(port_number);
        }
    }
    Ok(())
}

impl Claims {
    fn refuse(&self, error: FieldError) -> ApiError {
        ApiError::invalid(self.services, &self.name, &[error])
    }

    fn parse_ip(&self, ip: &str) -> ApiResult<u32> {
        ip.parse::<Ipv4Addr>().map(Ipv4Addr::to_bits).map_err(|_| {
            self.refuse(FieldError::invalid(
                "spec.clusterIPs[0]",
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ))
        })
    }

    /// A value of `pool` for `parent`: `wanted` if given (an error names `field` if
    /// it is outside the range or taken), else a free one. A value the object
    /// `holds` already is kept, not claimed again.
    async fn take(
        &mut self,
        pool: &Pool,
        wanted: Option<u32>,
        holds: &BTreeSet<String>,
        parent: &Value,
        field: &str,
    ) -> ApiResult<u32> {
        let record = Bytes::from(json!({"spec": {"parentRef": parent}}).to_string());
        let refuse = |value: u32, why: String| {
            let shown = (pool.show)(value);
            let detail = format!("failed to allocate {shown}: {why}");
            self.refuse(FieldError::invalid(field, shown, detail))
        };
        if let Some(value) = wanted {
            let key = format!("{}{}", pool.root, (pool.show)(value));
            if holds.contains(&key) {
                return Ok(value);
            }
            if !(pool.first..pool.first + pool.size).contains(&value) {
                let why = format!(
                    "the provided value is not in the valid range. The range of valid values is {}",
                    (pool.range)()
                );
                return Err(refuse(value, why));
            }
            return match self.store.create(&key, record, None).await {
                Ok(_) => {
                    self.keys.push(key);
                    Ok(value)
                }
                Err(StoreError::AlreadyExists { .. }) => {
                    Err(refuse(value, "provided value is already allocated".into()))
                }
                Err(e) => Err(e.into()),
            };
        }
        // Probe from a random point, so that concurrent creates rarely collide.
        let start = rand::rng().random_range(0..pool.size);
        for step in 0..pool.size {
            let value = pool.first + (start + step) % pool.size;
            let key = format!("{}{}", pool.root, (pool.show)(value));
            match self.store.create(&key, record.clone(), None).await {
                Ok(_) => {
                    self.keys.push(key);
                    return Ok(value);
                }
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::new(
            500,
            "InternalError",
            format!("range {} is full", (pool.range)()),
        ))
    }
}

/// Gives back what services that are gone still hold, then follows deletions and
/// gives back what each deleted service held, until `closing`.
pub(crate) async fn reclaim(
    store: Arc<dyn Store>,
    cache: Arc<WatchCache>,
    services: &'static ResourceType,
    closing: CancellationToken,
) -> ApiResult<()> {
    let root = services.storage_root().expect("services are stored");
    let releasing = store.clone();
    let current = cache
        .follow(root, closing, move |change| {
            let store = releasing.clone();
            async move {
                if change.kind == EventType::Deleted
                    && let Ok(service) = change.object.object()
                {
                    release(&*store, held(&service)).await;
                }
            }
        })
        .await?;
    let mut in_use = BTreeSet::new();
    for service in &current {
        in_use.extend(held(&service.object()?));
    }
    for pool in [ADDRESSES, PORTS] {
        let list = store.list(pool.root, &ListOptions::default()).await?;
        let orphans = list.items.into_iter().map(|kv| kv.key);
        release(&*store, orphans.filter(|k| !in_use.contains(k))).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestServer;

    const SERVICES: &str = "/api/v1/namespaces/default/services";

    async fn call(server: &TestServer, method: &str, path: &str, body: Value) -> (u16, Value) {
        let (status, _, body) = server.call(method, path, body).await;
        (status, body)
    }

    fn service(name: &str, kind: &str, cluster_ip: Option<&str>) -> Value {
        let mut s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": kind, "selector": {"app": name}, "ports": [{"port": 80}]}});
        if let Some(ip) = cluster_ip {
            s["spec"]["clusterIP"] = json!(ip);
        }
        s
    }

    fn in_cidr(ip: &str) -> bool {
        let bits = ip.parse::<Ipv4Addr>().unwrap().to_bits();
        bits >> (32 - SERVICE_CIDR.1) == SERVICE_CIDR.0.to_bits() >> (32 - SERVICE_CIDR.1)
    }

    #[tokio::test]
    async fn services_get_addresses_and_ports_that_come_back_when_they_go() {
        let server = TestServer::start().await;

        let (code, a) = call(&server, "POST", SERVICES, service("a", "ClusterIP", None)).await;
        assert_eq!(code, 201, "{a}");
        let a_ip = a["spec"]["clusterIP"].as_str().unwrap().to_owned();
        assert!(in_cidr(&a_ip), "{a_ip}");
        assert_eq!(a["spec"]["clusterIPs"], json!([a_ip]));

        let (code, b) = call(&server, "POST", SERVICES, service("b", "NodePort", None)).await;
        assert_eq!(code, 201, "{b}");
        assert_ne!(b["spec"]["clusterIP"], a["spec"]["clusterIP"]);
        let node_port = b["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u32;
        assert!((NODE_PORTS.0..=NODE_PORTS.1).contains(&node_port));

        let (code, status) = call(
            &server,
            "POST",
            SERVICES,
            service("c", "ClusterIP", Some(&a_ip)),
        )
        .await;
        assert_eq!(code, 422, "{status}");
        assert_eq!(
            status["details"]["causes"][0]["field"],
            "spec.clusterIPs[0]"
        );
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains("already allocated")
        );
        let (code, status) = call(
            &server,
            "POST",
            SERVICES,
            service("c", "ClusterIP", Some("192.168.1.1")),
        )
        .await;
        assert_eq!(code, 422, "{status}");
        let headless = service("h", "ClusterIP", Some("None"));
        let (code, h) = call(&server, "POST", SERVICES, headless).await;
        assert_eq!((code, &h["spec"]["clusterIP"]), (201, &json!("None")));

        // A replace that leaves the allocated fields out keeps them.
        let mut again = service("b", "NodePort", None);
        again["metadata"]["resourceVersion"] = b["metadata"]["resourceVersion"].clone();
        let (code, replaced) = call(&server, "PUT", &format!("{SERVICES}/b"), again).await;
        assert_eq!(code, 200, "{replaced}");
        assert_eq!(replaced["spec"]["clusterIP"], b["spec"]["clusterIP"]);
        assert_eq!(replaced["spec"]["ports"][0]["nodePort"], node_port);

        let (code, _) = call(&server, "DELETE", &format!("{SERVICES}/a"), Value::Null).await;
        assert_eq!(code, 200);
        // The address comes back once the deletion has been followed.
        let mut reused = (0, Value::Null);
        for _ in 0..50 {
            reused = call(
                &server,
                "POST",
                SERVICES,
                service("c", "ClusterIP", Some(&a_ip)),
            )
            .await;
            if reused.0 == 201 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(reused.0, 201, "{}", reused.1);
    }
}
