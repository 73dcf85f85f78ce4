"""Layer 00 through its real playbook: generated once, never regenerated, never printed."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.playbook_runner import TEST_VAULT_PASSWORD, copy_inventory, lab_env, recap, task_results
from tests.playbook_runner import run_playbook as run_any_playbook
from tests.store_access import open_store
from tests.tools import built_tools

NAMES = ("sealed_secrets", "flux_deploy_key", "authentik_bootstrap_token", "talos_secrets")
# What the lab spec's authentik, dns, sso_apps and sso_users imply (filter turnkey.cluster.sso_secrets), not listed
# in secrets_store.tokens: layer 00 generates them too.
DERIVED = ("authentik_bootstrap_password", "authentik_secret_key", "authentik_postgres_password", "pdns_api_key",
           "acme_dns01_tsig",
           "sso_client_secret_grafana", "sso_client_secret_vault", "sso_password_turnkey_admin",
           "sso_password_turnkey_viewer")
# The store on its own: no lab runs here, and with Proxmox nodes layer 00 would also make the Proxmox CSI
# token over the API (tests/integration/proxmox/test_proxmox_access.py covers that on a lab). So the one
# control plane is a Hetzner server and the Proxmox nodes are gone.
STORE_ONLY = {"remove_hosts": ["cp2", "cp3", "worker1", "worker2", "worker3"],
              "move": {"cp1": ["proxmox_nodes", "hetzner_nodes"]}, "hosts": {"cp1": {"node_ip": "127.3.0.11"}}}


def run_playbook(*args, **kwargs):
    """Layer 00's own playbook, as site.yml imports it: the later layers' validation asks for a running lab."""
    return run_any_playbook(*args, playbook="playbooks/00-persistent-auth.yml", **kwargs)


@pytest.fixture
def lab_inventory(tmp_path):
    return copy_inventory(tmp_path, "lab", STORE_ONLY), lab_env(tmp_path)


def digests(store_dir):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(store_dir.glob("*.vault.yml"))}


def secret_fragments(store):
    """Pieces of every secret value that must never reach the output."""
    fragments = []
    for name in NAMES + DERIVED:
        data = store.read(name)["data"]
        for key, value in data.items():
            if key in ("certificate", "public_key"):
                continue
            body = "".join(line for line in value.splitlines() if "-----" not in line)
            fragments += [body[i:i + 24] for i in range(0, len(body) - 24, 200)] or [value]
    return fragments


def test_generated_once_rerun_unchanged_and_never_printed(lab_inventory):
    inventory, env = lab_inventory
    first = run_playbook("-i", str(inventory), "-vvv", env=env)
    assert first.returncode == 0, first.stdout[-4000:]
    assert recap(first.stdout)["localhost"]["changed"] == 1
    store_dir = inventory / "secrets"
    assert stat.S_IMODE(store_dir.stat().st_mode) == 0o700
    files = sorted(store_dir.glob("*.vault.yml"))
    assert [path.name for path in files] == sorted(name + ".vault.yml" for name in NAMES + DERIVED)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")

    store = open_store(store_dir, TEST_VAULT_PASSWORD)
    output = first.stdout + first.stderr
    fragments = secret_fragments(store)
    assert len(fragments) > 10
    leaked = [fragment for fragment in fragments if fragment in output]
    assert leaked == [], "secret material printed with -vvv"
    assert TEST_VAULT_PASSWORD not in output

    before = digests(store_dir)
    second = run_playbook("-i", str(inventory), "-vvv", env=env)
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second.stdout)["localhost"]["changed"] == 0
    assert digests(store_dir) == before
    assert not (store_dir / ".backup").exists()
    assert [fragment for fragment in fragments if fragment in second.stdout + second.stderr] == []


def test_secret_shapes(lab_inventory):
    inventory, env = lab_inventory
    assert run_playbook("-i", str(inventory), "--tags", "persistent_auth", env=env).returncode == 0
    store = open_store(inventory / "secrets", TEST_VAULT_PASSWORD)

    sealed = store.read("sealed_secrets")
    key = serialization.load_pem_private_key(sealed["data"]["private_key"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 4096
    certificate = x509.load_pem_x509_certificate(sealed["data"]["certificate"].encode())
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()
    assert certificate.subject == certificate.issuer
    validity = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert 3649 <= validity.days <= 3651

    flux = store.read("flux_deploy_key")
    private = serialization.load_ssh_private_key(flux["data"]["private_key"].encode(), password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    assert flux["data"]["public_key"].startswith("ssh-ed25519 ")
    assert flux["data"]["public_key"].endswith(" flux@lab")

    token = store.read("authentik_bootstrap_token")["data"]["value"]
    assert len(token) == 64 and token.isalnum()
    lengths = {name: len(store.read(name)["data"]["value"]) for name in DERIVED}
    assert lengths == {**dict.fromkeys(DERIVED, 32), "authentik_secret_key": 64, "sso_client_secret_grafana": 64,
                       "sso_client_secret_vault": 64, "acme_dns01_tsig": 64}
    # The ACME DNS-01 TSIG secret is used as base64 as it is (docs/dns.md): letters and digits, length a multiple of 4.
    tsig = store.read("acme_dns01_tsig")["data"]["value"]
    assert tsig.isalnum() and base64.b64decode(tsig, validate=True)
    assert {record["version"] for record in map(store.read, NAMES + DERIVED)} == {1}


def test_check_mode_reports_and_writes_nothing(lab_inventory):
    inventory, env = lab_inventory
    run = run_playbook("-i", str(inventory), "--check", "--diff", env=env)
    assert run.returncode == 0, run.stdout[-4000:]
    assert recap(run.stdout)["localhost"]["changed"] == 1
    assert "+sealed_secrets_keypair version 1 (create, value not shown)" in run.stdout
    assert not (inventory / "secrets").exists()


def test_named_rotation_keeps_a_backup_and_touches_nothing_else(lab_inventory):
    inventory, env = lab_inventory
    assert run_playbook("-i", str(inventory), env=env).returncode == 0
    store = open_store(inventory / "secrets", TEST_VAULT_PASSWORD)
    old_token = store.read("authentik_bootstrap_token")
    others = {name: (inventory / "secrets" / (name + ".vault.yml")).read_bytes() for name in NAMES[:2]}

    rotate = '{"persistent_secrets_rotate": ["authentik_bootstrap_token"]}'
    check = run_playbook("-i", str(inventory), "--check", "-e", rotate, env=env)
    assert recap(check.stdout)["localhost"]["changed"] == 1
    assert store.read("authentik_bootstrap_token") == old_token

    run = run_playbook("-i", str(inventory), "-e", rotate, env=env)
    assert run.returncode == 0, run.stdout[-4000:]
    new_token = store.read("authentik_bootstrap_token")
    assert new_token["data"]["value"] != old_token["data"]["value"]
    assert new_token["version"] == 2 and new_token["created"] == old_token["created"]
    backups = list((inventory / "secrets" / ".backup").glob("authentik_bootstrap_token.*.vault.yml"))
    assert len(backups) == 1 and stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    assert store.read_file(backups[0]) == old_token
    for name, blob in others.items():
        assert (inventory / "secrets" / (name + ".vault.yml")).read_bytes() == blob
    assert old_token["data"]["value"] not in run.stdout
    assert new_token["data"]["value"] not in run.stdout


def test_certificate_renewal_keeps_the_key(lab_inventory):
    inventory, env = lab_inventory
    assert run_playbook("-i", str(inventory), env=env).returncode == 0
    store = open_store(inventory / "secrets", TEST_VAULT_PASSWORD)
    before = store.read("sealed_secrets")
    run = run_playbook("-i", str(inventory), "-e", '{"persistent_secrets_renew": ["sealed_secrets"]}', env=env)
    assert run.returncode == 0, run.stdout[-4000:]
    after = store.read("sealed_secrets")
    assert after["data"]["private_key"] == before["data"]["private_key"]
    assert after["data"]["certificate"] != before["data"]["certificate"]
    assert after["version"] == 2


def test_wrong_password_fails_clearly_and_overwrites_nothing(lab_inventory, tmp_path):
    inventory, env = lab_inventory
    assert run_playbook("-i", str(inventory), env=env).returncode == 0
    before = digests(inventory / "secrets")
    wrong = lab_env(tmp_path / "other", password="not-the-password")
    run = run_playbook("-i", str(inventory), env=wrong)
    assert run.returncode != 0
    assert "cannot decrypt" in run.stdout and "right vault password" in run.stdout
    assert digests(inventory / "secrets") == before


def test_provided_secret_is_written_once_and_only_rotated_when_asked(tmp_path):
    """Type provided: a secret an API issued is kept as handed in; a rerun with another value changes nothing."""
    store_dir = tmp_path / "secrets"
    env = {"TURNKEY_VAULT_PASSWORD": TEST_VAULT_PASSWORD, "TURNKEY_STATE_DIR": str(tmp_path / "state")}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                         "      ansible_python_interpreter: \"{{ ansible_playbook_python }}\"\n")

    def put(value=None, rotate=False, *flags):
        options = {"name": "issued", "type": "provided", "store_path": str(store_dir), "rotate": rotate,
                   "vault_password_env": "TURNKEY_VAULT_PASSWORD"}
        if value is not None:
            options["value"] = value
        playbook = tmp_path / "provided.yml"
        playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "provided", "turnkey.cluster.persistent_secret": options}]}]))
        run = run_any_playbook("-i", str(inventory), *flags, playbook=str(playbook), env=env, json_output=True)
        return run, task_results(run.stdout)[-1][2]

    run, checked = put(None, False, "--check")
    assert run.returncode == 0 and checked["changed"] and checked["created"] and not store_dir.exists()
    run, refused = put()
    assert run.returncode != 0 and "no value was given" in refused["msg"] and not store_dir.exists()
    first = {"token_id": "u@pve!t", "secret": "first-secret-value"}
    run, created = put(first)
    assert run.returncode == 0 and created["changed"] and created["public"]["fields"] == ["secret", "token_id"]
    assert "first-secret-value" not in run.stdout
    store = open_store(store_dir, TEST_VAULT_PASSWORD)
    assert store.read("issued")["data"] == first
    before = digests(store_dir)
    run, again = put({"token_id": "u@pve!t", "secret": "another-value"})
    assert run.returncode == 0 and not again["changed"] and digests(store_dir) == before
    run, rotated = put("rotated-value", True)
    assert run.returncode == 0 and rotated["changed"] and rotated["rotated"] and "rotated-value" not in run.stdout
    assert store.read("issued")["data"] == {"value": "rotated-value"} and store.read("issued")["version"] == 2
    assert store.read_file(rotated["backup_file"])["data"] == first
    assert stat.S_IMODE(os.stat(rotated["backup_file"]).st_mode) == 0o600


def test_talosctl_from_the_role_variable(lab_inventory, tmp_path):
    """persistent_secrets_talosctl names the talosctl that makes the bundle; the tool cache is only a default."""
    inventory, env = lab_inventory
    marker = tmp_path / "called"
    wrapper = tmp_path / "my-talosctl"
    talosctl = built_tools("TURNKEY_TALOSCTL")["TURNKEY_TALOSCTL"]
    wrapper.write_text("#!/bin/sh\ntouch %s\nexec %s \"$@\"\n" % (marker, talosctl))
    wrapper.chmod(0o700)
    run = run_playbook("-i", str(inventory), "-e", "persistent_secrets_talosctl=%s" % wrapper, env=env)
    assert run.returncode == 0, run.stdout[-3000:]
    assert marker.exists()
    assert open_store(inventory / "secrets", TEST_VAULT_PASSWORD).read("talos_secrets")["version"] == 1
