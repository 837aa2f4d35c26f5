//! The Ingress controller of the IngressClass `wasmkube`: HTTP at the
//! agent's ingress address is routed by the rules of every Ingress of that
//! class (or of no class: the class is the cluster's default) to a ready
//! endpoint of the backend Service, as the Service proxy picks them.
//!
//! Rules follow the Ingress API: a host matches exactly or by a wildcard of
//! one label (`*.example.com`); a rule without host matches any; `Exact`
//! paths match the whole path, `Prefix` (and `ImplementationSpecific`) paths
//! match whole `/`-separated elements. The most specific host wins, then
//! the longest path, then `Exact` over `Prefix`; with no match the
//! `defaultBackend` serves, else 404. A backend with no ready endpoint is
//! 503. Requests keep their Host header and gain `X-Forwarded-For`,
//! `X-Forwarded-Host` and `X-Forwarded-Proto`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::net::TcpListener;

use crate::proxy::{Route, Table, connect};

/// The class this controller serves.
pub(crate) const CLASS: &str = "wasmkube";
/// The controller named in the class.
const CONTROLLER: &str = "wasmkube.io/ingress";

type Body = BoxBody<Bytes, hyper::Error>;

/// How well a rule matched: host (2 exact, 1 wildcard, 0 any), path
/// length, and whether the path is `Exact`.
type Rank = (u8, usize, bool);

/// Whether `ingress` is of this controller's class.
fn served(ingress: &Ingress) -> bool {
    let class = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref());
    class.is_none_or(|c| c == CLASS)
}

/// How `rule` (a host, or none for any) matches `host`, if it does.
fn host_rank(rule: Option<&str>, host: &str) -> Option<u8> {
    let Some(rule) = rule.filter(|r| !r.is_empty()) else {
        return Some(0);
    };
    if rule.eq_ignore_ascii_case(host) {
        return Some(2);
    }
    let suffix = rule.strip_prefix("*.")?;
    let (label, rest) = host.split_once('.')?;
    (!label.is_empty() && rest.eq_ignore_ascii_case(suffix)).then_some(1)
}

/// Whether a path rule of `kind` for `rule` matches `path`.
fn path_matches(kind: &str, rule: &str, path: &str) -> bool {
    if kind == "Exact" {
        return rule == path;
    }
    let elements = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (rule, path) = (elements(rule), elements(path));
    path.len() >= rule.len() && path[..rule.len()] == rule[..]
}

/// The backend for a request to `host` and `path`, with its Ingress's
/// namespace.
fn route(ingresses: &[Arc<Ingress>], host: &str, path: &str) -> Option<(String, IngressBackend)> {
    let mut best: Option<(Rank, String, IngressBackend)> = None;
    let mut fallback = None;
    for ingress in ingresses.iter().filter(|i| served(i)) {
        let namespace = ingress.namespace().unwrap_or_default();
        let Some(spec) = &ingress.spec else { continue };
        if fallback.is_none()
            && let Some(backend) = &spec.default_backend
        {
            fallback = Some((namespace.clone(), backend.clone()));
        }
        for rule in spec.rules.iter().flatten() {
            let Some(host_rank) = host_rank(rule.host.as_deref(), host) else {
                continue;
            };
            for candidate in rule.http.iter().flat_map(|h| &h.paths) {
                let rule_path = candidate.path.as_deref().unwrap_or("/");
                if !path_matches(&candidate.path_type, rule_path, path) {
                    continue;
                }
                let rank = (host_rank, rule_path.len(), candidate.path_type == "Exact");
                if best.as_ref().is_none_or(|(b, _, _)| rank > *b) {
                    best = Some((rank, namespace.clone(), candidate.backend.clone()));
                }
            }
        }
    }
    best.map(|(_, namespace, backend)| (namespace, backend))
        .or(fallback)
}

/// The Service port `backend` names, as the proxy keys it.
fn service_port(
    services: &Store<Service>,
    namespace: &str,
    backend: &IngressBackend,
) -> Option<Route> {
    let wanted = backend.service.as_ref()?;
    let service = services.get(&ObjectRef::new(&wanted.name).within(namespace))?;
    let ports = service.spec.as_ref()?.ports.as_ref()?;
    let by = wanted.port.as_ref();
    let port = ports.iter().find(|p| match by {
        Some(by) if by.name.is_some() => p.name == by.name,
        Some(by) => Some(p.port) == by.number,
        None => ports.len() == 1,
    })?;
    Some(Route {
        port: (
            namespace.to_owned(),
            wanted.name.clone(),
            port.name.clone().unwrap_or_default(),
        ),
        affinity: None,
    })
}

