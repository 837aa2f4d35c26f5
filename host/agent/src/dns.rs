//! Cluster DNS, kube-dns's answers for `cluster.local`, over UDP:
//! - `<service>.<namespace>.svc.cluster.local`: A, the cluster IP; for a
//!   headless Service, the addresses of its ready endpoints; for an
//!   ExternalName Service, a CNAME to its external name;
//! - `<pod>.<service>.<namespace>.svc.cluster.local`: A, that endpoint of the
//!   Service (a StatefulSet pod under its governing Service);
//! - `_<port>._<protocol>.<service>.<namespace>.svc.cluster.local`: SRV, the
//!   named port of the Service.
//!
//! A name under `cluster.local` that names nothing is NXDOMAIN; other names
//! are REFUSED (there is no forwarding to an upstream resolver yet).

use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use tokio::net::UdpSocket;

/// The cluster's domain.
const DOMAIN: &str = "svc.cluster.local";
/// How long answers may be cached, in seconds.
const TTL: u32 = 5;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_SRV: u16 = 33;
const TYPE_ANY: u16 = 255;
const NXDOMAIN: u8 = 3;
const REFUSED: u8 = 5;
const FORMERR: u8 = 1;

/// One answer.
#[derive(Debug, PartialEq)]
enum Record {
    A(Ipv4Addr),
    Cname(String),
    Srv { port: u16, target: String },
}

impl Record {
    fn kind(&self) -> u16 {
        match self {
            Record::A(_) => TYPE_A,
            Record::Cname(_) => TYPE_CNAME,
            Record::Srv { .. } => TYPE_SRV,
        }
    }
}

/// The ready endpoints of `service` in `namespace`: (pod name, address).
fn ready_endpoints(
    slices: &[Arc<EndpointSlice>],
    namespace: &str,
    service: &str,
) -> Vec<(String, Ipv4Addr)> {
    let mut all = Vec::new();
    for slice in slices {
        let mine = slice.namespace().as_deref() == Some(namespace)
            && slice
                .labels()
                .get("kubernetes.io/service-name")
                .map(String::as_str)
                == Some(service);
        if !mine {
            continue;
        }
        for endpoint in &slice.endpoints {
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            let pod = endpoint
                .target_ref
                .as_ref()
                .and_then(|r| r.name.clone())
                .unwrap_or_default();
            for address in endpoint.addresses.iter().filter_map(|a| a.parse().ok()) {
                all.push((pod.clone(), address));
            }
        }
    }
    all.sort();
    all.dedup();
    all
}

/// The records of `name` (lowercase, no final dot); `None` when it names
/// nothing.
fn lookup(
    name: &str,
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
) -> Option<Vec<Record>> {
    let rest = name.strip_suffix(DOMAIN)?.strip_suffix('.')?;
    let parts: Vec<&str> = rest.split('.').collect();
    let (prefix, service_name, namespace) = match parts.as_slice() {
        [service, namespace] => (Vec::new(), *service, *namespace),
        [prefix @ .., service, namespace] => (prefix.to_vec(), *service, *namespace),
        _ => return None,
    };
    let service = services
        .iter()
        .find(|s| s.name_any() == service_name && s.namespace().as_deref() == Some(namespace))?;
    let spec = service.spec.as_ref()?;
    let endpoints = || ready_endpoints(slices, namespace, service_name);
    let headless = spec
        .cluster_ip
        .as_deref()
        .is_none_or(|ip| ip == "None" || ip.is_empty());
    match prefix.as_slice() {
        [] if spec.type_.as_deref() == Some("ExternalName") => Some(vec![Record::Cname(
            spec.external_name.clone().unwrap_or_default(),
        )]),
        [] if headless => Some(
            endpoints()
                .into_iter()
                .map(|(_, ip)| Record::A(ip))
                .collect(),
        ),
        [] => Some(
            spec.cluster_ip
                .as_deref()?
                .parse()
                .ok()
                .map(Record::A)
                .into_iter()
                .collect(),
        ),
        [pod] => {
            let found: Vec<Record> = endpoints()
                .into_iter()
                .filter(|(name, _)| name == pod)
                .map(|(_, ip)| Record::A(ip))
                .collect();
            (!found.is_empty()).then_some(found)
        }
        [port, protocol] => {
            let (port, protocol) = (port.strip_prefix('_')?, protocol.strip_prefix('_')?);
            let found = spec.ports.iter().flatten().find(|p| {
                p.name.as_deref() == Some(port)
                    && p.protocol
                        .as_deref()
                        .unwrap_or("TCP")
                        .eq_ignore_ascii_case(protocol)
            })?;
            let target = format!("{service_name}.{namespace}.{DOMAIN}");
            Some(vec![Record::Srv {
                port: found.port as u16,
                target,
            }])
        }
        _ => None,
    }
}

