"""No silent skips outside check mode: layer 01's Talos steps, run alone with `--tags talos_cluster` on a
fresh state folder (nothing rendered, no kubeconfig), fail and name what is missing and which step makes
it; only check mode on a cluster not built yet skips, and says so. Through the real ansible-playbook, on
a copy of the lab inventory; no lab or node is needed (the failures come before any node is asked)."""

from __future__ import annotations

import pytest

from tests.playbook_runner import copy_inventory, failed_results, lab_env, recap, run_playbook

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

LAYER = "playbooks/01-infrastructure.yml"
CLUSTER = {"cp1", "cp2", "cp3", "worker1", "worker2", "worker3", "hcloud-worker1"}


@pytest.fixture
def fresh(tmp_path):
    inventory = copy_inventory(tmp_path, "lab")
    # validation only checks that credentials are set; nothing here talks to Proxmox or Hetzner
    env = {**lab_env(tmp_path), "PROXMOX_TOKEN_ID": "turnkey@pve!test", "PROXMOX_TOKEN_SECRET": "unused",
           "HCLOUD_TOKEN": "u" * 64}
    return inventory, env, tmp_path / "state"


def test_missing_machine_configs_fail_by_name(fresh):
    inventory, env, state = fresh
    run = run_playbook("-i", str(inventory), "--tags", "talos_cluster", playbook=LAYER, env=env, json_output=True)
    assert run.returncode != 0, run.stdout[-3000:]
    failures = {host: result["msg"] for _task, host, result in failed_results(run.stdout)}
    assert set(failures) == CLUSTER, failures
    message = failures["cp1"]
    assert message.startswith("%s is missing" % (state / "talos" / "cp1.yaml")), message
    assert '"01 infrastructure | Talos machine configs"' in message and "--tags infrastructure" in message


def test_missing_kubeconfig_fails_by_name(fresh):
    # only the play after the cluster's (its hosts limited away): the kubeconfig it needs was never fetched
    inventory, env, state = fresh
    run = run_playbook("-i", str(inventory), "--tags", "talos_cluster", "--limit", "localhost", playbook=LAYER,
                       env=env, json_output=True)
    assert run.returncode != 0, run.stdout[-3000:]
    [(task, host, result)] = failed_results(run.stdout)
    assert (task, host) == ("Stop when the admin kubeconfig is missing", "localhost")
    assert result["msg"].startswith("%s is missing" % (state / "kubeconfig")), result["msg"]
    assert '"01 infrastructure | Talos cluster"' in result["msg"]


def test_check_mode_on_a_cluster_not_built_skips_and_says_so(fresh):
    inventory, env, state = fresh
    run = run_playbook("-i", str(inventory), "--tags", "talos_cluster", "--check", playbook=LAYER, env=env)
    assert run.returncode == 0, run.stdout[-3000:]
    assert all(counts["failed"] == 0 and counts["changed"] == 0 for counts in recap(run.stdout).values())
    assert "check mode: %s does not exist yet" % (state / "talos" / "cp1.yaml") in run.stdout
    assert "check mode: %s does not exist yet" % (state / "kubeconfig") in run.stdout
