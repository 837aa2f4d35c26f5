//! A profile's scheduling cycle: the scheduling framework's extension points
//! run over the profile's plugins, with Kubernetes' semantics (filters in
//! order, each seeing only the nodes the previous passed; normalized scores
//! summed by weight; a node picked at random among the best).

use std::collections::BTreeMap;

use rand::Rng;

use crate::config::Plan;
use wasmkube_plugin_host::{Code, NodeChange, PluginError, Rejection, SchedulerPlugin, Status};

/// A scheduler plugin, as a cycle calls it: a Wasm component on the plugin
/// host, or (for measuring) the same code compiled natively.
pub trait Extension: Send {
    /// Its name.
    fn name(&self) -> &str;
    /// Keeps its snapshot of the nodes current.
    fn update_nodes(&mut self, changes: &[NodeChange]) -> Result<(), PluginError>;
    /// Starts a cycle for the pod (JSON).
    fn pre_filter(&mut self, pod: &str) -> Result<Status, PluginError>;
    /// The nodes among `nodes` the pod does not fit.
    fn filter(&mut self, nodes: &[u32]) -> Result<Vec<Rejection>, PluginError>;
    /// Normalized scores of `nodes`; `None` when it does not score.
    fn score(&mut self, nodes: &[u32]) -> Result<Option<Vec<i64>>, PluginError>;
    /// Reserves `node` for the pod.
    fn reserve(&mut self, node: u32) -> Result<Status, PluginError>;
    /// Undoes `reserve`.
    fn unreserve(&mut self, node: u32) -> Result<(), PluginError>;
    /// Whether the pod may be bound to `node`.
    fn permit(&mut self, node: u32) -> Result<Status, PluginError>;
}

impl Extension for SchedulerPlugin {
    fn name(&self) -> &str {
        SchedulerPlugin::name(self)
    }
    fn update_nodes(&mut self, changes: &[NodeChange]) -> Result<(), PluginError> {
        SchedulerPlugin::update_nodes(self, changes)
    }
    fn pre_filter(&mut self, pod: &str) -> Result<Status, PluginError> {
        SchedulerPlugin::pre_filter(self, pod)
    }
    fn filter(&mut self, nodes: &[u32]) -> Result<Vec<Rejection>, PluginError> {
        SchedulerPlugin::filter(self, nodes)
    }
    fn score(&mut self, nodes: &[u32]) -> Result<Option<Vec<i64>>, PluginError> {
        SchedulerPlugin::score(self, nodes)
    }
    fn reserve(&mut self, node: u32) -> Result<Status, PluginError> {
        SchedulerPlugin::reserve(self, node)
    }
    fn unreserve(&mut self, node: u32) -> Result<(), PluginError> {
        SchedulerPlugin::unreserve(self, node)
    }
    fn permit(&mut self, node: u32) -> Result<Status, PluginError> {
        SchedulerPlugin::permit(self, node)
    }
}

/// A declared plugin that could not be loaded: its calls fail saying why, so
/// the pods of its profiles tell it rather than being placed without it.
#[derive(Debug)]
pub struct Unloaded {
    /// The plugin.
    pub plugin: String,
    /// Why it is not loaded.
    pub why: String,
}

impl Unloaded {
    fn fail<T>(&self) -> Result<T, PluginError> {
        Err(PluginError::NotLoaded {
            plugin: self.plugin.clone(),
            message: self.why.clone(),
        })
    }
}

impl Extension for Unloaded {
    fn name(&self) -> &str {
        &self.plugin
    }
    fn update_nodes(&mut self, _: &[NodeChange]) -> Result<(), PluginError> {
        Ok(())
    }
    fn pre_filter(&mut self, _: &str) -> Result<Status, PluginError> {
        self.fail()
    }
    fn filter(&mut self, _: &[u32]) -> Result<Vec<Rejection>, PluginError> {
        self.fail()
    }
    fn score(&mut self, _: &[u32]) -> Result<Option<Vec<i64>>, PluginError> {
        self.fail()
    }
    fn reserve(&mut self, _: u32) -> Result<Status, PluginError> {
        self.fail()
    }
    fn unreserve(&mut self, _: u32) -> Result<(), PluginError> {
        Ok(())
    }
    fn permit(&mut self, _: u32) -> Result<Status, PluginError> {
        self.fail()
    }
}

