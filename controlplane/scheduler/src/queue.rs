//! The scheduling queue: pods waiting for a node, highest priority first (then
//! oldest); pods that failed wait out a back-off (1 s doubling to 10 s), and
//! pods that fit nowhere wait until the cluster changes in a way that could
//! make them fit (or 5 minutes pass).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The first back-off.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest an unschedulable pod waits for a cluster event.
const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting its turn in the heap.
    Active,
    /// Being scheduled or bound.
    InFlight,
    /// Waiting out its back-off.
    BackingOff(Instant),
    /// Fits nowhere: waiting for a change (but not before its back-off ends).
    Unschedulable { since: Instant, backoff: Instant },
}

impl State {
    /// When a waiting pod is next tried, if it waits.
    fn due(self) -> Option<Instant> {
        match self {
            State::BackingOff(until) => Some(until),
            State::Unschedulable { since, .. } => Some(since + MAX_UNSCHEDULABLE),
            State::Active | State::InFlight => None,
        }
    }
}

#[derive(Debug)]
struct Queued {
    pod: Value,
    priority: i32,
    attempts: u32,
    /// The heap entry that is current for this pod.
    ticket: u64,
    state: State,
}

/// The queue.
#[derive(Debug, Default)]
pub struct Queue {
    heap: BinaryHeap<(i32, Reverse<u64>, String)>,
    pods: HashMap<String, Queued>,
    tickets: u64,
}

fn uid(pod: &Value) -> String {
    pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Whether an update could change where a pod fits (its spec or labels), as
/// opposed to its status.
fn relevant(old: &Value, new: &Value) -> bool {
    old["spec"] != new["spec"] || old["metadata"]["labels"] != new["metadata"]["labels"]
}

impl Queue {
    fn activate(&mut self, uid: &str) {
        self.tickets += 1;
        let ticket = self.tickets;
        if let Some(q) = self.pods.get_mut(uid) {
            q.state = State::Active;
            q.ticket = ticket;
            self.heap
                .push((q.priority, Reverse(ticket), uid.to_owned()));
        }
    }

    /// Adds a pending pod, or takes its update: an unschedulable pod whose spec
    /// or labels changed is tried again.
    pub fn add(&mut self, pod: Value, priority: i32) {
        let uid = uid(&pod);
        match self.pods.get_mut(&uid) {
            Some(q) => {
                let retry = relevant(&q.pod, &pod)
                    && matches!(q.state, State::Unschedulable { .. } | State::BackingOff(_));
                q.pod = pod;
                q.priority = priority;
                if retry {
                    self.activate(&uid);
                }
            }
            None => {
                self.pods.insert(
                    uid.clone(),
                    Queued {
                        pod,
                        priority,
                        attempts: 0,
                        ticket: 0,
                        state: State::Active,
                    },
                );
                self.activate(&uid);
            }
        }
    }

    /// Forgets a pod (bound, deleted, or no longer this scheduler's).
    pub fn remove(&mut self, uid: &str) {
        self.pods.remove(uid);
    }

    /// Moves pods whose back-off is over (and unschedulable pods that waited
    /// too long) to the active queue.
    fn promote(&mut self, now: Instant) {
        let due: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, q)| q.state.due().is_some_and(|due| due <= now))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in due {
            self.activate(&uid);
        }
    }

    /// The next pod to schedule, now in flight.
    pub fn pop(&mut self, now: Instant) -> Option<Value> {
        self.promote(now);
        while let Some((_, Reverse(ticket), uid)) = self.heap.pop() {
            match self.pods.get_mut(&uid) {
                Some(q) if q.ticket == ticket && q.state == State::Active => {
                    q.state = State::InFlight;
                    return Some(q.pod.clone());
                }
                _ => continue,
            }
        }
        None
    }

    /// The pod in flight failed: it waits out its back-off, and, when it fit
    /// nowhere, for a cluster change too.
    pub fn failed(&mut self, uid: &str, unschedulable: bool, now: Instant) {
        let Some(q) = self.pods.get_mut(uid) else {
            return;
        };
        q.attempts += 1;
        let doubling = INITIAL_BACKOFF.saturating_mul(1 << q.attempts.min(8).saturating_sub(1));
        let backoff = now + doubling.min(MAX_BACKOFF);
        q.state = if unschedulable {
            State::Unschedulable {
                since: now,
                backoff,
            }
        } else {
            State::BackingOff(backoff)
        };
    }

    /// The cluster changed (a node came or changed, a pod left): pods that fit
    /// nowhere are tried again once their back-off is over.
    pub fn cluster_changed(&mut self) {
        for q in self.pods.values_mut() {
            if let State::Unschedulable { backoff, .. } = q.state {
                q.state = State::BackingOff(backoff);
            }
        }
    }

    /// When the next pod that waits becomes due, if any does.
    pub fn next_due(&self) -> Option<Instant> {
        self.pods.values().filter_map(|q| q.state.due()).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str) -> Value {
        json!({"metadata": {"uid": uid}, "spec": {"containers": []}})
    }

    fn popped(queue: &mut Queue, now: Instant) -> Option<String> {
        queue.pop(now).map(|p| uid(&p))
    }

    #[test]
    fn priority_then_age() {
        let mut queue = Queue::default();
        let now = Instant::now();
        queue.add(pod("low"), 0);
        queue.add(pod("high"), 1000);
        queue.add(pod("low-2"), 0);
        assert_eq!(popped(&mut queue, now).as_deref(), Some("high"));
        assert_eq!(popped(&mut queue, now).as_deref(), Some("low"));
        assert_eq!(popped(&mut queue, now).as_deref(), Some("low-2"));
        assert_eq!(popped(&mut queue, now), None);
    }

    #[test]
    fn failures_back_off_and_unschedulable_pods_wait_for_the_cluster() {
        let mut queue = Queue::default();
        let now = Instant::now();
        queue.add(pod("a"), 0);
        queue.add(pod("b"), 0);
        queue.pop(now).unwrap();
        queue.pop(now).unwrap();
        queue.failed("a", false, now);
        queue.failed("b", true, now);
        assert_eq!(queue.next_due(), Some(now + INITIAL_BACKOFF));
        assert_eq!(popped(&mut queue, now), None);
        // After its back-off, a is due; b waits for a cluster change.
        let later = now + INITIAL_BACKOFF;
        assert_eq!(popped(&mut queue, later).as_deref(), Some("a"));
        assert_eq!(popped(&mut queue, later), None);
        queue.cluster_changed();
        assert_eq!(popped(&mut queue, later).as_deref(), Some("b"));
        // Back-off doubles, up to its cap.
        for _ in 0..10 {
            queue.failed("b", false, later);
        }
        assert_eq!(queue.next_due(), Some(later + MAX_BACKOFF));
        // A status-only update does not retry it early; a new spec does.
        let mut status = pod("b");
        status["status"] = json!({"phase": "Pending"});
        queue.add(status, 0);
        assert_eq!(popped(&mut queue, later), None);
        let mut changed = pod("b");
        changed["spec"]["nodeSelector"] = json!({"a": "b"});
        queue.add(changed, 0);
        assert_eq!(popped(&mut queue, later).as_deref(), Some("b"));
        queue.remove("b");
        assert!(!queue.pods.contains_key("b"));
    }
}
