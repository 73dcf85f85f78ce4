"""The lab's control loop behind the Talos node twin: the real kube-controller-manager and kube-scheduler
next to its kube-apiserver, and KWOK in the kubelets' place for pods, while the twin keeps its Nodes'
status and leases and the kubelet's gate on missing Secrets and ConfigMaps. One cluster (two control
planes, two workers) on 127.101.1.x, driven by the unmodified talosctl and kubectl."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import pytest

from tests.integration.cluster.test_cilium_ready import cilium_playbook
from tests.lab.test_talos_twin import (  # noqa: F401 # pylint: disable=unused-import
    Twin,
    run,
    talosctl,
    twin_binary,
)
from tests.lab.test_talos_twin_cluster import eventually, kubectl, node_config
from tests.playbook_runner import copy_inventory, lab_env, run_playbook
from tests.tools import built_tools

NET = "127.101.1"
NODES = {"cp1": NET + ".1", "cp2": NET + ".2", "w1": NET + ".3", "w2": NET + ".4"}
WORKERS = {"w1", "w2"}
GATE = "lab.turnkey.cluster/kubelet"


def loop_tools() -> dict[str, str]:
    return built_tools("TURNKEY_ETCD", "TURNKEY_KUBE_APISERVER", "TURNKEY_KUBE_CONTROLLER_MANAGER",
                       "TURNKEY_KUBE_SCHEDULER", "TURNKEY_KWOK", "TURNKEY_KUBECTL")


@pytest.fixture(scope="module")
def kubeconfig(twin_binary, talosctl, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("control-loop")
    gen = root / "gen"
    run(talosctl, "gen", "config", "loop", "https://%s.100:6443" % NET, "-o", str(gen), "--with-docs=false",
        "--with-examples=false")
    env = loop_tools()
    twin = Twin(twin_binary, root, NODES)
    twin.extra_args = ["--etcd", env["TURNKEY_ETCD"], "--kube-apiserver", env["TURNKEY_KUBE_APISERVER"],
                       "--kube-controller-manager", env["TURNKEY_KUBE_CONTROLLER_MANAGER"],
                       "--kube-scheduler", env["TURNKEY_KUBE_SCHEDULER"], "--kwok", env["TURNKEY_KWOK"]]
    twin.start(*NODES.values())
    try:
        for name, ip in NODES.items():
            run(talosctl, "apply-config", "--insecure", "-n", ip, "-e", ip, "-f", str(node_config(gen, name)))
        cp1 = NODES["cp1"]
        talosconfig = str(gen / "talosconfig")
        run(talosctl, "--talosconfig", talosconfig, "-n", cp1, "-e", cp1, "bootstrap")
        path = root / "kubeconfig"
        run(talosctl, "--talosconfig", talosconfig, "-n", cp1, "-e", cp1, "kubeconfig", str(path), "--force",
            "--merge=false")
        # the API server, then the twin's four Nodes (NotReady: no CNI yet)
        eventually(lambda: _names(path, "nodes") == sorted(NODES) or _fail("nodes"), 120, "four Nodes")
        # the CNI: the collection's cilium role with the lab inventory, waiting for a Ready agent on every
        # node and an available operator (inventory/lab no longer turns that wait off)
        installed = cilium_role(root, path)
        assert installed.returncode == 0, installed.stdout[-3000:]
        _all_ready(path)
        yield path
    finally:
        twin.stop()  # the folder stays for a look after a failure: twin.log, state/_cluster/logs/
    # the controller manager, the scheduler and KWOK went with the twin (their command lines name its folder)
    assert not _processes_naming(root / "state"), _processes_naming(root / "state")


def _processes_naming(folder: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(folder) in cmdline:
                found.append(cmdline[:200])
    return found


def cilium_role(root: Path, path: Path):
    root = root / "ansible"  # apart from the twin's state folder
    root.mkdir()
    found = built_tools("TURNKEY_HELM", "TURNKEY_CILIUM_CHART")
    inventory = copy_inventory(root, "lab")
    env = {**lab_env(root), **found}
    return run_playbook("-i", str(inventory), "-e", json.dumps({"cilium_expected_nodes": sorted(NODES)}),
                        "-e", "cilium_ready_timeout=300", playbook=str(cilium_playbook(root, path)), env=env)


def _fail(what):
    raise AssertionError(what)


def k(path: Path, *args: str, stdin: str | None = None) -> str:
    return kubectl(path, *args, stdin=stdin)


def get(path: Path, *args: str) -> dict:
    return json.loads(k(path, "get", *args, "-o", "json"))


def _names(path: Path, kind: str) -> list[str]:
    try:
        return sorted(item["metadata"]["name"] for item in get(path, kind)["items"])
    except AssertionError:
        return []


def _all_ready(path: Path) -> bool:
    nodes = get(path, "nodes")["items"]
    states = {n["metadata"]["name"]: _condition(n, "Ready") for n in nodes}
    assert all(c and c["status"] == "True" for c in states.values()), states
    return True


def _condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == kind), None)


def apply(path: Path, manifest: str) -> None:
    k(path, "apply", "-f", "-", stdin=manifest)


def pods(path: Path, namespace: str, selector: str) -> list[dict]:
    return get(path, "pods", "-n", namespace, "-l", selector)["items"]


WORKLOADS = """
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: apps}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      initContainers: [{name: init, image: busybox:1.37}]
      containers: [{name: db, image: postgres:18}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: apps}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: busybox:1.37}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: apps}
