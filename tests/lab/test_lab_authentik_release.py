"""Authentik's HelmRelease of the platform tree becomes Ready only once its Secrets exist: the real helm-controller and
source-controller (lab components) install the lab's stand-in authentik chart from the lab's chart repository into a
Talos twin cluster whose pods KWOK plays behind the kubelet's gate; without the four Secrets of the layer 03 contract
the server and worker pods stay Pending with the kubelet's CreateContainerConfigError and the release is not Ready,
and once the Secrets are made (as External Secrets makes them) the pods start and the release is Ready. The same for
the SSO apps' own releases (Grafana's, Gitea's, Harbor's, Synapse's, from apps/sso-apps) and their Secrets. One
control plane and one worker on 127.115.1.x, the lab's components on 127.115.0.x."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from tests.lab.conftest import isolated_labs, wait_for
from tests.lab.test_lab_charts import lab_tree
from tests.lab.test_lab_control_loop import loop_tools
from tests.lab.test_lab_flux import Cluster, condition
from tests.lab.test_talos_twin import (  # noqa: F401 # pylint: disable=unused-import
    Twin,
    run,
    talosctl,
    twin_binary,
)
from tests.lab.test_talos_twin_cluster import node_config
from tests.tools import built_tools

NET = "127.115"
NODES = {"cp1": NET + ".1.1", "w1": NET + ".1.2"}
# The layer 03 contract: the env of server and worker -> Secret / key in namespace authentik.
SECRETS = {"authentik-bootstrap-token": "token", "authentik-bootstrap-password": "password",
           "authentik-secret-key": "secret_key", "authentik-postgres-password": "password"}
# The twin's stand-in for a CNI: the DaemonSet kube-system/cilium existing.
CNI = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "cilium", "namespace": "kube-system"},
       "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}}, "template": {
           "metadata": {"labels": {"k8s-app": "cilium"}},
           "spec": {"hostNetwork": True, "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.20.0"}]}}}}


@pytest.fixture(scope="module")
def release_lab(twin_binary, talosctl, tmp_path_factory):  # noqa: F811
    """A lab (charts, source- and helm-controller) whose Talos twin state is a real twin cluster with KWOK: the twin
    runs in the lab's components/talos folder, where the lab's controllers look for the cluster."""
    tools = {**loop_tools(), **built_tools("TURNKEY_FLUX_MANIFESTS", "TURNKEY_SOURCE_CONTROLLER",
                                           "TURNKEY_HELM_CONTROLLER", "TURNKEY_LAB_CHARTS")}
    from turnkey_lab import pki  # noqa: PLC0415
    from turnkey_lab.state import Lab  # noqa: PLC0415

    with isolated_labs(tmp_path_factory) as make:
        lab = make(NET)
        pki.ensure_ca(Lab.at(lab.root, NET))
        root = lab.root / "components" / "talos"
        root.mkdir(parents=True)
        gen = tmp_path_factory.mktemp("authentik-gen")
        run(talosctl, "gen", "config", "release", "https://%s.1.100:6443" % NET, "-o", str(gen), "--with-docs=false",
            "--with-examples=false")
        twin = Twin(twin_binary, root, NODES)
        twin.extra_args = ["--etcd", tools["TURNKEY_ETCD"], "--kube-apiserver", tools["TURNKEY_KUBE_APISERVER"],
                           "--kube-controller-manager", tools["TURNKEY_KUBE_CONTROLLER_MANAGER"],
                           "--kube-scheduler", tools["TURNKEY_KUBE_SCHEDULER"], "--kwok", tools["TURNKEY_KWOK"]]
        twin.start(*NODES.values())
        try:
            for name, ip in NODES.items():
                run(talosctl, "apply-config", "--insecure", "-n", ip, "-e", ip, "-f", str(node_config(gen, name)))
            cp1, talosconfig = NODES["cp1"], str(gen / "talosconfig")
            run(talosctl, "--talosconfig", talosconfig, "-n", cp1, "-e", cp1, "bootstrap")
            kubeconfig = gen / "kubeconfig"
            run(talosctl, "--talosconfig", talosconfig, "-n", cp1, "-e", cp1, "kubeconfig", str(kubeconfig),
                "--force", "--merge=false")
            cluster = Cluster(kubeconfig, tools["TURNKEY_KUBECTL"])
            wait_for(lambda: len((cluster.get("nodes") or {}).get("items") or []) == len(NODES), timeout=180,
                     interval=1)
            cluster.apply(CNI)
            # The tree of the lab inventory, its charts from this lab's repository.
            tree = lab_tree(tmp_path_factory.mktemp("authentik-tree"), lab.root, NET)
            lab.run("up", "--components", "charts,source-controller,helm-controller", "--profile", "fast")
            cluster.run("apply", "--server-side", "-f", str(Path(tools["TURNKEY_FLUX_MANIFESTS"]) / "install.yaml"))
            # Every release's HelmRepository verifies the lab's chart repository with this CA: each test needs it.
            cluster.apply(tree.substituted(tree.files()["chart-repository-ca.yaml"]))
            for controller in ("source-controller", "helm-controller"):
                wait_for(lambda name=controller: lab.status()["components"][name]["detail"] == name + " ready",
                         timeout=300, interval=1)
            yield lab, cluster, tree
        finally:
            lab.run("down", ok=False)
            twin.stop()


def pod_of(cluster: Cluster, component: str) -> dict | None:
    items = (cluster.get("pods", "-n", "authentik", "-l", "app.kubernetes.io/component=" + component) or {})
    return (items.get("items") or [None])[0]


def test_the_authentik_release_is_ready_only_after_its_secrets_exist(release_lab):
    lab, cluster, tree = release_lab
    files = tree.files()
    cluster.apply(tree.substituted(files["platform/namespaces/authentik.yaml"]))
    cluster.apply(tree.substituted(files["apps/authentik/helmrepository.yaml"]))
    cluster.apply(tree.substituted(files["apps/authentik/helmrelease.yaml"]))

    # Installed, but the kubelet's gate holds server and worker: their Secrets do not exist yet.
    def gated(component):
        def check():
            pod = pod_of(cluster, component)
            statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
            waiting = [status.get("state", {}).get("waiting") or {} for status in statuses]
            return waiting[0] if waiting and waiting[0].get("reason") == "CreateContainerConfigError" else None
        return check

    for component in ("server", "worker"):
        waiting = wait_for(gated(component), timeout=300, interval=1)
        assert waiting["message"].startswith('secret "authentik-') and waiting["message"].endswith('" not found'), \
            waiting
    release = cluster.get("helmrelease", "authentik", "-n", "authentik")
    assert condition(release).get("status") != "True", condition(release)
    deployment = cluster.get("deployment", "authentik-server", "-n", "authentik")
    assert not (deployment.get("status") or {}).get("availableReplicas"), deployment["status"]
    env = {entry["name"]: entry["valueFrom"]["secretKeyRef"]
           for entry in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {ref["name"]: ref["key"] for ref in env.values()} == SECRETS
    assert set(env) == {"AUTHENTIK_BOOTSTRAP_TOKEN", "AUTHENTIK_BOOTSTRAP_PASSWORD", "AUTHENTIK_SECRET_KEY",
                        "AUTHENTIK_POSTGRESQL__PASSWORD"}

    # The Secrets appear (as External Secrets makes them from Vault): the pods start and the release is Ready.
    for name, key in SECRETS.items():
        cluster.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                       "metadata": {"name": name, "namespace": "authentik"},
                       "data": {key: base64.b64encode(("lab-%s-value" % name).encode()).decode()}})

    def ready():
        found = condition(cluster.get("helmrelease", "authentik", "-n", "authentik"))
        return found if found.get("status") == "True" else None

    found = wait_for(ready, timeout=600, interval=2)
    assert found["reason"] in ("InstallSucceeded", "UpgradeSucceeded"), found
    for name in ("authentik-server", "authentik-worker"):
        deployment = cluster.get("deployment", name, "-n", "authentik")
        assert deployment["status"].get("availableReplicas") == 1, (name, deployment["status"])
    started = pod_of(cluster, "server")
    assert started["metadata"]["annotations"]["lab.turnkey.cluster/kubelet"] == "containers-started"
    assert condition(started).get("status") == "True"
    chart = yaml.safe_load(cluster.run("get", "helmrelease", "authentik", "-n", "authentik", "-o", "yaml").stdout)
    assert chart["status"]["history"][0]["chartVersion"] == "2026.5.6"
    assert lab.status()["components"]["helm-controller"]["healthy"]


def released(cluster: Cluster, app: str, deployment: str | None = None) -> None:
    """Waits until the app's HelmRelease (named and namespaced as the app) is Ready from an install or upgrade, with
    its Deployment (named as the app unless named here) available."""
    def ready():
        found = condition(cluster.get("helmrelease", app, "-n", app))
        return found if found.get("status") == "True" else None

    found = wait_for(ready, timeout=600, interval=2)
    assert found["reason"] in ("InstallSucceeded", "UpgradeSucceeded"), found
    assert cluster.get("deployment", deployment or app, "-n", app)["status"].get("availableReplicas") == 1


def apply_release(cluster: Cluster, tree, app: str) -> list[dict]:
    """Applies the app's namespace and release file as the tree renders them, but not its ExternalSecrets (no
    External Secrets here: the test makes the Secrets they would make); returns the file's documents."""
    files = tree.files()
    cluster.apply(tree.substituted(files[f"apps/sso-apps/namespace-{app}.yaml"]))
    docs = list(yaml.safe_load_all(tree.substituted(files[f"apps/sso-apps/{app}-release.yaml"])))
    for doc in docs:
        if doc["kind"] != "ExternalSecret":
            cluster.apply(doc)
    return docs


