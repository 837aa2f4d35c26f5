"""Drives a Wasmkube API server with the Python `kubernetes` client.

Usage: python3 python_client.py KUBECONFIG. Exits non-zero, with the failed assertion,
when the server does not answer as Kubernetes does.
"""

import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

api_client = config.new_client_from_config(config_file=sys.argv[1])
core = client.CoreV1Api(api_client)
apps = client.AppsV1Api(api_client)
NS = "default"


def names(items):
    return sorted(item.metadata.name for item in items)


def own(config_maps):
    """The names of the ConfigMaps the test made (not the cluster's CA)."""
    return [n for n in names(config_maps) if n != "kube-root-ca.crt"]


# Version and discovery, with the trailing slashes this client uses.
assert client.VersionApi(api_client).get_code().minor == "33"
assert any(g.name == "apps" for g in client.ApisApi(api_client).get_api_versions().groups)

# ConfigMaps: create (the body carries no apiVersion/kind), list with selectors,
# replace, delete.
for i, tier in enumerate(["front", "front", "back"]):
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=f"cm-{i}", labels={"tier": tier}),
        data={"n": str(i)},
    )
    created = core.create_namespaced_config_map(NS, body)
    assert created.metadata.uid and created.metadata.resource_version
front = core.list_namespaced_config_map(NS, label_selector="tier=front")
assert names(front.items) == ["cm-0", "cm-1"], names(front.items)
back = core.list_namespaced_config_map(NS, label_selector="tier in (back)")
assert names(back.items) == ["cm-2"]
by_name = core.list_namespaced_config_map(NS, field_selector="metadata.name=cm-1")
assert names(by_name.items) == ["cm-1"]
page = core.list_namespaced_config_map(NS, limit=2)
assert len(page.items) == 2 and page.metadata._continue
rest = core.list_namespaced_config_map(NS, limit=2, _continue=page.metadata._continue)
# Every namespace also has the cluster's CA, as in Kubernetes.
assert own(page.items + rest.items) == ["cm-0", "cm-1", "cm-2"]

cm = core.read_namespaced_config_map("cm-0", NS)
cm.data = {"n": "changed"}
replaced = core.replace_namespaced_config_map("cm-0", NS, cm)
assert replaced.data == {"n": "changed"}
stale = cm  # still carries the old resourceVersion
try:
    core.replace_namespaced_config_map("cm-0", NS, stale)
    raise AssertionError("a stale replace was accepted")
except ApiException as e:
    assert e.status == 409, e.status

# Watch: the events of changes made while watching, in order.
events = []
start = core.list_namespaced_config_map(NS).metadata.resource_version


def watch_config_maps():
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, NS, resource_version=start, timeout_seconds=10):
        events.append((event["type"], event["object"].metadata.name))
        if len(events) == 3:
            w.stop()


watcher = threading.Thread(target=watch_config_maps)
watcher.start()
core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="watched")))
watched = core.read_namespaced_config_map("watched", NS)
watched.data = {"a": "b"}
core.replace_namespaced_config_map("watched", NS, watched)
core.delete_namespaced_config_map("watched", NS)
watcher.join(15)
assert events == [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")], events

for i in range(3):
    core.delete_namespaced_config_map(f"cm-{i}", NS)
assert own(core.list_namespaced_config_map(NS).items) == []
try:
    core.read_namespaced_config_map("cm-0", NS)
    raise AssertionError("a deleted ConfigMap was found")
except ApiException as e:
    assert e.status == 404

# Pods and Deployments.
pod = client.V1Pod(
    metadata=client.V1ObjectMeta(name="py-pod", labels={"app": "py"}),
    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="example/app:1")]),
)
created = core.create_namespaced_pod(NS, pod)
assert created.spec.restart_policy == "Always" and created.status.phase == "Pending"
assert names(core.list_namespaced_pod(NS, label_selector="app=py").items) == ["py-pod"]
assert names(core.list_pod_for_all_namespaces(field_selector="status.phase=Pending").items) == ["py-pod"]
core.delete_namespaced_pod("py-pod", NS)

deployment = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="py-deploy"),
    spec=client.V1DeploymentSpec(
        replicas=1,
        selector=client.V1LabelSelector(match_labels={"app": "py"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "py"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="example/app:1")]),
        ),
    ),
)
apps.create_namespaced_deployment(NS, deployment)
# Read, change, replace: the deployment controller writes the object too, so a
# stale read gets 409 Conflict and is read again, as client-go's RetryOnConflict.
for attempt in range(10):
    d = apps.read_namespaced_deployment("py-deploy", NS)
    d.spec.replicas = 4
    try:
        d = apps.replace_namespaced_deployment("py-deploy", NS, d)
        break
    except ApiException as e:
        if e.status != 409 or attempt == 9:
            raise
assert d.spec.replicas == 4 and d.metadata.generation == 2
scale = apps.read_namespaced_deployment_scale("py-deploy", NS)
assert scale.spec.replicas == 4 and scale.status.selector == "app=py"
# Patches: strategic merge merges containers by name; merge patch replaces lists.
side = {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "side:1"}]}}}}
d = apps.patch_namespaced_deployment("py-deploy", NS, side)
assert [c.name for c in d.spec.template.spec.containers] == ["c", "side"], d.spec.template.spec.containers
d = apps.patch_namespaced_deployment(
    "py-deploy", NS, side, _content_type="application/strategic-merge-patch+json"
)
assert [c.name for c in d.spec.template.spec.containers] == ["c", "side"]
d = apps.patch_namespaced_deployment(
    "py-deploy", NS, {"metadata": {"labels": {"patched": "yes"}}, **side},
    _content_type="application/merge-patch+json",
)
assert [c.name for c in d.spec.template.spec.containers] == ["side"]
assert d.metadata.labels == {"patched": "yes"}
d.spec.selector = client.V1LabelSelector(match_labels={"app": "other"})
try:
    apps.replace_namespaced_deployment("py-deploy", NS, d)
    raise AssertionError("a changed selector was accepted")
except ApiException as e:
    assert e.status in (409, 422), e.status
apps.delete_namespaced_deployment("py-deploy", NS)
assert apps.list_namespaced_deployment(NS).items == []
print("python client: all checks passed")
