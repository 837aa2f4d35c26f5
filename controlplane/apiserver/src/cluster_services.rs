//! The Services every cluster has, as Kubernetes' API server and kubeadm
//! make them:
//! - `default/kubernetes`, at the first address of the Service range, port
//!   443 (`https`) to the API server: its Endpoints and EndpointSlice name
//!   the server that started last, written again at every start (a server
//!   on `127.0.0.1:0` moves);
//! - `kube-system/kube-dns`, at the tenth, port 53 over UDP and TCP (`dns`,
//!   `dns-tcp`), with no selector: every node's agent answers cluster DNS at
//!   that address itself.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde_json::json;
use wasmkube_store::{Error as StoreError, Store};

use crate::Reconciled;
use crate::allocate::SERVICE_CIDR;

/// The address of the `kubernetes` Service: the first of the range.
pub fn kubernetes_service_ip() -> Ipv4Addr {
    Ipv4Addr::from(u32::from(SERVICE_CIDR.0) + 1)
}

/// The address of the `kube-dns` Service: the tenth, as kubeadm has it.
pub fn dns_service_ip() -> Ipv4Addr {
    Ipv4Addr::from(u32::from(SERVICE_CIDR.0) + 10)
}

/// Creates the `kubernetes` and `kube-dns` Services if they are missing,
/// and points `kubernetes` at the API server serving at `api`.
pub async fn create_cluster_services(
    store: &Arc<dyn Store>,
    api: SocketAddr,
) -> Result<(), StoreError> {
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    let services = [
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": kubernetes_service_ip().to_string(),
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api.port()}],
                "sessionAffinity": "None",
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {
                "k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "CoreDNS",
            }},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": dns_service_ip().to_string(),
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
                "sessionAffinity": "None",
            },
        }),
    ];
    crate::create_missing(store, &services).await?;
    let ip = api.ip().to_string();
    let port = json!([{"name": "https", "port": api.port(), "protocol": "TCP"}]);
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
        "subsets": [{"addresses": [{"ip": ip}], "ports": port}],
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {
            "kubernetes.io/service-name": "kubernetes",
            "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io",
        }},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": port,
    });
    // Each start points them at this server: what another server wrote
    // before it is as good while it runs, and replaced when this one starts.
    crate::ensure_defaults(store, &[endpoints, slice], |wanted, stored| {
        let fields: &[&str] = match wanted["kind"].as_str() {
            Some("Endpoints") => &["subsets"],
            _ => &["endpoints", "ports"],
        };
        if fields.iter().all(|f| stored[f] == wanted[f]) {
            return Reconciled::Keep;
        }
        let mut changed = stored.clone();
        for field in fields {
            changed[field] = wanted[field].clone();
        }
        Reconciled::Update(changed)
    })
    .await
}