/// The caches names are answered from.
#[derive(Clone)]
pub(crate) struct Names {
    pub(crate) services: Store<Service>,
    pub(crate) slices: Store<EndpointSlice>,
}

impl Names {
    /// The address a pod of `namespace` finds `host` at, as with the search
    /// path `<namespace>.svc.cluster.local svc.cluster.local`: the cluster
    /// IP, or for a headless Service its first ready endpoint.
    pub(crate) fn resolve(&self, host: &str, namespace: &str) -> Option<std::net::IpAddr> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let candidates = if host.ends_with(DOMAIN) {
            vec![host]
        } else {
            vec![
                format!("{host}.{namespace}.{DOMAIN}"),
                format!("{host}.{DOMAIN}"),
            ]
        };
        let (services, slices) = (self.services.state(), self.slices.state());
        candidates.iter().find_map(|name| {
            lookup(name, &services, &slices)?
                .into_iter()
                .find_map(|record| match record {
                    Record::A(ip) => Some(std::net::IpAddr::V4(ip)),
                    _ => None,
                })
        })
    }
}

/// A name in DNS's wire form.
fn encode_name(name: &str, out: &mut Vec<u8>) {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
}

/// The question of a query: its name (lowercase) and type, and where it ends.
fn question(query: &[u8]) -> Option<(String, u16, usize)> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let length = usize::from(*query.get(at)?);
        at += 1;
        if length == 0 {
            break;
        }
        // Queries do not compress their one name.
        if length > 63 {
            return None;
        }
        labels.push(
            std::str::from_utf8(query.get(at..at + length)?)
                .ok()?
                .to_ascii_lowercase(),
        );
        at += length;
    }
    let kind = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    Some((labels.join("."), kind, at + 4))
}

/// The response to `query`, if it can be answered at all.
fn respond(
    query: &[u8],
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    let recursion = query.get(2)? & 0x01;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(id);
    let Some((name, kind, end)) = question(query) else {
        out.extend_from_slice(&[0x80 | recursion, FORMERR, 0, 0, 0, 0, 0, 0, 0, 0]);
        return Some(out);
    };
    let (code, records) = if !name.ends_with("cluster.local") {
        (REFUSED, Vec::new())
    } else {
        match lookup(&name, services, slices) {
            None => (NXDOMAIN, Vec::new()),
            Some(records) => {
                // A CNAME answers whatever was asked.
                let wanted = records
                    .into_iter()
                    .filter(|r| kind == TYPE_ANY || r.kind() == kind || r.kind() == TYPE_CNAME)
                    .collect();
                (0, wanted)
            }
        }
    };
    // An authoritative answer with the question echoed.
    out.extend_from_slice(&[0x84 | recursion, code, 0, 1]);
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..end]);
    for record in &records {
        out.extend_from_slice(&[0xC0, 12]);
        out.extend_from_slice(&record.kind().to_be_bytes());
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&TTL.to_be_bytes());
        let mut data = Vec::new();
        match record {
            Record::A(ip) => data.extend_from_slice(&ip.octets()),
            Record::Cname(target) => encode_name(target, &mut data),
            Record::Srv { port, target } => {
                data.extend_from_slice(&[0, 0, 0, 100]);
                data.extend_from_slice(&port.to_be_bytes());
                encode_name(target, &mut data);
            }
        }
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    Some(out)
}

