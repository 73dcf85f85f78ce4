"""The newcomer's path: the lab comes up and site.yml converges on it; the second run changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from tests.playbook_runner import BIN, REPO, copy_inventory, recap, run_playbook

pytestmark = [pytest.mark.e2e, pytest.mark.lab]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """An isolated lab on its own loopback block and state folder, so a developer's lab is untouched."""
    state = tmp_path_factory.mktemp("lab-state")
    env = dict(os.environ, TURNKEY_LAB_DIR=str(state), TURNKEY_LAB_NET="127.90",
               PATH="%s:%s" % (BIN, os.environ["PATH"]))
    up = subprocess.run([str(BIN / "lab"), "up", "--profile", "fast"], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield state
    finally:
        subprocess.run([str(BIN / "lab"), "down"], cwd=REPO, env=env, capture_output=True, timeout=120, check=False)


def digests(folder):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.glob("*.vault.yml"))}


def test_site_converges_on_the_lab_then_changes_nothing(lab, tmp_path):
    inventory = copy_inventory(tmp_path, "lab")
    env = {"TURNKEY_LAB_DIR": str(lab), "TURNKEY_STATE_DIR": str(tmp_path / "state")}

    first = run_playbook("-i", str(inventory), env=env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert recap(first.stdout)["localhost"]["changed"] >= 1
    assert "=== layer 00-persistent-auth ===" in first.stdout
    stored = digests(inventory / "secrets")
    assert set(stored) == {"sealed_secrets.vault.yml", "flux_deploy_key.vault.yml",
                           "authentik_bootstrap_token.vault.yml"}

    second = run_playbook("-i", str(inventory), env=env)
    assert second.returncode == 0, second.stdout[-4000:]
    assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in recap(second.stdout).values())
    assert digests(inventory / "secrets") == stored

    check = run_playbook("-i", str(inventory), "--check", "--diff", env=env)
    assert check.returncode == 0
    assert all(counts["changed"] == 0 for counts in recap(check.stdout).values())
    assert digests(inventory / "secrets") == stored

    report = json.loads((tmp_path / "state" / "runs" / "last.json").read_text())
    assert [layer["name"] for layer in report["layers"]] == ["validation", "00-persistent-auth"]
    assert all(layer["changed"] == 0 and layer["failed"] == 0 for layer in report["layers"])
