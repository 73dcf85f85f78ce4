"""The lab's External Secrets Operator (lab/turnkey_lab/components/external_secrets.py): the real controller
(v0.16.2, tools/build external-secrets), run by the lab once the cluster holds its Deployment, syncing from the
lab's real OpenBao through Vault's Kubernetes auth, whose TokenReview the real kube-apiserver answers.

Everything on the way is the product's: the chart the lab's chart repository serves (tools/build lab-charts) with
the values of k8s/platform/external-secrets/helmrelease.yaml, that folder's auth-delegator binding, the
ClusterSecretStore of k8s/platform/external-secrets-store with the settings role platform_tree gives an external
Vault, and the Vault side made by role vault_config as layer 02 runs it on inventory/lab (the lab's OpenBao
adopted, Kubernetes auth from the admin kubeconfig, External Secrets' role and read-only policy). Not rendered:
the webhook and the cert controller (the lab runs neither; docs/lab.md "External Secrets").

The cluster is the real etcd + kube-apiserver of tests/integration/cluster, laid out where the Talos twin keeps
its cluster (test_lab_flux.twin_cluster). Lab net 127.106 (OpenBao .0.2, External Secrets .0.14), the API server
on 127.106.1.1.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import types
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
import yaml

from tests.integration.cluster import conftest as cluster_fixture
from tests.integration.vault.test_vault_config import write_playbooks
from tests.lab.test_lab_flux import Cluster, condition, controller_lab, supervised
from tests.playbook_runner import REPO, copy_inventory, recap, run_playbook
from tests.store_access import open_store
from tests.tools import built_tools

from .conftest import wait_for

pytestmark = pytest.mark.lab

NET = "127.106"
API_ADDRESS = NET + ".1.1"
NEEDED = ("TURNKEY_KUBECTL", "TURNKEY_HELM", "TURNKEY_LAB_CHARTS", "TURNKEY_EXTERNAL_SECRETS")
PLATFORM = REPO / "k8s" / "platform"
# What role platform_tree sets for an external Vault (vault.deploy external, vault.ca_path set): the Flux
# post-build substitutions of the ClusterSecretStore (the address is the lab's OpenBao, filled in below).
STORE_SETTINGS = {"vault_ca_kind": "ConfigMap", "vault_ca_name": "vault-ca", "vault_ca_namespace": "external-secrets",
                  "vault_ca_key": "ca.crt", "vault_kv_mount": "kv", "vault_kubernetes_auth_path": "kubernetes",
                  "vault_eso_role": "external-secrets"}


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    """The cluster tests' etcd + kube-apiserver, on this module's address."""
    yield from cluster_fixture.bare_control_plane(tmp_path_factory, API_ADDRESS)


def chart_objects(tools: dict, tmp_path: Path, **overrides) -> list[dict]:
    """`helm template` of the external-secrets chart the lab's chart repository serves, with the HelmRelease's
    values, the webhook and the cert controller left out (and any override, dotted keys)."""
    release = yaml.safe_load((PLATFORM / "external-secrets" / "helmrelease.yaml").read_text())
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(release["spec"]["values"]))
    charts = sorted(Path(tools["TURNKEY_LAB_CHARTS"]).glob("external-secrets-*.tgz"))
    assert len(charts) == 1, charts
    settings = {"webhook.create": "false", "certController.create": "false", **overrides}
    done = subprocess.run([tools["TURNKEY_HELM"], "template", release["metadata"]["name"], str(charts[0]),
                           "--namespace", release["metadata"]["namespace"], "--values", str(values),
                           "--set", ",".join("%s=%s" % item for item in settings.items())],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def cluster_secret_store(vault_url: str, name: str = "vault") -> dict:
    """k8s/platform/external-secrets-store/clustersecretstore.yaml with Flux's `${var}` substitutions made."""
    settings = {**STORE_SETTINGS, "vault_address": vault_url}
    text = (PLATFORM / "external-secrets-store" / "clustersecretstore.yaml").read_text()
    text = re.sub(r"\$\{(\w+)\}", lambda m: settings[m.group(1)], text)
    store = yaml.safe_load(text)
    store["metadata"]["name"] = name
    return store


