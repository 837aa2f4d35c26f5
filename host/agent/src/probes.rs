//! Container probes, as the kubelet runs them: startup first (until it
//! succeeds), then liveness and readiness, each every `periodSeconds` after
//! `initialDelaySeconds`, bounded by `timeoutSeconds`, turning after
//! `successThreshold` successes or `failureThreshold` failures in a row.
//! `httpGet` succeeds on a status from 200 to 399, `tcpSocket` when it connects.
//! A failed startup or liveness probe ends the container's run; readiness only
//! says whether it is ready.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container as Spec, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What the probes of a container found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its startup probe succeeded.
    Started,
    /// It became ready, or stopped being ready.
    Ready(bool),
    /// A startup or liveness probe failed: the run must end; why.
    Kill(String),
}

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// One probe and its count of results in a row.
struct Running {
    kind: Kind,
    probe: Probe,
    due: Instant,
    successes: i32,
    failures: i32,
    /// Its last verdict: passing or not.
    passing: bool,
}

impl Running {
    fn new(kind: Kind, probe: &Probe, from: Instant) -> Running {
        let delay = probe.initial_delay_seconds.unwrap_or(0).max(0);
        Running {
            kind,
            probe: probe.clone(),
            due: from + secs(delay),
            successes: 0,
            failures: 0,
            passing: false,
        }
    }

    fn period(&self) -> Duration {
        secs(self.probe.period_seconds.unwrap_or(10).max(1))
    }

    /// Counts one result; whether the probe turned (now passing, or now failing).
    fn count(&mut self, ok: bool) -> Option<bool> {
        let (successes, failures) = if ok {
            (self.successes + 1, 0)
        } else {
            (0, self.failures + 1)
        };
        self.successes = successes;
        self.failures = failures;
        let needed_successes = self.probe.success_threshold.unwrap_or(1).max(1);
        let needed_failures = self.probe.failure_threshold.unwrap_or(3).max(1);
        if ok && !self.passing && successes >= needed_successes {
            self.passing = true;
            return Some(true);
        }
        // A probe that never passed fails once its failures reach the threshold,
        // as one that passed before.
        if !ok && failures >= needed_failures && (self.passing || failures == needed_failures) {
            self.passing = false;
            return Some(false);
        }
        None
    }
}

fn secs(s: i32) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

/// The probes of one run of a container.
pub(crate) struct Prober {
    address: Option<IpAddr>,
    spec: Spec,
    startup: Option<Running>,
    others: Vec<Running>,
}

impl Prober {
    /// The probes of `spec`, for a run starting now, reaching the pod at
    /// `address`.
    pub(crate) fn new(spec: &Spec, address: Option<IpAddr>) -> Prober {
        let now = Instant::now();
        Prober {
            address,
            spec: spec.clone(),
            startup: spec
                .startup_probe
                .as_ref()
                .map(|p| Running::new(Kind::Startup, p, now)),
            others: [
                (Kind::Liveness, &spec.liveness_probe),
                (Kind::Readiness, &spec.readiness_probe),
            ]
            .into_iter()
            .filter_map(|(kind, probe)| probe.as_ref().map(|p| Running::new(kind, p, now)))
            .collect(),
        }
    }

    /// Whether the container has a readiness probe (else it is ready when it
    /// runs).
    pub(crate) fn gates_readiness(spec: &Spec) -> bool {
        spec.readiness_probe.is_some()
    }

    /// Whether the container has a startup probe (else it is started when it
    /// runs).
    pub(crate) fn gates_start(spec: &Spec) -> bool {
        spec.startup_probe.is_some()
    }

