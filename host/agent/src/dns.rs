//! Cluster DNS, kube-dns's answers for `cluster.local`, over UDP and over
//! TCP at the same address (each query and answer framed by its length, as
//! RFC 1035 has it; a bounded number of connections, each closed when idle):
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

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SRV};
use hickory_proto::rr::{Name, RData, Record as DnsRecord, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;

/// The cluster's domain.
const DOMAIN: &str = "svc.cluster.local";
/// How long answers may be cached, in seconds.
const TTL: u32 = 5;
/// TCP connections answered at once; more wait to be accepted.
const TCP_CONNECTIONS: usize = 64;
/// How long a TCP connection may keep the server waiting for a query.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// One answer.
#[derive(Debug, PartialEq)]
enum Record {
    A(Ipv4Addr),
    Cname(String),
    Srv { port: u16, target: String },
}

impl Record {
    fn kind(&self) -> RecordType {
        match self {
            Record::A(_) => RecordType::A,
            Record::Cname(_) => RecordType::CNAME,
            Record::Srv { .. } => RecordType::SRV,
        }
    }

    /// The record's data on the wire (none for a target that is not a
    /// domain name).
    fn data(self) -> Option<RData> {
        Some(match self {
            Record::A(ip) => RData::A(A(ip)),
            Record::Cname(target) => RData::CNAME(CNAME(fqdn(&target)?)),
            Record::Srv { port, target } => RData::SRV(SRV::new(0, 100, port, fqdn(&target)?)),
        })
    }
}

/// `name` as a fully qualified domain name.
fn fqdn(name: &str) -> Option<Name> {
    let mut name = Name::from_ascii(name).ok()?;
    name.set_fqdn(true);
    Some(name)
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

/// The response to `query` (DNS's wire form), if it can be answered at
/// all: FORMERR for what does not parse or asks other than one question.
fn respond(
    query: &[u8],
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
) -> Option<Vec<u8>> {
    let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
    let request = match Message::from_vec(query) {
        Ok(request) if request.queries.len() == 1 => request,
        _ => {
            let malformed = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
            return malformed.to_vec().ok();
        }
    };
    let question = &request.queries[0];
    let asked = question.query_type();
    let name = question.name().to_lowercase().to_ascii();
    let name = name.trim_end_matches('.');
    let (code, records) = if !name.ends_with("cluster.local") {
        (ResponseCode::Refused, Vec::new())
    } else {
        match lookup(name, services, slices) {
            None => (ResponseCode::NXDomain, Vec::new()),
            Some(records) => {
                // A CNAME answers whatever was asked.
                let wanted = records
                    .into_iter()
                    .filter(|r| {
                        asked == RecordType::ANY
                            || r.kind() == asked
                            || r.kind() == RecordType::CNAME
                    })
                    .filter_map(|r| r.data())
                    .collect();
                (ResponseCode::NoError, wanted)
            }
        }
    };
    // An authoritative answer with the question echoed.
    let mut response = Message::response(id, request.metadata.op_code);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.response_code = code;
    response.add_query(question.clone());
    response.add_answers(
        records
            .into_iter()
            .map(|data| DnsRecord::from_rdata(question.name().clone(), TTL, data)),
    );
    response.to_vec().ok()
}

/// The sockets cluster DNS answers on: UDP, and TCP at the same address.
#[derive(Debug)]
pub(crate) struct Sockets {
    udp: UdpSocket,
    tcp: Option<TcpListener>,
}

impl Sockets {
    /// Binds `address` for UDP and, at the port UDP got, for TCP; DNS over
    /// UDP alone (said in the log) when TCP cannot be bound.
    pub(crate) fn bind(address: SocketAddr) -> io::Result<Sockets> {
        let udp = std::net::UdpSocket::bind(address)?;
        udp.set_nonblocking(true)?;
        let udp = UdpSocket::from_std(udp)?;
        let tcp = std::net::TcpListener::bind(udp.local_addr()?).and_then(|listener| {
            listener.set_nonblocking(true)?;
            TcpListener::from_std(listener)
        });
        let tcp = match tcp {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::warn!(%address, error = %e, "cluster DNS over UDP only");
                None
            }
        };
        Ok(Sockets { udp, tcp })
    }
}

/// An answer to a query in wire form, or none.
type Answer = dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync;

/// Answers queries on `sockets` from the caches until dropped.
pub(crate) async fn serve(
    sockets: Sockets,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
) {
    let answer: Arc<Answer> =
        Arc::new(move |query: &[u8]| respond(query, &services.state(), &slices.state()));
    let tcp = async {
        if let Some(listener) = sockets.tcp {
            serve_tcp(listener, answer.clone()).await;
        }
    };
    tokio::join!(serve_udp(sockets.udp, &*answer), tcp);
}

async fn serve_udp(socket: UdpSocket, answer: &Answer) {
    let mut buffer = [0u8; 512];
    loop {
        let Ok((length, from)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        if let Some(reply) = answer(&buffer[..length]) {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, answer: Arc<Answer>) {
    let slots = Arc::new(Semaphore::new(TCP_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = answer_stream(stream, &*answer).await;
        });
    }
}

/// Answers the queries of one TCP connection, each framed by its length (two
/// bytes, big-endian), until the client closes it or keeps it idle for
/// [`TCP_IDLE`].
async fn answer_stream(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    answer: &Answer,
) -> io::Result<()> {
    loop {
        let mut length = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut length)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let mut query = vec![0; usize::from(u16::from_be_bytes(length))];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        let Some(reply) = answer(&query) else {
            return Ok(());
        };
        let length = u16::try_from(reply.len()).map_err(|_| io::ErrorKind::InvalidData)?;
        stream.write_all(&length.to_be_bytes()).await?;
        stream.write_all(&reply).await?;
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

    /// A query for `name` and `kind`, in wire form, with recursion desired.
    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut query = Message::query();
        query.metadata.id = 0x1234;
        query.metadata.recursion_desired = true;
        query.add_query(hickory_proto::op::Query::query(
            Name::from_ascii(name).unwrap(),
            kind,
        ));
        query.to_vec().unwrap()
    }

    #[test]
    fn queries_get_wire_answers() {
        let (services, slices) = world();
        let ask = |name: &str, kind| {
            let answer = respond(&query(name, kind), &services, &slices).unwrap();
            Message::from_vec(&answer).unwrap()
        };
        let answer = respond(
            &query("WEB.default.svc.cluster.local.", RecordType::A),
            &services,
            &slices,
        )
        .unwrap();
        // Response, authoritative, recursion desired as asked; no error.
        assert_eq!(&answer[..4], &[0x12, 0x34, 0x85, 0]);
        let web = Message::from_vec(&answer).unwrap();
        assert_eq!(web.queries.len(), 1, "the question echoed");
        let data: Vec<&RData> = web.answers.iter().map(|r| &r.data).collect();
        assert_eq!(data, [&RData::A(A([127, 192, 0, 10].into()))]);
        let srv = ask("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        let target = Name::from_ascii("web.default.svc.cluster.local.").unwrap();
        assert_eq!(
            &srv.answers[0].data,
            &RData::SRV(SRV::new(0, 100, 80, target))
        );
        // A CNAME answers an A question.
        let mail = ask("mail.default.svc.cluster.local.", RecordType::A);
        assert_eq!(mail.answers[0].record_type(), RecordType::CNAME);
        let code = |name: &str| ask(name, RecordType::A).metadata.response_code;
        assert_eq!(
            code("nothing.default.svc.cluster.local."),
            ResponseCode::NXDomain
        );
        assert_eq!(code("example.org."), ResponseCode::Refused);
        assert_eq!(
            respond(&[1, 2, 3], &services, &slices).unwrap()[3],
            1,
            "FORMERR"
        );
        assert_eq!(respond(&[1], &services, &slices), None);
    }

    #[tokio::test]
    async fn queries_over_tcp_are_framed_by_their_length() {
        let (services, slices) = world();
        let answer = move |query: &[u8]| respond(query, &services, &slices);
        let (mut client, server) = tokio::io::duplex(4096);
        let serving = tokio::spawn(async move { answer_stream(server, &answer).await });
        for name in [
            "web.default.svc.cluster.local.",
            "mail.default.svc.cluster.local.",
        ] {
            let asked = query(name, RecordType::A);
            let length = u16::try_from(asked.len()).unwrap().to_be_bytes();
            client
                .write_all(&[&length[..], &asked].concat())
                .await
                .unwrap();
        }
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let mut length = [0u8; 2];
            client.read_exact(&mut length).await.unwrap();
            let mut reply = vec![0; usize::from(u16::from_be_bytes(length))];
            client.read_exact(&mut reply).await.unwrap();
            let reply = Message::from_vec(&reply).unwrap();
            assert_eq!(reply.metadata.id, 0x1234);
            kinds.push(reply.answers[0].record_type());
        }
        assert_eq!(kinds, [RecordType::A, RecordType::CNAME]);
        drop(client);
        serving.await.unwrap().unwrap();
    }
}
