"""inventory/lab's Vault: the lab's real OpenBao (`lab up --components openbao`), which the lab initialised
itself, is adopted from its credentials.json - the keys kept in the store, the lab's root token revoked - and
adopted again after `lab reset` made a new one, the earlier keys kept in the store's backup."""

from __future__ import annotations

import glob
import json
import types

import hvac
import hvac.exceptions
import pytest
import yaml

from tests.integration.vault.test_vault_config import write_playbooks
from tests.playbook_runner import copy_inventory, recap, run_playbook
from tests.store_access import open_store

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]

NET = "127.99"  # the lab's OpenBao on 127.99.0.2; the other Vault tests use 127.99.0.1 and .0.3


def test_the_lab_inventory_adopts_the_labs_openbao_and_again_after_a_reset(make_lab, tmp_path):
    handle = make_lab(NET)
    handle.run("up", "--profile", "fast", "--components", "openbao")
    inventory = copy_inventory(tmp_path, "lab")
    env = {"TURNKEY_LAB_DIR": str(handle.root), "TURNKEY_STATE_DIR": str(tmp_path / "state")}
    url, ca = "https://%s.0.2:8200" % NET, str(handle.root / "pki" / "ca.pem")
    layer00, _role, _module = write_playbooks(tmp_path, types.SimpleNamespace(url=url, ca=ca))
    role = tmp_path / "lab-vault.yml"
    role.write_text(yaml.safe_dump([{"name": "layer 02 Vault", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Vault as code", "ansible.builtin.include_role": {"name": "turnkey.cluster.vault_config"},
         "vars": {"vault_config_kubernetes_host": "https://127.2.3.1:6443",
                  "vault_config_kubernetes_ca_cert": "{{ lookup('ansible.builtin.file', '%s') }}" % ca}}]}]))
    assert run_playbook("-i", str(inventory), playbook=str(layer00), env=env).returncode == 0
    password = (handle.root / "vault-password").read_text().strip()

    def converge():
        result = run_playbook("-i", str(inventory), playbook=str(role), env=env)
        assert result.returncode == 0, result.stdout[-4000:]
        return recap(result.stdout)["localhost"]["changed"]

    def lab_openbao():
        return json.loads((handle.root / "credentials.json").read_text())["openbao"]

    first = lab_openbao()
    check = run_playbook("-i", str(inventory), "--check", "--diff", playbook=str(role), env=env)
    assert check.returncode == 0, check.stdout[-4000:]
    assert "store: the adopted Vault's keys (values not shown)" in check.stdout
    assert not (inventory / "secrets" / "vault_keys.vault.yml").exists()
    assert converge() >= 5
    store = open_store(inventory / "secrets", password)
    assert store.read("vault_keys")["data"]["unseal_keys"] == " ".join(first["unseal_keys"])
    assert store.read("vault_keys")["data"]["origin"] == "adopt"
    with pytest.raises(hvac.exceptions.Forbidden):  # the lab's root token no longer opens anything
        hvac.Client(url=url, verify=ca, token=first["root_token"]).auth.token.lookup_self()
    assert converge() == 0

    handle.run("reset")
    handle.run("up", "--profile", "fast", "--components", "openbao")
    second = lab_openbao()
    assert second["unseal_keys"] != first["unseal_keys"]
    assert converge() >= 5
    assert store.read("vault_keys")["data"]["unseal_keys"] == " ".join(second["unseal_keys"])
    backups = [store.read_file(path)["data"]["unseal_keys"]
               for path in sorted(glob.glob(str(inventory / "secrets" / ".backup" / "vault_keys.*.vault.yml")))]
    assert backups == [" ".join(first["unseal_keys"])]
    login = store.read("vault_playbook_login")["data"]
    vault = hvac.Client(url=url, verify=ca)
    vault.auth.approle.login(role_id=login["role_id"], secret_id=login["secret_id"], mount_point=login["mount"])
    token = store.read("authentik_bootstrap_token")["data"]["value"]
    assert vault.secrets.kv.v2.read_secret_version(path="authentik/bootstrap", mount_point="kv",
                                                   raise_on_deleted_version=True)["data"]["data"] == {"token": token}
    assert converge() == 0
