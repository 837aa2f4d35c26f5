//! Leader election through a Lease in `kube-system`, as Kubernetes' control
//! plane does it: of the processes that share a cluster, the one holding the
//! lease does the work (schedules, or runs the controllers), renewing it
//! every couple of seconds; the others wait, and take it over once it has
//! not been renewed for its duration. Expiry is measured on each process's
//! own clock from when it saw the lease last change, so clocks need not
//! agree. A leader that cannot renew for the renew deadline stops its work
//! before the lease can pass to another; one that stops gives the lease up.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

/// Kubernetes' defaults: how long a lease holds, how long a leader keeps
/// trying to renew before it stops, how often everyone tries.
const LEASE: Duration = Duration::from_secs(15);
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);

/// One election: the lease and who this process is.
pub struct Election {
    api: Api<Lease>,
    lease: &'static str,
    identity: String,
    /// The lease as last seen (holder and renew time), and when.
    seen: Option<(String, Instant)>,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("lease", &self.lease)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Who this process is in elections: its host, its pid and when it started.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let started = Timestamp::now().as_nanosecond() % 1_000_000_007;
    format!("{}_{}_{started:x}", host.trim(), std::process::id())
}

impl Election {
    /// The election of the lease `kube-system/<lease>` in the cluster of
    /// `client`.
    pub fn new(client: Client, lease: &'static str, identity: String) -> Election {
        Election {
            api: Api::namespaced(client, "kube-system"),
            lease,
            identity,
            seen: None,
        }
    }

    /// Takes or renews the lease; whether this process holds it now.
    async fn claim(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.api.get_opt(self.lease).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(LEASE.as_secs() as i32),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return won(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let state = format!("{holder} {:?}", spec.renew_time.as_ref().map(|t| t.0));
        if self.seen.as_ref().is_none_or(|(seen, _)| *seen != state) {
            self.seen = Some((state, Instant::now()));
        }
        let duration = spec
            .lease_duration_seconds
            .map_or(LEASE, |s| Duration::from_secs(s.max(0) as u64));
        let mine = holder == self.identity;
        let expired = holder.is_empty()
            || self
                .seen
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() > duration);
        if !mine && !expired {
            return Ok(false);
        }
        if !mine {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
            tracing::info!(lease = self.lease, from = %holder, "taking the lease over");
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(LEASE.as_secs() as i32);
        // The resource version makes it ours only if nobody wrote it since.
        won(self
            .api
            .replace(self.lease, &PostParams::default(), &lease)
            .await)
    }

    /// Gives the lease up, if this process holds it, so another takes it
    /// over at once.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(self.lease).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        if let Err(e) = self
            .api
            .replace(&lease.name_any(), &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(lease = self.lease, error = %e, "giving the lease up");
        }
    }

    /// Runs `work` whenever this process holds the lease, until `closed`
    /// is cancelled: `work` is given a token cancelled when it must stop
    /// (the lease is lost or the process closes).
    pub async fn lead<F, W>(mut self, closed: CancellationToken, mut work: W)
    where
        W: FnMut(CancellationToken) -> F,
        F: Future<Output = ()>,
    {
        loop {
            // A candidate, until it holds the lease.
            loop {
                match self.claim().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(lease = self.lease, error = %e, "claiming the lease"),
                }
                tokio::select! {
                    () = closed.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
            tracing::info!(lease = self.lease, identity = %self.identity, "leading");
            let stop = closed.child_token();
            let working = work(stop.clone());
            tokio::pin!(working);
            let mut renewed = Instant::now();
            let closing = loop {
                tokio::select! {
                    () = &mut working => {
                        self.release().await;
                        return;
                    }
                    () = closed.cancelled() => break true,
                    () = tokio::time::sleep(RETRY) => match self.claim().await {
                        Ok(true) => renewed = Instant::now(),
                        Ok(false) => break false,
                        Err(e) if renewed.elapsed() > RENEW_DEADLINE => {
                            tracing::warn!(lease = self.lease, error = %e, "cannot renew the lease");
                            break false;
                        }
                        Err(_) => {}
                    },
                }
            };
            stop.cancel();
            working.await;
            if closing {
                self.release().await;
                return;
            }
            tracing::warn!(
                lease = self.lease,
                "lost the lease: stopped until it is ours again"
            );
        }
    }
}

/// Runs `work` until `closed` is cancelled: with `elect`, while this process holds the
/// Lease `kube-system/<lease>` in the cluster of `client` (see
/// [`Election::lead`]); without, at once and to its end.
pub async fn elected<W, F>(
    client: &Client,
    lease: &'static str,
    elect: bool,
    closed: CancellationToken,
    mut work: W,
) where
    W: FnMut(CancellationToken) -> F,
    F: Future<Output = ()>,
{
    if elect {
        let election = Election::new(client.clone(), lease, identity());
        election.lead(closed, work).await;
    } else {
        work(closed).await;
    }
}

/// Whether a write of the lease made it ours: a conflict means another
/// process wrote it first.
fn won(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
