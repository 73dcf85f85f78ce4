"""A sealed-secrets key rotation in layer 00 does not break the running cluster: role sealed_secrets_key keeps
every key in kube-system, one Secret per key labelled active (as the controller's own rotation keeps them),
and a rebuilt cluster gets the old keys back from the store. Against the real kube-apiserver (conftest)."""

from __future__ import annotations

import base64
import subprocess

import yaml

from tests.integration.cluster.test_cilium_and_sealed_key import key_id, sealed_key_secrets
from tests.playbook_runner import TEST_VAULT_PASSWORD, copy_inventory, lab_env, recap, run_playbook
from tests.store_access import open_store

PREFIX = "sealed-secrets-key-turnkey-"


def playbooks(tmp_path, kubeconfig):
    """Layer 00's keypair task (rotate when asked) and the role the way layer 01 includes it."""
    keypair = tmp_path / "keypair.yml"
    keypair.write_text(yaml.safe_dump([{"name": "layer 00 keypair", "hosts": "localhost", "gather_facts": False,
                                        "tasks": [{"name": "keypair", "turnkey.cluster.persistent_secret": {
                                            "name": "sealed_secrets", "type": "sealed_secrets_keypair",
                                            "store_path": "{{ secrets_store.path }}",
                                            "vault_password_file": "{{ secrets_store.vault_password_file }}",
                                            "rotate": "{{ rotate | default(false) | bool }}"}}]}]))
    role = tmp_path / "role.yml"
    role.write_text(yaml.safe_dump([{"name": "key", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Key", "ansible.builtin.include_role": {"name": "turnkey.cluster.sealed_secrets_key"},
         "vars": {"sealed_secrets_key_kubeconfig": str(kubeconfig)}}]}]))
    return keypair, role


def key_of(secret):
    return base64.b64decode(secret["data"]["tls.key"]).decode()


def test_rotation_keeps_the_old_key_active_in_the_cluster_and_in_rebuilds(tmp_path, control_plane):
    kubeconfig, found = control_plane
    inventory = copy_inventory(tmp_path, "lab")
    env = lab_env(tmp_path)
    keypair, role = playbooks(tmp_path, kubeconfig)
    store = open_store(inventory / "secrets", TEST_VAULT_PASSWORD)

    assert run_playbook("-i", str(inventory), playbook=str(keypair), env=env).returncode == 0
    first = run_playbook("-i", str(inventory), playbook=str(role), env=env)
    assert first.returncode == 0, first.stdout[-3000:]
    old = store.read("sealed_secrets")["data"]
    old_name = PREFIX + key_id(old["certificate"])[:16]
    before = sealed_key_secrets(found, kubeconfig)
    assert list(before) == [old_name] and key_of(before[old_name]) == old["private_key"]

    rotated = run_playbook("-i", str(inventory), "-e", "rotate=true", playbook=str(keypair), env=env)
    assert rotated.returncode == 0, rotated.stdout[-3000:]
    new = store.read("sealed_secrets")["data"]
    assert new["private_key"] != old["private_key"]
    assert new["retired_keys"] == [{"private_key": old["private_key"], "certificate": old["certificate"]}]

    applied = run_playbook("-i", str(inventory), "--diff", playbook=str(role), env=env)
    assert applied.returncode == 0, applied.stdout[-3000:]
    assert recap(applied.stdout)["localhost"]["changed"] == 1
    new_name = PREFIX + key_id(new["certificate"])[:16]
    after = sealed_key_secrets(found, kubeconfig)
    assert sorted(after) == sorted([old_name, new_name])
    # The old key's Secret is untouched (same object, same key); the new key is there beside it, both active.
    assert after[old_name]["metadata"]["resourceVersion"] == before[old_name]["metadata"]["resourceVersion"]
    assert key_of(after[old_name]) == old["private_key"] and key_of(after[new_name]) == new["private_key"]
    assert base64.b64decode(after[new_name]["data"]["tls.crt"]).decode() == new["certificate"]
    for secret in after.values():
        assert secret["type"] == "kubernetes.io/tls"
        assert secret["metadata"]["labels"]["sealedsecrets.bitnami.com/sealed-secrets-key"] == "active"
    for text in (old["private_key"], new["private_key"]):
        body = [line for line in text.splitlines() if "-----" not in line]
        assert not any(line in applied.stdout for line in body[:3]), "a private key was printed"

    again = run_playbook("-i", str(inventory), playbook=str(role), env=env)
    assert again.returncode == 0 and recap(again.stdout)["localhost"]["changed"] == 0, again.stdout[-3000:]
    check = run_playbook("-i", str(inventory), "--check", "--diff", playbook=str(role), env=env)
    assert check.returncode == 0 and recap(check.stdout)["localhost"]["changed"] == 0, check.stdout[-3000:]

    # A rebuilt cluster: both keys come back from the store, the old one first.
    subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), "delete", "secret", "-n",
                    "kube-system", old_name, new_name], check=True, capture_output=True)
    rebuilt = run_playbook("-i", str(inventory), playbook=str(role), env=env)
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:]
    restored = sealed_key_secrets(found, kubeconfig)
    assert sorted(restored) == sorted([old_name, new_name])
    assert key_of(restored[old_name]) == old["private_key"] and key_of(restored[new_name]) == new["private_key"]
    versions = {name: int(secret["metadata"]["resourceVersion"]) for name, secret in restored.items()}
    assert versions[old_name] < versions[new_name]  # written in that order: the newest key is the newest Secret
