"""Role cilium when helm fails half-way, on a real control plane (the pinned etcd and kube-apiserver).

The failure is made by the API server itself: a ValidatingAdmissionPolicy refuses the `cilium-config`
ConfigMap, so helm's install (or upgrade) stops in the middle and leaves a release whose status is
`failed`, as an etcd timeout under load does (stop 20's CI: `etcdserver: request timed out`). The policy's
message chooses which of the two the role sees: a passing error (`etcdserver: request timed out`) or a refusal.
- A rerun after a failed install or upgrade installs again: it does not take the failed release for done.
- A passing error is tried once more within the run; a refusal fails at once, with the API server's words."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import yaml

from tests.integration.cluster.conftest import cilium_env, kube
from tests.integration.cluster.test_cilium_and_sealed_key import helm_values, write_playbooks
from tests.playbook_runner import copy_inventory, recap, run_playbook

POLICY = "turnkey-test-refuse-cilium-config"
PASSING = "etcdserver: request timed out"
REFUSAL = "refused by the test's admission policy"


def revisions(found, kubeconfig):
    """The release's revisions helm keeps (the role's history_max), oldest first, {number: status}; {} when
    there is no release."""
    done = subprocess.run([found["TURNKEY_HELM"], "--kubeconfig", str(kubeconfig), "history", "cilium", "-n",
                           "kube-system", "-o", "json"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        assert "not found" in done.stderr, done.stderr
        return {}
    return {revision["revision"]: revision["status"] for revision in json.loads(done.stdout)}


def history(found, kubeconfig, after=0):
    """The statuses of the revisions after revision `after`, oldest first."""
    return [status for number, status in sorted(revisions(found, kubeconfig).items()) if number > after]


def deployed_revision(found, kubeconfig, cilium):
    """The number of the release's deployed revision, installing it first when the module's earlier tests left
    none (a test run alone)."""
    if history(found, kubeconfig)[-1:] != ["deployed"]:
        assert cilium().returncode == 0
    return max(revisions(found, kubeconfig))


def configmap_refused(found, kubeconfig):
    probe = kube(found, kubeconfig, "create", "configmap", "cilium-config", "-n", "kube-system", "--dry-run=server",
                 "-o", "name", check=False)
    return "denied request" in probe.stderr


def refuse_cilium_config(found, kubeconfig, message):
    """The policy and its binding; returns once the API server enforces them (its policy cache lags a moment)."""
    documents = [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": POLICY},
         "spec": {"failurePolicy": "Fail",
                  "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                          "operations": ["CREATE", "UPDATE"],
                                                          "resources": ["configmaps"]}]},
                  "validations": [{"expression": "object.metadata.name != 'cilium-config'", "message": message}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": POLICY}, "spec": {"policyName": POLICY, "validationActions": ["Deny"]}},
    ]
    kube(found, kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    deadline = time.monotonic() + 30
    while not configmap_refused(found, kubeconfig):
        assert time.monotonic() < deadline, "the admission policy never took effect"
        time.sleep(0.2)


def allow_cilium_config(found, kubeconfig):
    kube(found, kubeconfig, "delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", POLICY,
         "--ignore-not-found")
    deadline = time.monotonic() + 30
    while configmap_refused(found, kubeconfig):
        assert time.monotonic() < deadline, "the admission policy stayed in effect"
        time.sleep(0.2)


def setup(tmp_path, control_plane):
    kubeconfig, found = control_plane
    inventory = copy_inventory(tmp_path, "lab")
    env = cilium_env(tmp_path, found)
    _keypair, roles = write_playbooks(tmp_path, kubeconfig)
    # only the Cilium role (the first task of the shared playbook), with a short pause before the one retry
    play = yaml.safe_load(roles.read_text())
    play[0]["tasks"] = play[0]["tasks"][:1]
    play[0]["tasks"][0]["vars"]["cilium_retry_delay"] = 2
    roles.write_text(yaml.safe_dump(play))
    allow_cilium_config(found, kubeconfig)

    def cilium(*args):
        return run_playbook("-i", str(inventory), *args, playbook=str(roles), env=env)

    return kubeconfig, found, cilium


def test_a_rerun_installs_again_after_a_failed_install_or_upgrade(tmp_path, control_plane):
    """First in the file: the module's fresh control plane has no release yet (no uninstall here: with no
    namespace controller, the chart's cilium-secrets namespace would never finish terminating)."""
    kubeconfig, found, cilium = setup(tmp_path, control_plane)
    assert history(found, kubeconfig) == []

    # A refusal: the install fails at once (no second try) and says why; helm keeps a failed release.
    refuse_cilium_config(found, kubeconfig, REFUSAL)
    failed = cilium()
    assert failed.returncode != 0, failed.stdout[-3000:]
    assert REFUSAL in failed.stdout and "once more" not in failed.stdout, failed.stdout[-3000:]
    assert history(found, kubeconfig) == ["failed"]

    # The rerun installs Cilium: the failed install is applied again (a rollback onto itself), not taken for done.
    allow_cilium_config(found, kubeconfig)
    rerun = cilium()
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert recap(rerun.stdout)["localhost"]["changed"] >= 1, rerun.stdout[-3000:]
    assert history(found, kubeconfig)[-1] == "deployed", history(found, kubeconfig)
    kube(found, kubeconfig, "get", "configmap", "cilium-config", "-n", "kube-system")
    again = cilium()
    assert again.returncode == 0 and recap(again.stdout)["localhost"]["changed"] == 0, again.stdout[-3000:]

    # A failed upgrade (new values, the ConfigMap's update refused) is rolled back and upgraded by the rerun.
    refuse_cilium_config(found, kubeconfig, REFUSAL)
    new_values = ("-e", json.dumps({"cilium_extra_values": {"debug": {"enabled": True}}}))
    failed = cilium(*new_values)
    assert failed.returncode != 0, failed.stdout[-3000:]
    assert history(found, kubeconfig)[-2:] == ["deployed", "failed"], history(found, kubeconfig)
    allow_cilium_config(found, kubeconfig)
    rerun = cilium(*new_values)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert history(found, kubeconfig)[-1] == "deployed", history(found, kubeconfig)
    assert helm_values(found, kubeconfig)["debug"]["enabled"] is True
    again = cilium(*new_values)
    assert again.returncode == 0 and recap(again.stdout)["localhost"]["changed"] == 0, again.stdout[-3000:]