def external_secret(name: str, data: dict[str, tuple[str, str]], refresh: str = "1h") -> dict:
    """An ExternalSecret in namespace apps through ClusterSecretStore vault: {secret key: (kv path, property)}."""
    return {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": "apps"},
            "spec": {"refreshInterval": refresh, "secretStoreRef": {"kind": "ClusterSecretStore", "name": "vault"},
                     "target": {"name": name},
                     "data": [{"secretKey": key, "remoteRef": {"key": path, "property": prop}}
                              for key, (path, prop) in data.items()]}}


def secret_data(cluster: Cluster, name: str) -> dict | None:
    found = cluster.get("secret", name, "-n", "apps")
    return {k: base64.b64decode(v).decode() for k, v in (found["data"] or {}).items()} if found else None


def settled(cluster: Cluster, *args: str):
    """The Ready condition of an object once it says True or False."""
    def check():
        ready = condition(cluster.get(*args))
        return ready if ready.get("status") in ("True", "False") else None
    return check


def warnings(cluster: Cluster, name: str, *scope: str) -> list[str]:
    """The messages of the Warning events about the object called name (scope: -n NAMESPACE, or -A)."""
    events = cluster.get("events", *scope, "--field-selector", "involvedObject.name=%s,type=Warning" % name)
    return [event["message"] for event in (events or {}).get("items", [])]


def detail(lab) -> str:
    """The supervisor's last word on the component (run/status.json)."""
    return supervised(lab)["external-secrets"]["detail"]


@pytest.fixture
def eso_lab(control_plane, make_lab):
    with controller_lab(make_lab, NET, control_plane[0], NEEDED, ("external-secrets",), lines=30) as found:
        yield found


