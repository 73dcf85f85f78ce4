"""Role cilium after helm was killed in the middle of an install or upgrade, on a real control plane (the pinned etcd,
kube-apiserver and helm): helm leaves the release pending and refuses every later operation on it ("another operation
(install/upgrade/rollback) is in progress"). A validating webhook whose server never answers holds helm's write of
the cilium-config ConfigMap, so the test can kill helm there, as a crashed controller or a lost network does.
- The rerun waits cilium_pending_wait for a helm that is really at work, then takes the release as abandoned.
- An abandoned first install is applied again, an abandoned upgrade rolled back and upgraded; a rerun after
  that changes nothing."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time

import yaml

from tests.integration.cluster.conftest import ADDRESS, kube
from tests.integration.cluster.test_cilium_and_sealed_key import helm_values
from tests.integration.cluster.test_cilium_failed_release import deployed_revision, history, revisions, setup
from tests.playbook_runner import recap

WEBHOOK = "turnkey-test-hold-cilium-config"
WAITED = "FAILED - RETRYING: [localhost]: Wait while another helm installs, upgrades or rolls back Cilium"


@contextlib.contextmanager
def cilium_config_held(found, kubeconfig):
    """A validating webhook on the cilium-config ConfigMap whose server takes the connection and never answers: the
    API server holds each such write for the webhook's timeout (30 s), so a helm caught there can be killed with
    its release still pending, as a controller that crashes or loses its network mid-upgrade leaves it."""
    listener = socket.socket()
    listener.bind((ADDRESS, 0))
    listener.listen(16)
    url = "https://%s:%d/" % (ADDRESS, listener.getsockname()[1])
    kube(found, kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK},
        "webhooks": [{"name": "hold.turnkey.test", "clientConfig": {"url": url}, "sideEffects": "None",
                      "admissionReviewVersions": ["v1"], "timeoutSeconds": 30, "failurePolicy": "Fail",
                      "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                                 "resources": ["configmaps"]}],
                      "matchConditions": [{"name": "cilium-config",
                                           "expression": "object.metadata.name == 'cilium-config'"}]}]}))
    try:
        yield
    finally:
        kube(found, kubeconfig, "delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
        listener.close()


def killed_in_the_middle(found, kubeconfig, command, last, pending):
    """Runs helm `command` until the release's newest revision after `last` is `pending`, then kills it there."""
    with cilium_config_held(found, kubeconfig):
        helm = subprocess.Popen([found["TURNKEY_HELM"], "--kubeconfig", str(kubeconfig), *command, "cilium",
                                 found["TURNKEY_CILIUM_CHART"], "-n", "kube-system"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while history(found, kubeconfig, after=last) != [pending]:
            assert time.monotonic() < deadline and helm.poll() is None, "helm never got stuck"
            time.sleep(0.2)
        time.sleep(1)  # well inside the webhook's call
        helm.kill()
        helm.wait()
    assert history(found, kubeconfig, after=last) == [pending]


def test_a_rerun_takes_over_an_install_whose_helm_was_killed(tmp_path, control_plane):
    """First in the file: the module's fresh control plane has no release yet. The abandoned first install is
    applied again (a rollback onto itself), not taken for done."""
    kubeconfig, found, cilium = setup(tmp_path, control_plane)
    assert history(found, kubeconfig) == []
    killed_in_the_middle(found, kubeconfig, ["install"], 0, "pending-install")
    rerun = cilium("-e", json.dumps({"cilium_pending_wait": 3}))
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert WAITED in rerun.stdout, rerun.stdout[-3000:]  # it gave a helm at work its time first
    assert history(found, kubeconfig)[-1] == "deployed", revisions(found, kubeconfig)
    kube(found, kubeconfig, "get", "configmap", "cilium-config", "-n", "kube-system")
    again = cilium()
    assert again.returncode == 0 and recap(again.stdout)["localhost"]["changed"] == 0, again.stdout[-3000:]


def test_a_rerun_takes_over_an_upgrade_whose_helm_was_killed(tmp_path, control_plane):
    """The abandoned upgrade is rolled back to the last deployed revision and upgraded to the wanted values."""
    kubeconfig, found, cilium = setup(tmp_path, control_plane)
    last = deployed_revision(found, kubeconfig, cilium)
    killed_in_the_middle(found, kubeconfig, ["upgrade", "--reuse-values", "--set", "debug.verbose=flow"], last,
                         "pending-upgrade")

    wanted = ("-e", json.dumps({"cilium_extra_values": {"debug": {"verbose": "kvstore"}}, "cilium_pending_wait": 3}))
    rerun = cilium(*wanted)
    assert WAITED in rerun.stdout, rerun.stdout[-3000:]
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert history(found, kubeconfig, after=last)[-1] == "deployed", revisions(found, kubeconfig)
    assert "pending-upgrade" not in history(found, kubeconfig, after=last)[1:]
    assert helm_values(found, kubeconfig)["debug"]["verbose"] == "kvstore"
    again = cilium(*wanted)
    assert again.returncode == 0 and recap(again.stdout)["localhost"]["changed"] == 0, again.stdout[-3000:]