/// Answers queries on `socket` from the caches until dropped.
pub(crate) async fn serve(
    socket: UdpSocket,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
) {
    let mut buffer = [0u8; 512];
    loop {
        let Ok((length, from)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        if let Some(answer) = respond(&buffer[..length], &services.state(), &slices.state()) {
            let _ = socket.send_to(&answer, from).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str, spec: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}),
            )
            .unwrap(),
        )
    }

    fn world() -> (Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>) {
        let services = vec![
            service(
                "web",
                json!({"clusterIP": "127.192.0.10", "ports": [{"name": "http", "port": 80}]}),
            ),
            service(
                "db",
                json!({"clusterIP": "None", "ports": [{"port": 5432}]}),
            ),
            service(
                "mail",
                json!({"type": "ExternalName", "externalName": "smtp.example.org"}),
            ),
        ];
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["127.64.0.3"], "targetRef": {"kind": "Pod", "name": "db-1"}, "conditions": {"ready": true}},
                {"addresses": ["127.64.0.2"], "targetRef": {"kind": "Pod", "name": "db-0"}, "conditions": {"ready": true}},
                {"addresses": ["127.64.0.9"], "targetRef": {"kind": "Pod", "name": "db-2"}, "conditions": {"ready": false}}]}))
        .unwrap();
        (services, vec![Arc::new(slice)])
    }

    #[test]
    fn names_of_services_and_their_pods() {
        let (services, slices) = world();
        let find = |name: &str| lookup(name, &services, &slices);
        let a = |ip: &str| Record::A(ip.parse().unwrap());
        assert_eq!(
            find("web.default.svc.cluster.local"),
            Some(vec![a("127.192.0.10")])
        );
        assert_eq!(
            find("db.default.svc.cluster.local"),
            Some(vec![a("127.64.0.2"), a("127.64.0.3")])
        );
        assert_eq!(
            find("db-1.db.default.svc.cluster.local"),
            Some(vec![a("127.64.0.3")])
        );
        assert_eq!(find("db-2.db.default.svc.cluster.local"), None, "not ready");
        assert_eq!(
            find("_http._tcp.web.default.svc.cluster.local"),
            Some(vec![Record::Srv {
                port: 80,
                target: "web.default.svc.cluster.local".into()
            }])
        );
        assert_eq!(
            find("mail.default.svc.cluster.local"),
            Some(vec![Record::Cname("smtp.example.org".into())])
        );
        assert_eq!(find("web.other.svc.cluster.local"), None);
        assert_eq!(find("cluster.local"), None);
    }

    #[test]
    fn queries_get_wire_answers() {
        let (services, slices) = world();
        let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        encode_name("WEB.default.svc.cluster.local", &mut query);
        query.extend_from_slice(&[0, 1, 0, 1]);
        let answer = respond(&query, &services, &slices).unwrap();
        assert_eq!(&answer[..4], &[0x12, 0x34, 0x85, 0]);
        assert_eq!(u16::from_be_bytes([answer[6], answer[7]]), 1, "one answer");
        assert_eq!(&answer[answer.len() - 4..], &[127, 192, 0, 10]);
        let mut missing = query[..12].to_vec();
        encode_name("nothing.default.svc.cluster.local", &mut missing);
        missing.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(respond(&missing, &services, &slices).unwrap()[3], NXDOMAIN);
        let mut outside = query[..12].to_vec();
        encode_name("example.org", &mut outside);
        outside.extend_from_slice(&[0, 1, 0, 1]);
        assert_eq!(respond(&outside, &services, &slices).unwrap()[3], REFUSED);
        assert_eq!(respond(&[1, 2, 3], &services, &slices).unwrap()[3], FORMERR);
        assert_eq!(respond(&[1], &services, &slices), None);
    }
}