def test_a_passing_api_error_is_tried_once_more(tmp_path, control_plane):
    """An upgrade on a deployed release (this module's first test leaves one; made here when run alone)."""
    kubeconfig, found, cilium = setup(tmp_path, control_plane)
    last = deployed_revision(found, kubeconfig, cilium)
    refuse_cilium_config(found, kubeconfig, PASSING)

    # The API server gets well once the first upgrade has failed (helm marks it failed in its release Secret).
    def recover():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if history(found, kubeconfig, after=last) == ["failed"]:
                allow_cilium_config(found, kubeconfig)
                return
            time.sleep(0.2)

    helper = threading.Thread(target=recover, daemon=True)
    helper.start()
    done = cilium("-e", json.dumps({"cilium_extra_values": {"bpf": {"monitorAggregation": "low"}}}))
    helper.join(timeout=130)
    assert done.returncode == 0, done.stdout[-3000:]
    assert PASSING in done.stdout and "Install or upgrade Cilium, once more" in done.stdout, done.stdout[-3000:]
    # the failed upgrade, the rollback to the deployed revision, the upgrade that went through
    assert history(found, kubeconfig, after=last) == ["failed", "superseded", "deployed"], revisions(found, kubeconfig)
    assert helm_values(found, kubeconfig)["bpf"]["monitorAggregation"] == "low"