def make_secret(cluster: Cluster, namespace: str, name: str, data: dict[str, str]) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": name, "namespace": namespace},
                   "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}})


def kubelet_holds(cluster: Cluster, namespace: str, selector: str, message: str) -> None:
    """Waits until the kubelet's gate holds the app's pod for `message`: a volume's FailedMount event, or, once
    every volume mounts, its container's CreateContainerConfigError."""
    def held():
        pod = ((cluster.get("pods", "-n", namespace, "-l", selector) or {}).get("items") or [None])[0]
        if pod is None:
            return False
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        waiting = (statuses[0].get("state") or {}).get("waiting") or {} if statuses else {}
        events = (cluster.get("events", "-n", namespace, "--field-selector",
                              "reason=FailedMount,involvedObject.name=" + pod["metadata"]["name"]) or {}).get("items")
        return message in {waiting.get("message")} | {event["message"] for event in events or []}

    wait_for(held, timeout=300, interval=1)


def released_secret_by_secret(cluster: Cluster, app: str, selector: str, deployment: str,
                              secrets: list[tuple[str, str, dict[str, str]]]) -> None:
    """For each (the kubelet's message, the Secret, its data) in turn: the app's pod is held for that Secret and the
    release is not Ready; the test then makes the Secret as its ExternalSecret would. Then the release is Ready."""
    for message, name, data in secrets:
        kubelet_holds(cluster, app, selector, message)
        assert condition(cluster.get("helmrelease", app, "-n", app)).get("status") != "True"
        make_secret(cluster, app, name, data)
    released(cluster, app, deployment)


