"""The lab's sealed-secrets controller (lab/turnkey_lab/components/sealed_secrets.py): the real controller of
github.com/bitnami/sealed-secrets v0.40.0, run by the lab once the cluster holds its Deployment, with the layer 00
keypair that role sealed_secrets_key puts into kube-system.

The cluster is the real etcd + kube-apiserver of tests/integration/cluster (no kubelet: the controller runs as the
lab's process, in a mount namespace that shows it its ServiceAccount token where in-cluster config reads it). Its
CRD, Deployment and RBAC are the chart the module carries (helm/sealed-secrets 2.19.3), rendered by the pinned
helm with the platform tree's HelmRelease values. Lab net 127.107.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.cluster.conftest import control_plane  # noqa: F401  # pylint: disable=unused-import
from tests.lab.test_lab_flux import Cluster, controller_lab, supervised
from tests.playbook_runner import REPO, TEST_VAULT_PASSWORD, copy_inventory, lab_env, run_playbook
from tests.store_access import open_store
from tests.tools import built_tools

from .conftest import wait_for

NET = "127.107"
NAME = "sealed-secrets"
NEEDED = ("TURNKEY_KUBECTL", "TURNKEY_HELM", "TURNKEY_SEALED_SECRETS")
KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
HELMRELEASE = REPO / "k8s" / "platform" / "sealed-secrets" / "helmrelease.yaml"


def render_chart(helm: str, tool: Path, key_id: str, tmp_path: Path) -> list[dict]:
    """`helm template` of the chart in the tool's folder (the module's helm/sealed-secrets) with the values of the
    platform tree's HelmRelease (its one Flux substitution filled in), CRDs included: what helm-controller installs."""
    release = yaml.safe_load(HELMRELEASE.read_text())
    values = json.loads(json.dumps(release["spec"]["values"]).replace("${sealed_secrets_key_id}", key_id))
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    done = subprocess.run([helm, "template", release["metadata"]["name"], str(tool / "chart"), "--namespace",
                           release["metadata"]["namespace"], "--include-crds", "-f", str(values_file)],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "HELM_CACHE_HOME": str(tmp_path / "helm"),
                               "HELM_CONFIG_HOME": str(tmp_path / "helm"), "HELM_DATA_HOME": str(tmp_path / "helm")})
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def layer00_key(tmp_path: Path, kubeconfig: Path):
    """The layer 00 keypair (module persistent_secret, as layer 00 makes it; rotated when asked) and role
    sealed_secrets_key putting every key into kube-system, as layer 01 does. Returns run(rotate) -> the store's
    record (certificate, private_key, retired_keys)."""
    inventory = copy_inventory(tmp_path, "lab")
    play = {"name": "layer 00 key, layer 01 Secrets", "hosts": "localhost", "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable},
            "tasks": [
                {"name": "The sealed-secrets keypair", "turnkey.cluster.persistent_secret": {
                    "name": "sealed_secrets", "type": "sealed_secrets_keypair",
                    "store_path": "{{ secrets_store.path }}",
                    "vault_password_file": "{{ secrets_store.vault_password_file }}",
                    "rotate": "{{ rotate | default(false) | bool }}"}},
                {"name": "Key", "ansible.builtin.include_role": {"name": "turnkey.cluster.sealed_secrets_key"},
                 "vars": {"sealed_secrets_key_kubeconfig": str(kubeconfig)}}]}
    playbook = tmp_path / "key.yml"
    playbook.write_text(yaml.safe_dump([play]))

    def run(rotate: bool = False) -> dict:
        done = run_playbook("-i", str(inventory), "-e", "rotate=%s" % rotate, playbook=str(playbook),
                            env=lab_env(tmp_path))
        assert done.returncode == 0, done.stdout[-3000:]
        return open_store(inventory / "secrets", TEST_VAULT_PASSWORD).read("sealed_secrets")["data"]
    return run


def key_secrets(cluster: Cluster) -> dict[str, dict]:
    """Every Secret in kube-system the controller would take as a key (any value of its label), by name."""
    listed = cluster.get("secret", "-n", "kube-system", "-l", KEY_LABEL)
    return {item["metadata"]["name"]: item for item in listed["items"]}


def platform_tree_seal(certificate: str, spec: dict) -> dict:
    """A SealedSecret as role platform_tree writes it (its module's own sealing code, no private key at hand)."""
    collections = str(REPO / "collections")
    if collections not in sys.path:
        sys.path.insert(0, collections)
    from ansible_collections.turnkey.cluster.plugins.modules import platform_tree_render  # noqa: PLC0415

    text, _sealed = platform_tree_render.sealed_secret_text(spec, certificate, None, None)
    return yaml.safe_load(text)