/// How a cycle ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The pod goes to this node.
    Fits(u32),
    /// It fits nowhere; the message says why, as Kubernetes words it.
    Unschedulable(String),
    /// A plugin failed.
    Error(String),
}

/// A plugin in a profile: where it runs, and how its calls failed.
struct Entry {
    /// What the profile calls it: its name in the plan, or the name of the
    /// Plugin object that declared it.
    key: String,
    plugin: Box<dyn Extension>,
    filter: bool,
    /// Its weight at score; none when it does not score.
    weight: Option<i64>,
    failures: Failures,
}

/// How a plugin's calls failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    /// How many failed.
    pub count: u64,
    /// What the last failure said.
    pub last: Option<String>,
}

/// A profile: its plugins, which filter, which score and by what weight.
pub struct Framework {
    /// In order: filters run in this order.
    entries: Vec<Entry>,
    /// The share of nodes to find feasible (0: by cluster size).
    percentage: u32,
    /// Where the next cycle starts looking, so every node gets its turn.
    next_start: usize,
}

impl std::fmt::Debug for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.entries.iter().map(|e| e.key.as_str()).collect();
        f.debug_struct("Framework")
            .field("plugins", &keys)
            .finish_non_exhaustive()
    }
}

/// How many feasible nodes to find among `all` before scoring, as
/// kube-scheduler decides: all of a small cluster, else a share that falls
/// from 50% as the cluster grows (to no less than 5%, and 100 nodes).
pub fn nodes_to_find(all: usize, percentage: u32) -> usize {
    const MIN: usize = 100;
    if all < MIN {
        return all;
    }
    let share = if percentage == 0 {
        (50 - all as i64 / 125).max(5) as usize
    } else {
        percentage as usize
    };
    (all * share / 100).max(MIN).min(all)
}

/// "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated
/// taint {a: b}.": each reason counted over the nodes, sorted.
pub fn unavailable(all: usize, reasons: &BTreeMap<String, usize>) -> String {
    let mut counted: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    counted.sort();
    format!("0/{all} nodes are available: {}.", counted.join(", "))
}

impl Framework {
    /// A profile running `plan` over `plugins`, given in the order of
    /// [`Plan::plugins`].
    pub fn planned(plan: &Plan, plugins: Vec<Box<dyn Extension>>, percentage: u32) -> Framework {
        let mut framework = Framework {
            entries: Vec::new(),
            percentage,
            next_start: 0,
        };
        for (key, plugin) in plan.plugins().into_iter().zip(plugins) {
            let filter = plan.filters.contains(&key);
            let weight = plan.scores.iter().find(|(n, _)| *n == key).map(|s| s.1);
            framework.insert(&key, plugin, filter, weight);
        }
        framework
    }