def test_an_sso_apps_release_is_ready_only_after_its_client_secret_exists(release_lab):
    """Grafana's release from apps/sso-apps (the lab's stand-in chart): held by the kubelet's gate until the Secret
    grafana-oidc, which External Secrets syncs from Vault's kv/sso/grafana, exists with its client_secret key."""
    _lab, cluster, tree = release_lab
    apply_release(cluster, tree, "grafana")

    def grafana_pod():
        items = (cluster.get("pods", "-n", "grafana", "-l", "app.kubernetes.io/name=grafana") or {}).get("items")
        return (items or [None])[0]

    def gated():
        statuses = ((grafana_pod() or {}).get("status") or {}).get("containerStatuses") or []
        waiting = statuses[0].get("state", {}).get("waiting") or {} if statuses else {}
        return waiting if waiting.get("reason") == "CreateContainerConfigError" else None

    waiting = wait_for(gated, timeout=300, interval=1)
    assert waiting["message"] == 'secret "grafana-oidc" not found', waiting
    assert condition(cluster.get("helmrelease", "grafana", "-n", "grafana")).get("status") != "True"

    # A Secret without the key is still refused, as a kubelet refuses it.
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": "grafana-oidc", "namespace": "grafana"},
              "data": {"other": base64.b64encode(b"x").decode()}}
    cluster.apply(secret)
    wait_for(lambda: (gated() or {}).get("message", "").startswith("couldn't find key client_secret"), timeout=120,
             interval=1)
    cluster.apply({**secret, "data": {"client_secret": base64.b64encode(b"lab-grafana-client-secret").decode()}})

    released(cluster, "grafana")
    chart = yaml.safe_load(cluster.run("get", "helmrelease", "grafana", "-n", "grafana", "-o", "yaml").stdout)
    assert chart["status"]["history"][0]["chartVersion"] == "8.5.1"
    ini = cluster.get("configmap", "grafana", "-n", "grafana")["data"]["grafana.ini"]
    assert "client_id = grafana" in ini and "lab-grafana-client-secret" not in ini


