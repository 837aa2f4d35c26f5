//! The scheduler's view of the nodes: each Node with the pods bound or assumed
//! on it, numbered densely for the plugins, and what changed since the
//! plugins were last told (a Node, or one pod: placing a pod costs the
//! plugins that pod, not its node again).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use wasmkube_plugin_host::NodeChange;

/// A node and its pods.
#[derive(Debug, Default)]
struct Entry {
    name: String,
    /// The Node; none while only pods name it.
    node: Option<Value>,
    /// Its pods by uid, as the plugins see them.
    pods: BTreeMap<String, Value>,
}

/// The nodes and their pods.
#[derive(Debug, Default)]
pub struct Cache {
    ids: HashMap<String, u32>,
    entries: Vec<Option<Entry>>,
    free: Vec<u32>,
    /// Where each pod is (bound, or assumed until its binding is seen): its
    /// node's number.
    pods: HashMap<String, u32>,
    /// What the plugins have yet to be told, in order.
    pending: Vec<Pending>,
}

/// A change the plugins have yet to be told; what it carries is read when
/// they are told, so a change superseded meanwhile is told as it is now.
#[derive(Debug)]
enum Pending {
    Node(u32),
    Removed(u32),
    PodAdded(u32, String),
    PodRemoved(u32, String),
}

/// A pod as the plugins see it: without what no plugin reads (status, managed
/// fields, annotations, resource version), so feeding a node costs less and
/// a running pod's status updates change nothing.
pub(crate) fn trimmed(pod: &Value) -> Value {
    let mut pod = pod.clone();
    if let Some(object) = pod.as_object_mut() {
        object.remove("status");
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
            meta.remove("annotations");
            meta.remove("resourceVersion");
        }
    }
    pod
}

fn uid(object: &Value) -> &str {
    object["metadata"]["uid"].as_str().unwrap_or_default()
}