def test_external_secrets_syncs_from_the_labs_openbao_with_least_privilege(eso_lab, tmp_path):
    lab, cluster, tools = eso_lab
    lab.run("up", "--profile", "fast", "--components", "openbao,external-secrets")
    assert lab.status()["components"]["external-secrets"]["detail"].startswith("waiting")
    wait_for(lambda: "(no Deployment external-secrets/external-secrets)" in detail(lab), 30)
    vault_url = lab.json("endpoints.json")["components"]["openbao"]["url"]
    ca = lab.root / "pki" / "ca.pem"

    # Layer 02's Vault side, as layer 02 runs it on inventory/lab: the lab's OpenBao adopted, Kubernetes auth
    # pointed at the cluster of the admin kubeconfig with no reviewer token of its own.
    inventory = copy_inventory(tmp_path, "lab")
    env = {"TURNKEY_LAB_DIR": str(lab.root), "TURNKEY_STATE_DIR": str(tmp_path / "state")}
    layer00, _role, _module = write_playbooks(tmp_path, types.SimpleNamespace(url=vault_url, ca=str(ca)))
    assert run_playbook("-i", str(inventory), playbook=str(layer00), env=env).returncode == 0
    role = tmp_path / "vault.yml"
    role.write_text(yaml.safe_dump([{"name": "layer 02 Vault", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Vault as code", "ansible.builtin.include_role": {"name": "turnkey.cluster.vault_config"},
         "vars": {"vault_config_kubeconfig": str(cluster.kubeconfig)}}]}]))
    configured = run_playbook("-i", str(inventory), playbook=str(role), env=env)
    assert configured.returncode == 0, configured.stdout[-4000:]
    assert recap(configured.stdout)["localhost"]["failed"] == 0
    store = open_store(inventory / "secrets", (lab.root / "vault-password").read_text().strip())
    login = store.read("vault_playbook_login")["data"]
    playbook = hvac.Client(url=vault_url, verify=str(ca))
    playbook.auth.approle.login(role_id=login["role_id"], secret_id=login["secret_id"], mount_point=login["mount"])
    playbook.secrets.kv.v2.create_or_update_secret(path="grafana/admin", secret={"password": "first"},
                                                   mount_point="kv")
    playbook.secrets.kv.v2.create_or_update_secret(path="elsewhere/secret", secret={"x": "not for eso"},
                                                   mount_point="kv")

    # The platform tree's External Secrets: the chart as the HelmRelease installs it, and the TokenReview binding.
    cluster.run("create", "namespace", "external-secrets")
    cluster.run("create", "namespace", "apps")
    for document in chart_objects(tools, tmp_path):
        cluster.apply(document)
    cluster.run("apply", "-f", str(PLATFORM / "external-secrets" / "auth-delegator.yaml"))
    wait_for(lambda: lab.status()["components"]["external-secrets"]["detail"] == "external-secrets ready",
             timeout=180, interval=1)
    eso_kubeconfig = lab.root / "components" / "external-secrets" / "kubeconfig"
    whoami = json.loads(cluster.run("auth", "whoami", "-o", "json", kubeconfig=eso_kubeconfig).stdout)
    assert whoami["status"]["userInfo"]["username"] == "system:serviceaccount:external-secrets:external-secrets"
    launch = lab.json("components/external-secrets/launch.json")["args"]
    assert "--metrics-addr=%s.0.14:8080" % NET in launch and "--metrics-addr=:8080" not in launch

    # The store from the tree: Vault's Kubernetes auth as external-secrets/external-secrets, CA from the ConfigMap.
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "vault-ca", "namespace": "external-secrets"},
                   "data": {"ca.crt": ca.read_text()}})
    cluster.apply(cluster_secret_store(vault_url))
    ready = wait_for(settled(cluster, "clustersecretstore", "vault"), timeout=120, interval=1)
    assert ready["status"] == "True", ready

    cluster.apply(external_secret("app", {"token": ("authentik/bootstrap", "token"),
                                          "password": ("grafana/admin", "password")}, refresh="5s"))
    synced = wait_for(settled(cluster, "externalsecret", "app", "-n", "apps"), timeout=120, interval=1)
    assert (synced["status"], synced["reason"]) == ("True", "SecretSynced"), synced
    in_vault = {
        "token": playbook.secrets.kv.v2.read_secret_version(path="authentik/bootstrap", mount_point="kv",
                                                            raise_on_deleted_version=True)["data"]["data"]["token"],
        "password": "first"}
    assert in_vault["token"] == store.read("authentik_bootstrap_token")["data"]["value"]
    assert secret_data(cluster, "app") == in_vault

    # a new value in Vault reaches the Secret on the next refresh
    playbook.secrets.kv.v2.create_or_update_secret(path="grafana/admin", secret={"password": "second"},
                                                   mount_point="kv")
    wait_for(lambda: (secret_data(cluster, "app") or {}).get("password") == "second", timeout=120, interval=1)
    assert secret_data(cluster, "app") == {**in_vault, "password": "second"}

    # Least privilege, with the identity External Secrets has: a token of its ServiceAccount logs in to the role
    jwt = cluster.run("create", "token", "external-secrets", "-n", "external-secrets", "--duration", "10m").stdout
    eso = hvac.Client(url=vault_url, verify=str(ca))
    eso.auth.kubernetes.login(role="external-secrets", jwt=jwt.strip())
    assert eso.auth.token.lookup_self()["data"]["policies"] == ["default", "external-secrets"]
    read = eso.secrets.kv.v2.read_secret_version(path="grafana/admin", mount_point="kv", raise_on_deleted_version=True)
    assert read["data"]["data"] == {"password": "second"}
    with pytest.raises(hvac.exceptions.Forbidden):  # a read elsewhere
        eso.secrets.kv.v2.read_secret_version(path="elsewhere/secret", mount_point="kv", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):  # listing what exists
        eso.secrets.kv.v2.list_secrets(path="", mount_point="kv")
    for path in ("grafana/admin", "grafana/new", "elsewhere/secret"):  # any write
        with pytest.raises(hvac.exceptions.Forbidden):
            eso.secrets.kv.v2.create_or_update_secret(path=path, secret={"password": "eso"}, mount_point="kv")
    with pytest.raises(hvac.exceptions.Forbidden):
        eso.sys.create_or_update_acl_policy("external-secrets", 'path "kv/*" { capabilities = ["read"] }')
    assert playbook.secrets.kv.v2.read_secret_version(path="grafana/admin", mount_point="kv",
                                                      raise_on_deleted_version=True)["data"]["data"] == {
        "password": "second"}

    # ...and so does the controller: an ExternalSecret outside the policy is not Ready, with Vault's refusal
    cluster.apply(external_secret("outside", {"x": ("elsewhere/secret", "x")}))
    refused = wait_for(settled(cluster, "externalsecret", "outside", "-n", "apps"), timeout=120, interval=1)
    assert (refused["status"], refused["reason"]) == ("False", "SecretSyncedError"), refused
    assert refused["message"] == "could not get secret data from provider", refused

    messages = wait_for(lambda: warnings(cluster, "outside", "-n", "apps"), timeout=60, interval=1)
    assert any("Code: 403" in message and "permission denied" in message for message in messages), messages
    assert secret_data(cluster, "outside") is None

    # the role is External Secrets' service account's alone: a store logging in as another one is refused
    cluster.run("create", "serviceaccount", "app", "-n", "apps")
    other = cluster_secret_store(vault_url, name="other-identity")
    other["spec"]["provider"]["vault"]["auth"]["kubernetes"]["serviceAccountRef"] = {"name": "app", "namespace": "apps"}
    cluster.apply(other)
    not_ready = wait_for(settled(cluster, "clustersecretstore", "other-identity"), timeout=120, interval=1)
    assert (not_ready["status"], not_ready["reason"]) == ("False", "InvalidProviderConfig"), not_ready
    messages = wait_for(lambda: warnings(cluster, "other-identity", "-A"), timeout=60, interval=1)
    assert any("Code: 403" in message and "service account name not authorized" in message
               for message in messages), messages

    # uninstalled: the controller stops and the component waits again
    cluster.run("delete", "deployment", "external-secrets", "-n", "external-secrets")
    wait_for(lambda: "(no Deployment external-secrets/external-secrets)" in detail(lab), 60, 1)
    lab.run("down")
    assert lab.processes() == []
    for output in lab.outputs:  # no value from Vault on the lab's output
        assert "second" not in output and in_vault["token"] not in output


