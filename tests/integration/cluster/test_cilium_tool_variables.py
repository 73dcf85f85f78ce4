"""Role cilium runs the helm its variable cilium_helm_binary names, over the one $TURNKEY_HELM names, and
installs the chart cilium_chart_path names (issue 10, item 17; the rule is lookup turnkey.cluster.tool). Each
helm is a wrapper that records its calls and runs the real one, against the real kube-apiserver of the
cluster tests' control plane."""

from __future__ import annotations

import json

from tests.integration.cluster.test_cilium_ready import cilium_playbook
from tests.integration.talos.test_talos_tool_variables import calls, wrapper
from tests.playbook_runner import copy_inventory, lab_env, run_playbook


def test_cilium_runs_the_helm_and_chart_of_its_variables(tmp_path, control_plane):
    kubeconfig, found = control_plane
    named, named_log = wrapper(tmp_path, "named-helm", found["TURNKEY_HELM"])
    from_env, env_log = wrapper(tmp_path, "env-helm", found["TURNKEY_HELM"])
    inventory = copy_inventory(tmp_path, "lab")
    playbook = cilium_playbook(tmp_path, kubeconfig)
    env = {**lab_env(tmp_path), "TURNKEY_HELM": from_env, "TURNKEY_CILIUM_CHART": str(tmp_path / "not-a-chart")}
    variables = {"cilium_wait_ready": False, "cilium_helm_binary": named,
                 "cilium_chart_path": found["TURNKEY_CILIUM_CHART"]}
    done = run_playbook("-i", str(inventory), "-e", json.dumps(variables), playbook=str(playbook), env=env)
    assert done.returncode == 0, done.stdout[-4000:]
    assert calls(named_log) and calls(env_log) == []  # the variables win over the environment