spec:
  completions: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: busybox:1.37}]
"""


def test_deployments_statefulsets_daemonsets_and_jobs_come_up(kubeconfig):
    apply(kubeconfig, WORKLOADS)
    eventually(lambda: _available(kubeconfig, "deployment/web", 3), 120, "Deployment web Available with 3 replicas")
    eventually(lambda: _ready_replicas(kubeconfig, "statefulset/db", 2), 120, "StatefulSet db 2 ready")
    job = eventually(lambda: _job_complete(kubeconfig), 120, "Job migrate Complete")
    assert job["status"]["succeeded"] == 2

    def daemonset():
        status = get(kubeconfig, "-n", "apps", "daemonset/agent")["status"]
        # no toleration for the control planes' NoSchedule taint: the workers only
        assert status.get("desiredNumberScheduled") == 2 and status.get("numberReady") == 2, status
        return status
    eventually(daemonset, 120, "DaemonSet agent ready on both workers")

    # the scheduler placed every pod without a toleration on a worker (control planes are tainted)
    for selector in ("app=web", "app=db", "app=agent"):
        placed = {p["spec"]["nodeName"] for p in pods(kubeconfig, "apps", selector)}
        assert placed <= WORKERS, (selector, placed)
    # Cilium's agents (hostNetwork, tolerating every taint) run everywhere, with the node's address
    agents = pods(kubeconfig, "kube-system", "k8s-app=cilium")
    assert sorted(p["spec"]["nodeName"] for p in agents) == sorted(NODES)
    assert all(p["status"]["podIP"] == NODES[p["spec"]["nodeName"]] for p in agents)
    operator = get(kubeconfig, "-n", "kube-system", "deployment/cilium-operator")["status"]
    assert operator.get("availableReplicas") == 2, operator
    # a StatefulSet's pods start in order, each Running with its init container completed
    db0 = get(kubeconfig, "-n", "apps", "pod/db-0")
    assert db0["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    # the controller manager made the namespace's root CA and service account, with the shared key
    assert "ca.crt" in get(kubeconfig, "-n", "apps", "configmap/kube-root-ca.crt")["data"]
    get(kubeconfig, "-n", "apps", "serviceaccount/default")

    # a rollout replaces the pods (KWOK deletes the terminating ones, as a kubelet does)
    k(kubeconfig, "-n", "apps", "set", "image", "deployment/web", "web=nginx:1.30")
    eventually(lambda: _rolled_out(kubeconfig), 120, "Deployment web rolled out to nginx:1.30")


def _available(path, ref, replicas):
    deployment = get(path, "-n", "apps", ref)
    status = deployment["status"]
    assert (_condition(deployment, "Available") or {}).get("status") == "True", status
    assert status.get("readyReplicas") == replicas and status.get("availableReplicas") == replicas, status
    return deployment


def _ready_replicas(path, ref, replicas):
    status = get(path, "-n", "apps", ref)["status"]
    assert status.get("readyReplicas") == replicas, status
    return status


def _job_complete(path):
    job = get(path, "-n", "apps", "job/migrate")
    assert (_condition(job, "Complete") or {}).get("status") == "True", job.get("status")
    return job


def _rolled_out(path):
    deployment = _available(path, "deployment/web", 3)
    assert deployment["status"].get("updatedReplicas") == 3, deployment["status"]
    images = [p["spec"]["containers"][0]["image"] for p in pods(path, "apps", "app=web")]
    assert images == ["nginx:1.30"] * 3, images


def deployment(namespace: str, name: str, replicas: int = 1, **pod_spec) -> str:
    """A Deployment of `replicas` pods labelled app=<name> with the given pod spec, as a YAML document."""
    return "---\n" + json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}}}) + "\n"


def busybox(**fields) -> list[dict]:
    return [{"name": "app", "image": "busybox:1.37", **fields}]


# an optional reference to a Secret that never exists does not hold a pod
WORKLOADS += deployment("apps", "web", 3, containers=[{"name": "web", "image": "nginx:1.29"}],
                        volumes=[{"name": "optional-secret", "secret": {"secretName": "never-made", "optional": True}}])

GATED = ("apiVersion: v1\nkind: Namespace\nmetadata: {name: gated}\n"
         + deployment("gated", "mounts-secret", containers=busybox(),
                      volumes=[{"name": "creds", "secret": {"secretName": "app-credentials"}}])
         + deployment("gated", "env-from-secret", containers=busybox(env=[
             {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app-env", "key": "password"}}}])))

CONTROL = deployment("gated", "control", containers=busybox())


def test_a_pod_referencing_a_missing_secret_waits_as_on_a_kubelet_until_it_exists(kubeconfig):
    apply(kubeconfig, GATED)

    def held(app, reason):
        pod = _the_pod(kubeconfig, app)
        assert pod["spec"].get("nodeName") in WORKERS, pod["spec"].get("nodeName")
        waiting = (pod["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
        assert waiting.get("reason") == reason, pod["status"]
        return pod, waiting
    mounting, _waiting = eventually(lambda: held("mounts-secret", "ContainerCreating"), 120, "mounts-secret held")
    env_pod, waiting = eventually(lambda: held("env-from-secret", "CreateContainerConfigError"), 120, "env held")
    assert waiting["message"] == 'secret "app-env" not found'
    events = get(kubeconfig, "-n", "gated", "events", "--field-selector",
                 "involvedObject.name=" + mounting["metadata"]["name"])["items"]
    assert any(e["reason"] == "FailedMount" and e["source"]["component"] == "kubelet" and
               'secret "app-credentials" not found' in e["message"] for e in events), events

    # a pod made after them, with nothing missing, starts: the two stay held, un-Ready, Pending
    apply(kubeconfig, CONTROL)
    eventually(lambda: _pod_ready(kubeconfig, "control"), 120, "control pod Ready")
    for pod in (mounting, env_pod):
        now = get(kubeconfig, "-n", "gated", "pod/" + pod["metadata"]["name"])
        assert now["status"]["phase"] == "Pending"
        assert _condition(now, "Ready")["status"] == "False"
        assert now["metadata"].get("annotations", {}).get(GATE) is None
    deployment = get(kubeconfig, "-n", "gated", "deployment/mounts-secret")
    assert (_condition(deployment, "Available") or {}).get("status") == "False"

    # a key the pod asks for is missing: still held, now with the kubelet's message for the key
    k(kubeconfig, "-n", "gated", "create", "secret", "generic", "app-env", "--from-literal=user=app")
    eventually(lambda: held("env-from-secret", "CreateContainerConfigError")[1]["message"] ==
               "couldn't find key password in Secret gated/app-env" or _fail("key message"), 60, "missing key")

    # the Secrets appear: the pods start, as a kubelet retrying its mounts and env would
    k(kubeconfig, "-n", "gated", "create", "secret", "generic", "app-credentials", "--from-literal=token=t")
    k(kubeconfig, "-n", "gated", "patch", "secret", "app-env", "-p", '{"stringData": {"password": "p"}}')
    eventually(lambda: _pod_ready(kubeconfig, "mounts-secret"), 120, "mounts-secret Ready")
    eventually(lambda: _pod_ready(kubeconfig, "env-from-secret"), 120, "env-from-secret Ready")


def _the_pod(path, app):
    """The Deployment's one pod; none yet (its ReplicaSet has not made it) is an AssertionError, which eventually
    retries."""
    found = pods(path, "gated", "app=" + app)
    assert len(found) == 1, [pod["metadata"]["name"] for pod in found]
    return found[0]


def _pod_ready(path, app):
    pod = _the_pod(path, app)
    assert (_condition(pod, "Ready") or {}).get("status") == "True", pod["status"]
    return pod


def test_nodes_stay_the_twins(kubeconfig):
    # past the node lifecycle controller's grace period (50 s) since the nodes became Ready: a node whose
    # lease did not move would be Unknown and tainted by now (in a whole-module run this has passed)
    became_ready = max(datetime.datetime.fromisoformat(_condition(n, "Ready")["lastTransitionTime"])
                       for n in get(kubeconfig, "nodes")["items"])
    while datetime.datetime.now(datetime.UTC) - became_ready < datetime.timedelta(seconds=60):
        time.sleep(1)
    nodes = get(kubeconfig, "nodes")["items"]
    for node in nodes:
        # the twin's kubelet status only: KWOK played no node stage on it
        assert [c["type"] for c in node["status"]["conditions"]] == ["Ready"], node["status"]["conditions"]
        assert _condition(node, "Ready")["reason"] == "KubeletReady"
        assert not any(key.startswith("kwok.x-k8s.io") for key in node["metadata"].get("annotations") or {})
        # the controller manager gave every node a pod CIDR from the cluster's pod subnet
        assert node["spec"]["podCIDR"].startswith("10.244."), node["spec"]
        # no taint of the node lifecycle controller (unreachable, not-ready): the control planes' own only
        taints = [t["key"] for t in node["spec"].get("taints") or []]
        expected = [] if node["metadata"]["name"] in WORKERS else ["node-role.kubernetes.io/control-plane"]
        assert taints == expected, (node["metadata"]["name"], taints)
    leases = {lease["metadata"]["name"]: lease for lease in get(kubeconfig, "-n", "kube-node-lease", "leases")["items"]}
    assert sorted(leases) == sorted(NODES)
    assert all(lease["spec"]["holderIdentity"] == name for name, lease in leases.items())

    # the twin renews them, as a kubelet does every 10 s
    def renewed():
        later = {lease["metadata"]["name"]: lease["spec"]["renewTime"]
                 for lease in get(kubeconfig, "-n", "kube-node-lease", "leases")["items"]}
        assert all(later[name] > leases[name]["spec"]["renewTime"] for name in NODES), later
        return True
    eventually(renewed, 60, "every node lease renewed")