    /// Adds `plugin` as `key` (in place of what had that key), filtering
    /// after the others if `filter`, scoring with `weight` if any. It must
    /// know the nodes already.
    pub fn insert(
        &mut self,
        key: &str,
        plugin: Box<dyn Extension>,
        filter: bool,
        weight: Option<i64>,
    ) {
        let entry = Entry {
            key: key.to_owned(),
            plugin,
            filter,
            weight,
            failures: Failures::default(),
        };
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(old) => *old = entry,
            None => self.entries.push(entry),
        }
    }

    /// Takes out the plugin `key`; whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.key != key);
        self.entries.len() != before
    }

    /// How the calls of each plugin failed, by key.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &Failures)> {
        self.entries.iter().map(|e| (e.key.as_str(), &e.failures))
    }

    /// Calls plugin `i`; a failure is counted against it.
    fn call<T>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut dyn Extension) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        let entry = &mut self.entries[i];
        let result = f(entry.plugin.as_mut());
        if let Err(e) = &result {
            entry.failures.count += 1;
            entry.failures.last = Some(e.to_string());
        }
        result
    }

    /// Tells every plugin what changed in the nodes.
    pub fn update_nodes(&mut self, changes: &[NodeChange]) -> Result<(), PluginError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut first = Ok(());
        for i in 0..self.entries.len() {
            let told = self.call(i, |p| p.update_nodes(changes));
            if first.is_ok() {
                first = told;
            }
        }
        first
    }

    /// One cycle: where `pod` (its JSON) goes among `nodes`.
    pub fn schedule(&mut self, pod: &str, nodes: &[u32]) -> Outcome {
        match self.cycle(pod, nodes) {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Error(e.to_string()),
        }
    }

    fn cycle(&mut self, pod: &str, nodes: &[u32]) -> Result<Outcome, PluginError> {
        if nodes.is_empty() {
            return Ok(Outcome::Unschedulable(
                "0/0 nodes are available: no nodes available to schedule pods.".into(),
            ));
        }
        // Pre-filter: every plugin starts its cycle; a skip leaves it out of
        // filtering (scoring it skips by giving no scores).
        let mut filtering = Vec::new();
        for i in 0..self.entries.len() {
            let status = self.call(i, |p| p.pre_filter(pod))?;
            match status.code {
                Code::Success if self.entries[i].filter => filtering.push(i),
                Code::Success | Code::Skip => {}
                Code::Error => return Ok(Outcome::Error(status.reason)),
                Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                    let mut reasons = BTreeMap::new();
                    reasons.insert(status.reason, nodes.len());
                    return Ok(Outcome::Unschedulable(unavailable(nodes.len(), &reasons)));
                }
            }
        }
        // Filter, a batch of nodes at a time, until enough fit.
        let wanted = nodes_to_find(nodes.len(), self.percentage);
        let mut feasible = Vec::new();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let start = self.next_start % nodes.len();
        let order: Vec<u32> = nodes[start..]
            .iter()
            .chain(&nodes[..start])
            .copied()
            .collect();
        let mut seen = 0;
        for batch in order.chunks(wanted.max(1)) {
            let mut passing = batch.to_vec();
            for &f in &filtering {
                if passing.is_empty() {
                    break;
                }
                let rejected = self.call(f, |p| p.filter(&passing))?;
                if let Some(r) = rejected
                    .iter()
                    .find(|r| matches!(r.status.code, Code::Error))
                {
                    return Ok(Outcome::Error(r.status.reason.clone()));
                }
                let out: std::collections::HashSet<u32> = rejected.iter().map(|r| r.node).collect();
                for r in rejected {
                    for reason in r.status.reason.lines() {
                        *reasons.entry(reason.to_owned()).or_default() += 1;
                    }
                }
                passing.retain(|n| !out.contains(n));
            }
            seen += batch.len();
            feasible.extend(passing);
            if feasible.len() >= wanted {
                break;
            }
        }
        self.next_start = start + seen;
        let chosen = match feasible.len() {
            0 => return Ok(Outcome::Unschedulable(unavailable(nodes.len(), &reasons))),
            1 => feasible[0],
            _ => self.best(&feasible)?,
        };
        self.reserve_and_permit(chosen)
    }

    /// The feasible node with the highest weighted score (ties at random).
    fn best(&mut self, feasible: &[u32]) -> Result<u32, PluginError> {
        let mut totals = vec![0i64; feasible.len()];
        for s in 0..self.entries.len() {
            let Some(weight) = self.entries[s].weight else {
                continue;
            };
            if let Some(scores) = self.call(s, |p| p.score(feasible))? {
                for (total, score) in totals.iter_mut().zip(scores) {
                    *total += score * weight;
                }
            }
        }
        let top = totals.iter().copied().max().unwrap_or(0);
        let best: Vec<u32> = feasible
            .iter()
            .zip(&totals)
            .filter(|(_, t)| **t == top)
            .map(|(n, _)| *n)
            .collect();
        Ok(best[rand::rng().random_range(0..best.len())])
    }

    /// Reserve, then permit, on every plugin; a refusal undoes the reserves.
    fn reserve_and_permit(&mut self, node: u32) -> Result<Outcome, PluginError> {
        let mut refused = None;
        let mut reserved = 0;
        for i in 0..self.entries.len() {
            let status = self.call(i, |p| p.reserve(node))?;
            if !matches!(status.code, Code::Success | Code::Skip) {
                refused = Some(status.reason);
                break;
            }
            reserved += 1;
        }
        if refused.is_none() {
            for i in 0..self.entries.len() {
                let status = self.call(i, |p| p.permit(node))?;
                if !matches!(status.code, Code::Success | Code::Skip) {
                    refused = Some(status.reason);
                    break;
                }
            }
        }
        let Some(reason) = refused else {
            return Ok(Outcome::Fits(node));
        };
        for i in (0..reserved).rev() {
            self.call(i, |p| p.unreserve(node))?;
        }
        Ok(Outcome::Unschedulable(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plugin that rejects the nodes in `rejects` and scores node `n` as
    /// `scores[n]` (no scores when empty); it skips pre-filter like the SDK's
    /// default.
    struct Fake {
        rejects: Vec<u32>,
        scores: Vec<i64>,
    }

    fn ok() -> Status {
        Status {
            code: Code::Success,
            reason: String::new(),
        }
    }

    impl Extension for Fake {
        fn name(&self) -> &str {
            "Fake"
        }
        fn update_nodes(&mut self, _: &[NodeChange]) -> Result<(), PluginError> {
            Ok(())
        }
        fn pre_filter(&mut self, _: &str) -> Result<Status, PluginError> {
            Ok(Status {
                code: if self.rejects.is_empty() {
                    Code::Skip
                } else {
                    Code::Success
                },
                reason: String::new(),
            })
        }
        fn filter(&mut self, nodes: &[u32]) -> Result<Vec<Rejection>, PluginError> {
            let rejected = nodes.iter().filter(|n| self.rejects.contains(n));
            Ok(rejected
                .map(|n| Rejection {
                    node: *n,
                    status: Status {
                        code: Code::Unschedulable,
                        reason: format!("reason {}\nshared", n % 2),
                    },
                })
                .collect())
        }
        fn score(&mut self, nodes: &[u32]) -> Result<Option<Vec<i64>>, PluginError> {
            if self.scores.is_empty() {
                return Ok(None);
            }
            Ok(Some(
                nodes.iter().map(|n| self.scores[*n as usize]).collect(),
            ))
        }
        fn reserve(&mut self, _: u32) -> Result<Status, PluginError> {
            Ok(ok())
        }
        fn unreserve(&mut self, _: u32) -> Result<(), PluginError> {
            Ok(())
        }
        fn permit(&mut self, _: u32) -> Result<Status, PluginError> {
            Ok(ok())
        }
    }

    #[test]
    fn filters_narrow_and_weighted_scores_pick() {
        let filter = Fake {
            rejects: vec![0, 3],
            scores: vec![],
        };
        // A score-only plugin that skipped pre-filter still scores.
        let prefer = Fake {
            rejects: vec![],
            scores: vec![100, 0, 10, 100],
        };
        let against = Fake {
            rejects: vec![],
            scores: vec![0, 100, 0, 0],
        };
        let mut framework = Framework::planned(&Plan::default(), Vec::new(), 100);
        framework.insert("Filter", Box::new(filter), true, None);
        framework.insert("Prefer", Box::new(prefer), false, Some(1));
        framework.insert("Against", Box::new(against), false, Some(2));
        // Nodes 0 and 3 are out; node 1 scores 200 against node 2's 10.
        assert_eq!(framework.schedule("{}", &[0, 1, 2, 3]), Outcome::Fits(1));
        assert_eq!(
            framework.schedule("{}", &[0, 3]),
            Outcome::Unschedulable(
                "0/2 nodes are available: 1 reason 0, 1 reason 1, 2 shared.".into()
            )
        );
    }

    #[test]
    fn the_share_of_nodes_to_find_follows_kube_scheduler() {
        assert_eq!(nodes_to_find(50, 0), 50);
        assert_eq!(nodes_to_find(1000, 0), 420);
        assert_eq!(nodes_to_find(5000, 0), 500);
        assert_eq!(nodes_to_find(100_000, 0), 5000);
        assert_eq!(nodes_to_find(5000, 100), 5000);
        assert_eq!(nodes_to_find(150, 10), 100);
    }

    #[test]
    fn reasons_are_counted_and_sorted() {
        let reasons = BTreeMap::from([
            ("node(s) had untolerated taint {gpu: yes}".to_string(), 2),
            ("Insufficient cpu".to_string(), 3),
        ]);
        assert_eq!(
            unavailable(5, &reasons),
            "0/5 nodes are available: 2 node(s) had untolerated taint {gpu: yes}, 3 Insufficient cpu."
        );
    }
}