impl Cache {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.free.pop().unwrap_or(self.entries.len() as u32);
        let slot = id as usize;
        if self.entries.len() <= slot {
            self.entries.resize_with(slot + 1, || None);
        }
        self.entries[slot] = Some(Entry {
            name: name.to_owned(),
            ..Entry::default()
        });
        self.ids.insert(name.to_owned(), id);
        id
    }

    fn entry(&mut self, id: u32) -> &mut Entry {
        self.entries[id as usize]
            .as_mut()
            .expect("numbered nodes have entries")
    }

    /// Forgets the entry of `id` when it has neither a Node nor pods.
    fn collect(&mut self, id: u32) {
        let empty = self.entries[id as usize]
            .as_ref()
            .is_some_and(|e| e.node.is_none() && e.pods.is_empty());
        if empty {
            let entry = self.entries[id as usize].take().expect("checked");
            self.ids.remove(&entry.name);
            self.free.push(id);
        }
    }

    /// Adds or replaces a Node.
    pub fn set_node(&mut self, node: &Value) {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let id = self.id(name);
        let mut node = node.clone();
        if let Some(meta) = node["metadata"].as_object_mut() {
            meta.remove("managedFields");
        }
        let entry = self.entry(id);
        let new = entry.node.replace(node).is_none();
        // Pods that waited for their node come with it.
        let waited: Vec<String> = if new {
            entry.pods.keys().cloned().collect()
        } else {
            Vec::new()
        };
        self.pending.push(Pending::Node(id));
        self.pending
            .extend(waited.into_iter().map(|uid| Pending::PodAdded(id, uid)));
    }

    /// Removes a Node (its pods stay known, for when it comes back).
    pub fn remove_node(&mut self, name: &str) {
        if let Some(id) = self.ids.get(name).copied() {
            self.entry(id).node = None;
            self.pending.push(Pending::Removed(id));
            self.collect(id);
        }
    }

    /// Puts a pod on `node` (bound there, or assumed); a pod elsewhere first
    /// leaves where it was.
    fn place(&mut self, pod: &Value, node: &str) {
        let uid = uid(pod).to_owned();
        let pod = trimmed(pod);
        if let Some(&at) = self.pods.get(&uid)
            && self.ids.get(node) == Some(&at)
            && self.entry(at).pods.get(&uid) == Some(&pod)
        {
            // Nothing a plugin sees has changed.
            return;
        }
        self.remove_pod(&uid);
        let id = self.id(node);
        let entry = self.entry(id);
        entry.pods.insert(uid.clone(), pod);
        if entry.node.is_some() {
            self.pending.push(Pending::PodAdded(id, uid.clone()));
        }
        self.pods.insert(uid, id);
    }

    /// A pod bound to `spec.nodeName` (it replaces the assumed one).
    pub fn bound(&mut self, pod: &Value) {
        let node = pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.place(pod, &node);
    }

    /// Assumes `pod` on `node` until its binding is seen (or fails).
    pub fn assume(&mut self, pod: &Value, node: u32) {
        let mut pod = pod.clone();
        let name = self.entry(node).name.clone();
        pod["spec"]["nodeName"] = json!(name);
        self.place(&pod, &name);
    }

    /// Forgets a pod (deleted, finished, or its binding failed).
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(id) = self.pods.remove(uid) else {
            return false;
        };
        let entry = self.entry(id);
        entry.pods.remove(uid);
        if entry.node.is_some() {
            self.pending.push(Pending::PodRemoved(id, uid.to_owned()));
        }
        self.collect(id);
        true
    }

    /// The numbers of the nodes that exist (have a Node).
    pub fn nodes(&self) -> Vec<u32> {
        let live = self.entries.iter().enumerate();
        live.filter(|(_, e)| e.as_ref().is_some_and(|e| e.node.is_some()))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// The name of node `id`.
    pub fn name(&self, id: u32) -> &str {
        self.entries[id as usize]
            .as_ref()
            .map_or("", |e| e.name.as_str())
    }

    /// Every node with its pods, for a plugin that knows none: what the
    /// others have been told once [`Cache::changes`] is.
    pub fn snapshot(&self) -> Vec<NodeChange> {
        let mut all = Vec::new();
        for (id, entry) in self.entries.iter().enumerate() {
            let Some((entry, node)) = entry.as_ref().and_then(|e| Some((e, e.node.as_ref()?)))
            else {
                continue;
            };
            let id = id as u32;
            all.push(NodeChange::Set((id, node.to_string())));
            for (uid, pod) in &entry.pods {
                all.push(NodeChange::PodAdded((id, uid.clone(), pod.to_string())));
            }
        }
        all
    }

    /// What changed since the last call, for the plugins.
    pub fn changes(&mut self) -> Vec<NodeChange> {
        let pending = std::mem::take(&mut self.pending);
        let entries = &self.entries;
        let known = |id: u32| {
            entries
                .get(id as usize)
                .and_then(Option::as_ref)
                .filter(|e| e.node.is_some())
        };
        pending
            .into_iter()
            .filter_map(|change| match change {
                Pending::Node(id) => {
                    let node = known(id)?.node.as_ref()?;
                    Some(NodeChange::Set((id, node.to_string())))
                }
                Pending::Removed(id) => Some(NodeChange::Removed(id)),
                Pending::PodAdded(id, uid) => {
                    let pod = known(id)?.pods.get(&uid)?.to_string();
                    Some(NodeChange::PodAdded((id, uid, pod)))
                }
                Pending::PodRemoved(id, uid) => Some(NodeChange::PodRemoved((id, uid))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, node: &str) -> Value {
        json!({"metadata": {"name": uid, "uid": uid, "managedFields": [{}]},
               "spec": {"nodeName": node}, "status": {"phase": "Running"}})
    }

    fn node(name: &str) -> Value {
        json!({"metadata": {"name": name}})
    }

    /// The changes, in brief: `set 0`, `removed 1`, `+0 p1`, `-0 p1`.
    fn told(cache: &mut Cache) -> Vec<String> {
        brief(cache.changes())
    }

    fn brief(changes: Vec<NodeChange>) -> Vec<String> {
        changes
            .into_iter()
            .map(|c| match c {
                NodeChange::Set((id, _)) => format!("set {id}"),
                NodeChange::Removed(id) => format!("removed {id}"),
                NodeChange::PodAdded((id, uid, _)) => format!("+{id} {uid}"),
                NodeChange::PodRemoved((id, uid)) => format!("-{id} {uid}"),
            })
            .collect()
    }

    #[test]
    fn nodes_and_pods_are_told_once_as_they_change() {
        let mut cache = Cache::default();
        cache.set_node(&node("a"));
        cache.set_node(&node("b"));
        assert_eq!(cache.nodes(), [0, 1]);
        cache.bound(&pod("p1", "a"));
        let changes = cache.changes();
        assert_eq!(changes.len(), 3);
        let NodeChange::PodAdded((0, uid, json)) = &changes[2] else {
            panic!("{changes:?}")
        };
        assert_eq!(uid, "p1");
        let seen: Value = serde_json::from_str(json).unwrap();
        assert!(seen.get("status").is_none());
        assert!(seen["metadata"].get("managedFields").is_none());
        assert!(told(&mut cache).is_empty());

        // An assumed pod counts on its node; seen bound, it changes nothing.
        let p2 = json!({"metadata": {"name": "p2", "uid": "p2"}, "spec": {}});
        cache.assume(&p2, 1);
        let changes = cache.changes();
        let NodeChange::PodAdded((1, _, json)) = &changes[0] else {
            panic!("{changes:?}")
        };
        assert!(json.contains(r#""nodeName":"b""#), "{json}");
        cache.bound(&pod("p2", "b"));
        assert_eq!(cache.pods["p2"], 1);
        assert!(told(&mut cache).is_empty());
        // Nor does its status changing later.
        let mut running = pod("p2", "b");
        running["status"]["phase"] = json!("Succeeded");
        running["metadata"]["resourceVersion"] = json!("9");
        cache.bound(&running);
        assert!(told(&mut cache).is_empty());

        // A removed node is told as removed, and its number is reused.
        cache.remove_pod("p2");
        cache.remove_node("b");
        assert_eq!(told(&mut cache), ["-1 p2", "removed 1"]);
        cache.set_node(&node("c"));
        assert_eq!(cache.nodes(), [0, 1]);
        assert_eq!(cache.name(1), "c");
        // Pods bound to a node not yet known wait for it, and come with it.
        cache.bound(&pod("p3", "d"));
        assert_eq!(cache.nodes(), [0, 1]);
        assert_eq!(told(&mut cache), ["set 1"]);
        cache.set_node(&node("d"));
        assert_eq!(cache.nodes(), [0, 1, 2]);
        assert_eq!(told(&mut cache), ["set 2", "+2 p3"]);
        // A changed Node is told without its pods.
        cache.set_node(&node("d"));
        assert_eq!(told(&mut cache), ["set 2"]);
        // A pod that moves before the plugins are told is told where it is.
        cache.bound(&pod("p4", "a"));
        cache.bound(&pod("p4", "c"));
        assert_eq!(told(&mut cache), ["-0 p4", "+1 p4"]);
        // A plugin that knows nothing is told all of it.
        assert_eq!(
            brief(cache.snapshot()),
            ["set 0", "+0 p1", "set 1", "+1 p4", "set 2", "+2 p3"]
        );
    }
}
