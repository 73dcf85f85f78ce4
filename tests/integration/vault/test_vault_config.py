"""Role vault_config against a REAL OpenBao server (conftest), no mocks: initialised exactly once with the keys
in the store, unsealed after a restart, a new Vault after a teardown initialised again with the old keys kept in
the store's backup, no root token live after any run, check mode changing nothing, and a sealed or unreachable
Vault failing with the fix named. Ordered steps on one server (tests/conftest.py `incremental`)."""

from __future__ import annotations

import concurrent.futures
import glob
import json

import hvac.exceptions
import pytest
import yaml

from tests.integration.vault.conftest import playbook_client, root_tokens, store_of
from tests.playbook_runner import TEST_VAULT_PASSWORD, copy_inventory, lab_env, recap, run_playbook
from tests.store_access import open_store

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]


def write_playbooks(folder, bao):
    """Layer 00's application tokens (the spec's and those it implies, as role persistent_secrets makes them), the
    role as layer 02 includes it, and one module alone."""
    layer00 = folder / "layer00.yml"
    layer00.write_text(yaml.safe_dump([{"name": "layer 00", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "token", "turnkey.cluster.persistent_secret": {
            "name": "{{ item.name }}", "type": "token", "length": "{{ item.length | default(64) }}",
            "store_path": "{{ secrets_store.path }}", "vault_password_file": "{{ secrets_store.vault_password_file }}"},
         "loop": "{{ (sso_apps, sso_users, authentik, dns)"
                 " | turnkey.cluster.sso_secrets('store', secrets_store.tokens) }}"}
    ]}]))
    role = folder / "vault.yml"
    role.write_text(yaml.safe_dump([{"name": "layer 02 Vault", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Vault as code", "ansible.builtin.include_role": {"name": "turnkey.cluster.vault_config"},
         "vars": {"vault_config_kubernetes_host": "https://127.99.0.1:6443",
                  "vault_config_kubernetes_ca_cert": "{{ lookup('ansible.builtin.file', '%s') }}" % bao.ca}}]}]))
    module = folder / "policy.yml"
    module.write_text(yaml.safe_dump([{"name": "one module", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "policy", "turnkey.cluster.vault_policy": {
            "url": bao.url, "ca_path": bao.ca, "token": "not-a-token", "name": "anything",
            "policy": 'path "kv/data/x/*" { capabilities = ["read"] }'}}]}]))
    return layer00, role, module