    /// Probes as they fall due; returns the next verdict (never, without probes).
    pub(crate) async fn next(&mut self) -> Verdict {
        loop {
            let running = match self.startup.as_mut() {
                Some(startup) => startup,
                None => match self.others.iter_mut().min_by_key(|r| r.due) {
                    Some(next) => next,
                    None => return std::future::pending().await,
                },
            };
            tokio::time::sleep_until(running.due).await;
            let (kind, probe) = (running.kind, running.probe.clone());
            let result = check(&probe, &self.spec, self.address).await;
            let running = match kind {
                Kind::Startup => self.startup.as_mut(),
                _ => self.others.iter_mut().find(|r| r.kind == kind),
            }
            .expect("the probe that ran");
            running.due = Instant::now() + running.period();
            let turned = running.count(result.is_ok());
            let why = || {
                format!(
                    "{} probe failed: {}",
                    kind.name(),
                    result.clone().err().unwrap_or_default()
                )
            };
            match (kind, turned) {
                (Kind::Startup, Some(true)) => {
                    // Liveness and readiness start counting now.
                    let now = Instant::now();
                    for other in &mut self.others {
                        other.due = now + secs(other.probe.initial_delay_seconds.unwrap_or(0));
                    }
                    self.startup = None;
                    return Verdict::Started;
                }
                (Kind::Startup | Kind::Liveness, Some(false)) => return Verdict::Kill(why()),
                (Kind::Readiness, Some(ready)) => return Verdict::Ready(ready),
                _ => {}
            }
        }
    }
}

/// Runs `probe` once: `Err` says why it failed.
async fn check(probe: &Probe, spec: &Spec, address: Option<IpAddr>) -> Result<(), String> {
    let timeout = secs(probe.timeout_seconds.unwrap_or(1).max(1));
    let port = |port: &IntOrString| -> Result<u16, String> {
        match port {
            IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("bad port {n}")),
            IntOrString::String(name) => spec
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("no port named {name:?}")),
        }
    };
    let address = address.ok_or("the pod has no address")?;
    let attempt = async {
        if let Some(get) = &probe.http_get {
            let host = get
                .host
                .as_deref()
                .and_then(|h| h.parse().ok())
                .unwrap_or(address);
            let at = SocketAddr::new(host, port(&get.port)?);
            http_get(at, get.path.as_deref().unwrap_or("/")).await
        } else if let Some(tcp) = &probe.tcp_socket {
            let at = SocketAddr::new(address, port(&tcp.port)?);
            TcpStream::connect(at)
                .await
                .map(drop)
                .map_err(|e| format!("dial tcp {at}: {e}"))
        } else {
            Err("only httpGet and tcpSocket probes are supported".into())
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {}s", timeout.as_secs())))
}

/// `GET path` on `at`: success for a status from 200 to 399.
async fn http_get(at: SocketAddr, path: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(at)
        .await
        .map_err(|e| format!("Get \"http://{at}{path}\": {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {at}\r\nUser-Agent: kube-probe/1.33\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await.map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {line:?}"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: i32, failure: i32) -> Running {
        let probe: Probe = serde_json::from_value(serde_json::json!({
            "successThreshold": success, "failureThreshold": failure,
        }))
        .unwrap();
        Running::new(Kind::Readiness, &probe, Instant::now())
    }

    #[test]
    fn thresholds_turn_probes() {
        let mut p = probe(2, 3);
        assert_eq!(p.count(true), None);
        assert_eq!(p.count(true), Some(true));
        assert_eq!(p.count(true), None);
        assert_eq!(p.count(false), None);
        assert_eq!(p.count(false), None);
        assert_eq!(p.count(false), Some(false));
        assert_eq!(p.count(false), None);
        // One that never passed fails once, at the threshold.
        let mut q = probe(1, 1);
        assert_eq!(q.count(false), Some(false));
        assert_eq!(q.count(false), None);
    }

    #[tokio::test]
    async fn probes_reach_what_listens() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let n = stream.read(&mut buf).await.unwrap();
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status = if request.starts_with("GET /healthz ") {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{"name": "web", "containerPort": port}],
        }))
        .unwrap();
        let http = |path: &str| -> Probe {
            serde_json::from_value(serde_json::json!({"httpGet": {"path": path, "port": "web"}}))
                .unwrap()
        };
        let local = Some("127.0.0.1".parse().unwrap());
        assert_eq!(check(&http("/healthz"), &spec, local).await, Ok(()));
        let failed = check(&http("/other"), &spec, local).await.unwrap_err();
        assert!(failed.contains("503"), "{failed}");
        let tcp: Probe =
            serde_json::from_value(serde_json::json!({"tcpSocket": {"port": port}})).unwrap();
        assert_eq!(check(&tcp, &spec, local).await, Ok(()));
        let closed: Probe =
            serde_json::from_value(serde_json::json!({"tcpSocket": {"port": 1}})).unwrap();
        assert!(check(&closed, &spec, local).await.is_err());
    }
}
