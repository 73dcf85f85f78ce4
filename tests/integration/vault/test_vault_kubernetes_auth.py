"""External Secrets' Vault identity, tested, not asserted: role vault_config on a REAL OpenBao with Kubernetes auth
against the REAL kube-apiserver (conftest `control_plane`). A service-account token from the TokenRequest API
logs in through Vault's TokenReview, reads its app's path, and is denied a read elsewhere and any write."""

from __future__ import annotations

import subprocess

import hvac.exceptions
import pytest
import yaml

from tests.integration.vault.conftest import playbook_client, root_tokens, store_of
from tests.integration.vault.test_vault_config import write_playbooks
from tests.playbook_runner import copy_inventory, lab_env, recap, run_playbook

pytestmark = pytest.mark.lab


def kubectl(found, kubeconfig, *args):
    done = subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def service_account_token(found, kubeconfig, namespace, name):
    """A bound token from the TokenRequest API, as the kubelet would mount into the pod."""
    subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), "create", "namespace", namespace],
                   capture_output=True, check=False)
    subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), "-n", namespace, "create",
                    "serviceaccount", name], capture_output=True, check=False)
    return kubectl(found, kubeconfig, "-n", namespace, "create", "token", name, "--duration", "1h")


@pytest.fixture(scope="class")
def setup(bao, control_plane, tmp_path_factory):
    kubeconfig, found = control_plane
    folder = tmp_path_factory.mktemp("vault-kubernetes")
    inventory = copy_inventory(folder, "lab", {"set": {"vault": {"address": bao.url, "ca_path": bao.ca,
                                                                 "key_shares": 1, "key_threshold": 1}}})
    env = lab_env(folder)
    layer00, _role, _module = write_playbooks(folder, bao)
    assert run_playbook("-i", str(inventory), playbook=str(layer00), env=env).returncode == 0
    # Vault reviews tokens with its own service account, bound to system:auth-delegator (as for an external Vault).
    reviewer = service_account_token(found, kubeconfig, "vault", "vault-auth")
    kubectl(found, kubeconfig, "create", "clusterrolebinding", "vault-auth-delegator",
            "--clusterrole=system:auth-delegator", "--serviceaccount=vault:vault-auth")
    role = folder / "vault.yml"
    role.write_text(yaml.safe_dump([{"name": "layer 02 Vault", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Vault as code", "ansible.builtin.include_role": {"name": "turnkey.cluster.vault_config"},
         "vars": {"vault_config_kubeconfig": str(kubeconfig),
                  "vault_config_kubernetes_reviewer_jwt": reviewer}}]}]))
    return {"bao": bao, "inventory": inventory, "env": env, "role": role, "found": found, "kubeconfig": kubeconfig}


def run(setup, *args):
    result = run_playbook("-i", str(setup["inventory"]), *args, playbook=str(setup["role"]), env=setup["env"])
    assert result.returncode == 0, result.stdout[-4000:]
    return recap(result.stdout)["localhost"]["changed"]


def eso_login(setup, name="external-secrets"):
    jwt = service_account_token(setup["found"], setup["kubeconfig"], "external-secrets", name)
    vault = setup["bao"].client()
    vault.auth.kubernetes.login(role="external-secrets", jwt=jwt)
    return vault


@pytest.mark.incremental
class TestKubernetesAuth:
    def test_the_role_configures_kubernetes_auth_from_the_kubeconfig(self, setup):
        assert run(setup) >= 5
        playbook = playbook_client(setup["bao"], setup["inventory"])
        config = playbook.adapter.get("/v1/auth/kubernetes/config")["data"]
        server = yaml.safe_load(setup["kubeconfig"].read_text())["clusters"][0]["cluster"]["server"]
        assert config["kubernetes_host"] == server and config["disable_local_ca_jwt"] is True
        assert config["kubernetes_ca_cert"].startswith("-----BEGIN CERTIFICATE-----")
        # Another app's secret, which External Secrets must not read.
        playbook.secrets.kv.v2.create_or_update_secret(path="elsewhere/secret", secret={"x": "y"}, mount_point="kv")
        assert root_tokens(playbook) == []
        assert run(setup) == 0

    def test_external_secrets_reads_its_paths_only_and_writes_nothing(self, setup):
        vault = eso_login(setup)
        assert vault.auth.token.lookup_self()["data"]["policies"] == ["default", "external-secrets"]
        secret = vault.secrets.kv.v2.read_secret_version(path="authentik/bootstrap", mount_point="kv",
                                                         raise_on_deleted_version=True)
        stored = store_of(setup["inventory"]).read("authentik_bootstrap_token")["data"]["value"]
        assert secret["data"]["data"] == {"token": stored}
        with pytest.raises(hvac.exceptions.Forbidden):
            vault.secrets.kv.v2.read_secret_version(path="elsewhere/secret", mount_point="kv",
                                                    raise_on_deleted_version=True)
        with pytest.raises(hvac.exceptions.Forbidden):
            vault.secrets.kv.v2.create_or_update_secret(path="authentik/bootstrap", secret={"token": "x"},
                                                        mount_point="kv")
        with pytest.raises(hvac.exceptions.Forbidden):
            vault.secrets.kv.v2.create_or_update_secret(path="authentik/new", secret={"a": "b"}, mount_point="kv")
        with pytest.raises(hvac.exceptions.Forbidden):
            vault.sys.create_or_update_acl_policy("external-secrets", 'path "kv/*" { capabilities = ["read"] }')

    def test_a_service_account_not_bound_to_the_role_is_refused(self, setup):
        with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)):
            eso_login(setup, name="someone-else")