@pytest.fixture(scope="class")
def world(bao, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vault-config")
    inventory = copy_inventory(folder, "lab", {"set": {"vault": {"address": bao.url, "ca_path": bao.ca,
                                                                 "key_shares": 3, "key_threshold": 2}}})
    env = lab_env(folder)
    layer00, role, module = write_playbooks(folder, bao)
    made = run_playbook("-i", str(inventory), playbook=str(layer00), env=env)
    assert made.returncode == 0, made.stdout[-3000:]
    return {"bao": bao, "inventory": inventory, "env": env, "role": role, "module": module, "seen": {}}


def run(world, *args, playbook=None):
    return run_playbook("-i", str(world["inventory"]), *args, playbook=str(playbook or world["role"]), env=world["env"])


def changed(result):
    assert result.returncode == 0, result.stdout[-4000:]
    return recap(result.stdout)["localhost"]["changed"]


def assert_no_secret_printed(world, *outputs):
    store = store_of(world["inventory"])
    secrets = []
    for name, field in (("vault_keys", "root_token"), ("vault_playbook_login", "secret_id"),
                        ("authentik_bootstrap_token", "value")):
        record = store.read(name)
        if record:
            secrets.append(record["data"][field])
    keys = (store.read("vault_keys") or {}).get("data", {}).get("unseal_keys", "").split()
    for output in outputs:
        for secret in secrets + keys:
            assert secret not in output, "a secret was printed"


@pytest.mark.incremental
class TestVaultConfig:
    def test_check_mode_on_a_fresh_vault_changes_nothing(self, world):
        result = run(world, "--check", "--diff")
        assert changed(result) >= 1  # it says Vault would be initialised
        assert "cannot be read in check mode" in result.stdout
        assert world["bao"].status()["initialized"] is False
        assert store_of(world["inventory"]).read("vault_keys") is None

    def test_first_run_initialises_once_and_revokes_the_root_token(self, world):
        result = run(world, "--diff")
        assert changed(result) >= 5, result.stdout[-4000:]
        bao, store = world["bao"], store_of(world["inventory"])
        assert bao.status()["initialized"] is True and bao.status()["sealed"] is False
        keys = store.read("vault_keys")
        assert keys["type"] == "provided" and len(keys["data"]["unseal_keys"].split()) == 3
        assert keys["data"]["secret_threshold"] == "2"
        # The root token initialisation made (kept in the store) is revoked; none with the root policy is live.
        with pytest.raises(hvac.exceptions.Forbidden):
            bao.client(keys["data"]["root_token"]).auth.token.lookup_self()
        vault = playbook_client(bao, world["inventory"])
        assert root_tokens(vault) == []
        assert vault.auth.token.lookup_self()["data"]["policies"] == ["default", "turnkey-playbook"]
        # KV v2 at kv/, the application secret equal to the store's, the least-privilege policy for ESO.
        assert bao.client(vault.token).sys.list_mounted_secrets_engines()["kv/"]["options"]["version"] == "2"
        secret = vault.secrets.kv.v2.read_secret_version(path="authentik/bootstrap", mount_point="kv",
                                                         raise_on_deleted_version=True)
        assert secret["data"]["data"] == {"token": store.read("authentik_bootstrap_token")["data"]["value"]}
        policy = vault.sys.read_acl_policy("external-secrets")["data"]["policy"]
        assert 'path "kv/data/authentik/*"' in policy and 'path "kv/data/grafana/*"' in policy
        capabilities = [line.strip() for line in policy.splitlines() if "capabilities" in line]
        assert capabilities and set(capabilities) == {'capabilities = ["read"]'}
        assert_no_secret_printed(world, result.stdout, result.stderr)
        world["seen"]["keys"] = keys["data"]["unseal_keys"]

    def test_rerun_and_check_diff_change_nothing(self, world):
        version = playbook_client(world["bao"], world["inventory"]).secrets.kv.v2.read_secret_version(
            path="authentik/bootstrap", mount_point="kv", raise_on_deleted_version=True)["data"]["metadata"]["version"]
        assert changed(run(world)) == 0
        check = run(world, "--check", "--diff")
        assert changed(check) == 0
        vault = playbook_client(world["bao"], world["inventory"])
        assert vault.secrets.kv.v2.read_secret_version(path="authentik/bootstrap", mount_point="kv",
                                                       raise_on_deleted_version=True)["data"]["metadata"]["version"] \
            == version
        assert store_of(world["inventory"]).read("vault_keys")["data"]["unseal_keys"] == world["seen"]["keys"]
        assert root_tokens(vault) == []

    def test_check_diff_shows_a_spec_change_and_writes_nothing(self, world):
        apps = json.dumps({"sso_apps": [{"name": "grafana", "redirect_uris": ["https://g.lab.turnkey.test/cb"]},
                                        {"name": "matrix", "redirect_uris": ["https://m.lab.turnkey.test/cb"]}]})
        check = run(world, "--check", "--diff", "-e", apps)
        # The policy, and kv/sso/matrix: layer 00 has not generated matrix's client secret yet, which check mode
        # shows as a change instead of failing.
        assert changed(check) == 2, check.stdout[-4000:]
        assert '+path "kv/data/matrix/*" {' in check.stdout
        vault = playbook_client(world["bao"], world["inventory"])
        assert "matrix" not in vault.sys.read_acl_policy("external-secrets")["data"]["policy"]

    def test_a_sealed_vault_fails_a_module_naming_the_fix(self, world):
        bao = world["bao"]
        bao.stop()
        bao.start()
        assert bao.status()["sealed"] is True
        result = run(world, playbook=world["module"])
        assert result.returncode != 0
        assert "Vault at %s is sealed. Fix: run role turnkey.cluster.vault_config" % bao.url in result.stdout

    def test_the_role_unseals_after_a_restart_with_the_stored_keys(self, world):
        result = run(world, "--diff")
        assert changed(result) == 1, result.stdout[-4000:]  # the unseal, nothing else
        assert world["bao"].status()["sealed"] is False
        assert changed(run(world)) == 0

    def test_an_unreachable_vault_fails_before_anything_naming_the_fix(self, world):
        bao = world["bao"]
        bao.stop()
        try:
            result = run(world)
        finally:
            bao.start()
        assert result.returncode != 0
        assert "Vault at %s is unreachable" % bao.url in result.stdout
        assert "Fix: check that Vault runs and that vault.address" in result.stdout

    def test_a_new_vault_after_teardown_is_initialised_again_keeping_the_old_keys(self, world):
        bao, inventory = world["bao"], world["inventory"]
        before = store_of(inventory).read("authentik_bootstrap_token")["data"]["value"]
        bao.wipe()
        bao.start()
        assert bao.status()["initialized"] is False
        # Two runs at once (the store's lock): one initialises and makes the login, the other uses them.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda _index: run(world, "--diff"), range(2)))
        for other in runs:
            assert other.returncode == 0, other.stdout[-4000:]
        result = max(runs, key=changed)
        assert changed(result) >= 5, result.stdout[-4000:]
        # the run that initialised says so (under load it need not be the one that changed the most)
        said = [run_ for run_ in runs if "initialised again; the previous keys are kept in"
                in (run_.stdout + run_.stderr).replace("\n", " ")]
        assert len(said) == 1, [run_.stdout[-2000:] for run_ in runs]
        store = store_of(inventory)
        keys = store.read("vault_keys")
        assert keys["data"]["unseal_keys"] != world["seen"]["keys"]
        backups = [open_store(inventory / "secrets", TEST_VAULT_PASSWORD).read_file(path)
                   for path in sorted(glob.glob(str(inventory / "secrets" / ".backup" / "vault_keys.*.vault.yml")))]
        assert [backup["data"]["unseal_keys"] for backup in backups] == [world["seen"]["keys"]]
        vault = playbook_client(bao, inventory)
        assert root_tokens(vault) == []
        # The application's credential is the same one as before the teardown: it came from the store.
        assert vault.secrets.kv.v2.read_secret_version(path="authentik/bootstrap", mount_point="kv",
                                                       raise_on_deleted_version=True)["data"]["data"] \
            == {"token": before}
        assert_no_secret_printed(world, result.stdout, result.stderr)
        assert changed(run(world)) == 0