fn answer(status: StatusCode, text: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(format!("{text}\n")))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// What a request is routed with.
#[derive(Clone)]
struct Routing {
    ingresses: Store<Ingress>,
    services: Store<Service>,
    table: Arc<Mutex<Table>>,
}

async fn forward(routing: Routing, peer: IpAddr, mut request: Request<Incoming>) -> Response<Body> {
    let host = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or_default()
        .to_owned();
    let bare = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    let path = request.uri().path().to_owned();
    let Some((namespace, backend)) = route(&routing.ingresses.state(), bare, &path) else {
        return answer(StatusCode::NOT_FOUND, "no Ingress rule matches");
    };
    let Some(port) = service_port(&routing.services, &namespace, &backend) else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "the backend Service has no such port",
        );
    };
    // The node's Ingress proxy is the node's own: no NetworkPolicy stops it.
    let Some(upstream) = connect(&routing.table, &port, peer, |_| true).await else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "the backend Service has no ready endpoint",
        );
    };
    let headers = request.headers_mut();
    for (name, value) in [
        ("x-forwarded-for", peer.to_string()),
        ("x-forwarded-host", host.clone()),
        ("x-forwarded-proto", "http".to_owned()),
    ] {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    }
    let sent = async {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await?;
        tokio::spawn(connection);
        sender.send_request(request).await
    };
    match sent.await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(e) => answer(StatusCode::BAD_GATEWAY, &format!("the backend failed: {e}")),
    }
}

/// Makes the IngressClass `wasmkube`, the cluster's default, if it is
/// missing.
async fn declare_class(client: &Client) {
    let classes: Api<IngressClass> = Api::all(client.clone());
    let class: IngressClass = serde_json::from_value(json!({
        "metadata": {"name": CLASS, "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": CONTROLLER},
    }))
    .expect("an IngressClass");
    match classes.create(&PostParams::default(), &class).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => tracing::warn!(error = %e, "declaring the IngressClass {CLASS}"),
    }
}

/// Serves the Ingresses of the class `wasmkube` at `listener`.
pub(crate) async fn serve(
    client: Client,
    listener: TcpListener,
    ingresses: Store<Ingress>,
    services: Store<Service>,
    table: Arc<Mutex<Table>>,
) {
    declare_class(&client).await;
    let routing = Routing {
        ingresses,
        services,
        table,
    };
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let routing = routing.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let routing = routing.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(forward(routing, peer.ip(), request).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hosts_and_paths_match_as_the_ingress_api_says() {
        assert_eq!(host_rank(Some("foo.bar.com"), "foo.bar.com"), Some(2));
        assert_eq!(host_rank(Some("*.bar.com"), "foo.bar.com"), Some(1));
        assert_eq!(host_rank(Some("*.bar.com"), "baz.foo.bar.com"), None);
        assert_eq!(host_rank(Some("*.bar.com"), "bar.com"), None);
        assert_eq!(host_rank(None, "anything"), Some(0));
        assert!(path_matches("Prefix", "/foo", "/foo/bar"));
        assert!(path_matches("Prefix", "/foo/", "/foo"));
        assert!(!path_matches("Prefix", "/foo", "/foobar"));
        assert!(path_matches("Prefix", "/", "/anything"));
        assert!(path_matches("Exact", "/foo", "/foo"));
        assert!(!path_matches("Exact", "/foo", "/foo/"));
    }

    #[test]
    fn the_most_specific_rule_wins_then_the_default_backend() {
        let backend = |name: &str| json!({"service": {"name": name, "port": {"number": 80}}});
        let ingress: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "defaultBackend": backend("fallback"),
                "rules": [
                    {"host": "*.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": backend("wild")}]}},
                    {"host": "api.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": backend("api")},
                        {"path": "/v2", "pathType": "Prefix", "backend": backend("api-v2")},
                        {"path": "/v2", "pathType": "Exact", "backend": backend("api-v2-root")}]}}]}
        }))
        .unwrap();
        let other: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "other", "namespace": "shop"},
            "spec": {"ingressClassName": "nginx", "rules": [{"http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": backend("not-ours")}]}}]}
        }))
        .unwrap();
        let all = [Arc::new(ingress), Arc::new(other)];
        let to = |host: &str, path: &str| {
            route(&all, host, path).map(|(ns, b)| format!("{ns}/{}", b.service.unwrap().name))
        };
        assert_eq!(to("api.example.com", "/orders").unwrap(), "shop/api");
        assert_eq!(to("api.example.com", "/v2/orders").unwrap(), "shop/api-v2");
        assert_eq!(to("api.example.com", "/v2").unwrap(), "shop/api-v2-root");
        assert_eq!(to("www.example.com", "/v2").unwrap(), "shop/wild");
        assert_eq!(to("example.org", "/").unwrap(), "shop/fallback");
    }
}