def test_controller_args_are_the_charts_with_the_labs_address(tmp_path):
    """The command line is the chart's container args, the metrics address made the component's own and leader
    election (chart value leaderElect) dropped: it needs the pod's service-account namespace file."""
    from turnkey_lab.components.external_secrets import ExternalSecrets
    from turnkey_lab.state import Lab

    tools = built_tools("TURNKEY_HELM", "TURNKEY_LAB_CHARTS")
    objects = chart_objects(tools, tmp_path, leaderElect="true")
    deployments = [doc for doc in objects if doc["kind"] == "Deployment"]
    assert [doc["metadata"]["name"] for doc in deployments] == ["external-secrets"]  # no webhook, no cert controller
    assert {doc["kind"] for doc in objects} >= {"CustomResourceDefinition", "ServiceAccount", "ClusterRole"}
    args = ExternalSecrets(Lab.at(tmp_path / "state", NET)).args(deployments[0])
    assert args == ["--concurrent=1", "--loglevel=info", "--zap-time-encoding=epoch",
                    "--metrics-addr=%s.0.14:8080" % NET]


def test_the_build_links_the_providers_used_and_no_cloud_sdk():
    """tools/build trims External Secrets to the Vault and Kubernetes providers (docs/tools.md): the binary's
    build information names Vault's client and the module at its pin, and none of the cloud SDKs upstream links."""
    binary = built_tools("TURNKEY_EXTERNAL_SECRETS")["TURNKEY_EXTERNAL_SECRETS"]
    go = shutil.which("go") or "/usr/local/go/bin/go"
    done = subprocess.run([go, "version", "-m", binary], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    modules = {line.split()[1] for line in done.stdout.splitlines() if line.strip().startswith(("mod", "dep"))}
    assert re.search(r"^\s*mod\s+github\.com/external-secrets/external-secrets\s+v0\.16\.2\s", done.stdout, re.M)
    assert {"github.com/hashicorp/vault/api", "github.com/hashicorp/vault/api/auth/kubernetes"} <= modules
    dropped = [module for module in modules if module.startswith((
        "cloud.google.com/", "github.com/Azure/", "github.com/oracle/", "github.com/IBM/", "github.com/aliyun/",
        "github.com/yandex-cloud/", "github.com/1password/", "github.com/akeylesslabs/", "github.com/DelineaXPM/",
        "github.com/aws/aws-sdk-go-v2"))]
    assert dropped == []