def test_giteas_release_is_ready_only_after_its_oauth_secret_exists(release_lab):
    """Gitea's release (the lab's stand-in chart; the tree's gitea app is lab_tree's addition): its init container,
    which registers the OAuth source, reads the chart's keys `key` and `secret` of Secret gitea-oauth, so the pod is
    held until that Secret (which the tree's ExternalSecret gitea-oauth templates from kv/sso/gitea) exists."""
    _lab, cluster, tree = release_lab
    docs = apply_release(cluster, tree, "gitea")
    assert [doc["kind"] for doc in docs] == ["HelmRepository", "ExternalSecret", "HelmRelease"]

    def gated():
        items = (cluster.get("pods", "-n", "gitea", "-l", "app.kubernetes.io/name=gitea") or {}).get("items") or []
        statuses = ((items or [{}])[0].get("status") or {}).get("initContainerStatuses") or []
        waiting = statuses[0].get("state", {}).get("waiting") or {} if statuses else {}
        return waiting if waiting.get("reason") == "CreateContainerConfigError" else None

    waiting = wait_for(gated, timeout=300, interval=1)
    assert waiting["message"] == 'secret "gitea-oauth" not found', waiting
    assert condition(cluster.get("helmrelease", "gitea", "-n", "gitea")).get("status") != "True"

    # The Secret as the ExternalSecret's template makes it: the client id and the synced client secret.
    make_secret(cluster, "gitea", "gitea-oauth", {"key": "gitea", "secret": "lab-gitea-client-secret"})

    released(cluster, "gitea")
    script = cluster.get("secret", "gitea-init", "-n", "gitea")["data"]["configure_gitea.sh"]
    assert "lab-gitea-client-secret" not in base64.b64decode(script).decode()


def test_harbors_release_is_ready_only_after_its_three_secrets_exist(release_lab):
    """Harbor's release (the lab's stand-in chart; the tree's harbor app is lab_tree's addition): harbor-core mounts
    its encryption key from Secret harbor-secret-key and reads its admin's initial password and its OIDC settings
    (CONFIG_OVERWRITE_JSON) from harbor-admin-password and harbor-oidc-config, which the tree's ExternalSecrets make
    from Vault; the kubelet holds the pod until each exists, the volume first."""
    _lab, cluster, tree = release_lab
    docs = apply_release(cluster, tree, "harbor")
    assert [doc["kind"] for doc in docs] == ["HelmRepository"] + ["ExternalSecret"] * 3 + ["HelmRelease"]
    released_secret_by_secret(cluster, "harbor", "app=harbor,component=core", "harbor-core", [
        ('MountVolume.SetUp failed for volume "secret-key" : secret "harbor-secret-key" not found',
         "harbor-secret-key", {"secretKey": "lab16characters!"}),
        ('secret "harbor-admin-password" not found', "harbor-admin-password",
         {"admin_password": "lab-harbor-admin-password"}),
        ('secret "harbor-oidc-config" not found', "harbor-oidc-config",
         {"CONFIG_OVERWRITE_JSON": '{"auth_mode": "oidc_auth"}'})])
    # The chart's own Secret holds neither the admin's password nor the key: both come from the store.
    own = cluster.get("secret", "harbor-core", "-n", "harbor")["data"]
    assert not {"HARBOR_ADMIN_PASSWORD", "secretKey"} & set(own), sorted(own)


def test_synapses_release_is_ready_only_after_its_client_secret_and_passwords_exist(release_lab):
    """Synapse's release (the lab's stand-in chart; the tree's synapse app is lab_tree's addition): Synapse mounts
    the client secret as a file from synapse-oidc (synced from kv/sso/synapse) and reads its database's and Redis'
    passwords from synapse-postgres-password and synapse-redis-password (made from kv/sso/synapse/*); the kubelet
    holds the pod until each exists."""
    _lab, cluster, tree = release_lab
    docs = apply_release(cluster, tree, "synapse")
    assert [doc["kind"] for doc in docs] == ["HelmRepository", "ExternalSecret", "ExternalSecret", "HelmRelease"]
    pod = "app.kubernetes.io/instance=synapse,app.kubernetes.io/component=synapse"
    released_secret_by_secret(cluster, "synapse", pod, "synapse", [
        ('MountVolume.SetUp failed for volume "oidc" : secret "synapse-oidc" not found', "synapse-oidc",
         {"client_secret": "lab-synapse-client-secret"}),
        ('secret "synapse-postgres-password" not found', "synapse-postgres-password",
         {"password": "lab-synapse-postgres-password"}),
        ('secret "synapse-redis-password" not found', "synapse-redis-password",
         {"redis-password": "lab-synapse-redis-password"})])
    homeserver = cluster.get("configmap", "synapse", "-n", "synapse")["data"]["homeserver.yaml"]
    assert "client_secret_path: /synapse/oidc/client_secret" in homeserver
    assert "lab-synapse-client-secret" not in homeserver