def kubeseal_offline(kubeseal: Path, certificate: Path, secret: dict, home: Path) -> dict:
    """The real kubeseal with the certificate file only: no kubeconfig, no cluster in reach."""
    done = subprocess.run([str(kubeseal), "--cert", str(certificate), "--format", "yaml"],
                          input=yaml.safe_dump(secret), capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(home), "KUBECONFIG": str(home / "no-kubeconfig")})
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def secret_values(cluster: Cluster, namespace: str, name: str) -> dict | None:
    secret = cluster.get("secret", name, "-n", namespace)
    if not secret:
        return None
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


def mount_points(pid: int) -> set[str]:
    """The mount points a process sees (field 5 of /proc/<pid>/mountinfo)."""
    return {line.split()[4] for line in (Path("/proc") / str(pid) / "mountinfo").read_text().splitlines()}


@pytest.fixture
def sealed_lab(control_plane, make_lab):  # noqa: F811 - pytest's fixture by name
    with controller_lab(make_lab, NET, control_plane[0], NEEDED, (NAME,)) as found:
        yield found


def test_sealed_secrets_controller_decrypts_with_the_layer00_key(sealed_lab, tmp_path):
    lab, cluster, tools = sealed_lab
    tool = Path(tools["TURNKEY_SEALED_SECRETS"])
    layer00 = layer00_key(tmp_path, cluster.kubeconfig)
    stored = layer00()
    (certificate := tmp_path / "layer00.crt").write_text(stored["certificate"])
    installed_keys = key_secrets(cluster)
    assert len(installed_keys) == 1 and next(iter(installed_keys)).startswith("sealed-secrets-key-turnkey-")
    key_id = next(iter(installed_keys)).rsplit("-", 1)[1]

    lab.run("up", "--components", NAME)
    status = lab.status()["components"][NAME]
    assert status["healthy"] and status["detail"].startswith("waiting"), status
    wait_for(lambda: "(no Deployment kube-system/sealed-secrets-controller)" in supervised(lab)[NAME]["detail"], 30)

    # what helm-controller installs from the HelmRelease: CRD first, then the controller's objects
    documents = render_chart(tools["TURNKEY_HELM"], tool, key_id, tmp_path)
    crds = [doc for doc in documents if doc["kind"] == "CustomResourceDefinition"]
    assert [crd["metadata"]["name"] for crd in crds] == ["sealedsecrets.bitnami.com"]
    cluster.apply(yaml.safe_dump_all(crds))
    cluster.run("wait", "--for=condition=Established", "--timeout=60s", "crd/sealedsecrets.bitnami.com")
    cluster.apply(yaml.safe_dump_all([doc for doc in documents if doc["kind"] != "CustomResourceDefinition"]))
    wait_for(lambda: lab.status()["components"][NAME]["detail"] == "sealed-secrets-controller ready",
             timeout=120, interval=1)

    # the chart's args pass through (no renewal, key Secrets watched); only the listen addresses are the lab's
    component = lab.root / "components" / NAME
    launch = json.loads((component / "launch.json").read_text())
    args = launch["args"]
    assert args[args.index("--key-renew-period") + 1] == "0"
    assert "--watch-for-secrets" in args and "--update-status" in args
    assert args[-2:] == ["--listen-addr=%s.0.15:8080" % NET, "--listen-metrics-addr=%s.0.15:8081" % NET]
    assert ":8080" not in args and ":8081" not in args

    # it runs as its ServiceAccount, from the token that its own mount namespace shows it at the in-cluster path
    whoami = json.loads(cluster.run("auth", "whoami", "-o", "json", kubeconfig=component / "kubeconfig").stdout)
    assert whoami["status"]["userInfo"]["username"] == "system:serviceaccount:kube-system:sealed-secrets-controller"
    pid = int((lab.root / "run" / ("%s.pid" % NAME)).read_text())
    argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    assert argv[0].decode() == str(component / "sealed-secrets-controller")
    mount_point = os.path.realpath("/var/run/secrets/kubernetes.io/serviceaccount")  # /var/run: often -> /run
    assert mount_point in mount_points(pid)
    assert mount_point not in mount_points(os.getpid())  # the mount exists only in the controller's namespace
    assert oct((component / "serviceaccount" / "token").stat().st_mode & 0o777) == "0o600"

    cluster.run("create", "namespace", "apps")
    # sealed OFFLINE by the real kubeseal, with nothing but the layer 00 certificate
    offline = kubeseal_offline(tool / "kubeseal", certificate, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-credentials", "namespace": "apps"},
        "stringData": {"username": "app", "password": "correct horse battery staple"}}, tmp_path)
    assert offline["kind"] == "SealedSecret" and "password" in offline["spec"]["encryptedData"]
    cluster.apply(offline)
    assert wait_for(lambda: secret_values(cluster, "apps", "app-credentials"), timeout=60, interval=1) == {
        "username": "app", "password": "correct horse battery staple"}
    sealed = cluster.get("sealedsecret", "app-credentials", "-n", "apps")
    synced = next(item for item in sealed["status"]["conditions"] if item["type"] == "Synced")
    assert synced["status"] == "True", synced

    # sealed by role platform_tree's own code (what it writes into the tree): the same format, decrypted too
    tree = platform_tree_seal(stored["certificate"], {"name": "proxmox-csi-token", "namespace": "apps",
                                                      "data": {"token": "root@pam!csi=0123-abcd"}})
    cluster.apply(tree)
    assert wait_for(lambda: secret_values(cluster, "apps", "proxmox-csi-token"), timeout=60, interval=1) == {
        "token": "root@pam!csi=0123-abcd"}
    made = cluster.get("secret", "proxmox-csi-token", "-n", "apps")
    assert made["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "turnkey.cluster"
    assert made["metadata"]["ownerReferences"][0]["kind"] == "SealedSecret"

    # strict scope: the same ciphertext under another name is refused, and no Secret appears
    cluster.apply({**tree, "metadata": {"name": "renamed", "namespace": "apps"},
                   "spec": {**tree["spec"], "template": {"metadata": {"name": "renamed", "namespace": "apps"}}}})

    def refused():
        status = (cluster.get("sealedsecret", "renamed", "-n", "apps") or {}).get("status") or {}
        return next((item for item in status.get("conditions") or [] if item["type"] == "Synced"
                     and item["status"] == "False"), None)
    assert "no key could decrypt secret" in wait_for(refused, timeout=60, interval=1)["message"]
    assert cluster.get("secret", "renamed", "-n", "apps") is None

    # it never minted a key of its own: the layer 00 key is still the only key Secret
    assert set(key_secrets(cluster)) == set(installed_keys)
    names = [item["metadata"]["name"] for item in cluster.get("secret", "-n", "kube-system")["items"]]
    assert [name for name in names if name.startswith("sealed-secrets-key")] == list(installed_keys)

    # a rotation in layer 00: layer 01 adds the new key's Secret beside the old one, and the running controller
    # (same process: no restart) takes it through --watch-for-secrets; what either certificate seals decrypts
    rotated = layer00(rotate=True)
    assert rotated["certificate"] != stored["certificate"]
    (new_certificate := tmp_path / "layer00-new.crt").write_text(rotated["certificate"])
    assert len(key_secrets(cluster)) == 2 and set(installed_keys) < set(key_secrets(cluster))
    for name, cert in (("after-rotation-new", new_certificate), ("after-rotation-old", certificate)):
        cluster.apply(kubeseal_offline(tool / "kubeseal", cert, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "apps"},
            "stringData": {"value": name}}, tmp_path))
        assert wait_for(lambda name=name: secret_values(cluster, "apps", name), timeout=60, interval=1) == {
            "value": name}
    assert int((lab.root / "run" / ("%s.pid" % NAME)).read_text()) == pid
    assert (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")[0] == argv[0]
    names = [item["metadata"]["name"] for item in cluster.get("secret", "-n", "kube-system")["items"]]
    assert sorted(name for name in names if name.startswith("sealed-secrets-key")) == sorted(key_secrets(cluster))

    lab.run("down")
    assert lab.processes() == []


def test_controller_args_are_the_charts_with_the_labs_addresses(tmp_path):
    """The chart passes `--flag value` pairs: the listen addresses and their values become the component's, every
    other flag and value stays as the chart (with the platform tree's values) renders it."""
    from turnkey_lab.components.sealed_secrets import SealedSecretsController
    from turnkey_lab.state import Lab

    tools = built_tools("TURNKEY_HELM", "TURNKEY_SEALED_SECRETS")
    documents = render_chart(tools["TURNKEY_HELM"], Path(tools["TURNKEY_SEALED_SECRETS"]), "0123456789abcdef",
                             tmp_path)
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    assert deployment["metadata"] == {**deployment["metadata"], "name": "sealed-secrets-controller",
                                      "namespace": "kube-system"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "controller"
    assert container["args"][container["args"].index("--listen-addr") + 1] == ":8080"
    args = SealedSecretsController(Lab.at(tmp_path / "state", NET)).args(deployment)
    assert container["args"][-5:] == ["--listen-addr", ":8080", "--listen-metrics-addr", ":8081",
                                      "--watch-for-secrets"]
    assert args == ["--update-status", "--key-renew-period", "0", "--key-prefix", "sealed-secrets-key",
                    "--watch-for-secrets", "--listen-addr=127.107.0.15:8080", "--listen-metrics-addr=127.107.0.15:8081"]
