"""The one rule by which roles and modules find their tools (module_utils tools, lookup turnkey.cluster.tool):
the path named, $TURNKEY_<TOOL>, the tool cache (the wanted version's folder, then tools.env), PATH. Real
files in a temporary cache and PATH; the lookup is run through the real ansible-playbook."""

from __future__ import annotations

import importlib
import sys

import pytest
import yaml

from tests.playbook_runner import run_playbook, task_results

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

tools = importlib.import_module("ansible_collections.turnkey.cluster.plugins.module_utils.tools")


def executable(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def world(tmp_path):
    """A cache with two talosctl builds (tools.env records the newer), a chart, and a PATH folder."""
    cache = tmp_path / "cache"
    folder = cache / "turnkey-cluster" / "tools"
    pinned = executable(folder / "talosctl-v1.13.9" / "talosctl")
    newer = executable(folder / "talosctl-v1.14.0" / "talosctl")
    helm = executable(folder / "helm-v3.21.4" / "helm")
    chart = folder / "cilium-chart-v1.20.0" / "cilium"
    chart.mkdir(parents=True)
    (folder / "tools.env").write_text("TURNKEY_TALOSCTL=%s\nTURNKEY_HELM=%s\nTURNKEY_CILIUM_CHART=%s\n"
                                      % (newer, helm, chart))
    on_path = tmp_path / "bin"
    kubectl = executable(on_path / "kubectl")
    environ = {"XDG_CACHE_HOME": str(cache), "PATH": str(on_path), "HOME": str(tmp_path)}
    return dict(environ=environ, pinned=pinned, newer=newer, helm=helm, chart=str(chart), kubectl=kubectl,
                mine=executable(tmp_path / "mine" / "talosctl"), tmp=tmp_path)


def test_the_order_named_path_environment_version_folder_tools_env_path(world):
    environ = world["environ"]
    locate = tools.locate_tool
    assert locate("talosctl", world["mine"], "v1.13.9", environ) == world["mine"]
    assert locate("talosctl", "", "v1.13.9", dict(environ, TURNKEY_TALOSCTL=world["mine"])) == world["mine"]
    assert locate("talosctl", None, "v1.13.9", environ) == world["pinned"]  # the spec's version, built
    assert locate("talosctl", None, "v1.12.0", environ) == world["newer"]  # not built: what tools.env records
    assert locate("talosctl", None, None, environ) == world["newer"]
    assert locate("helm", None, None, environ) == world["helm"]
    assert locate("cilium-chart", None, "v1.20.0", environ) == world["chart"]
    assert locate("kubectl", None, None, environ) == world["kubectl"]  # neither built nor recorded: PATH


def test_a_named_path_that_is_not_usable_fails_instead_of_being_passed_over(world):
    environ = world["environ"]
    with pytest.raises(tools.ToolError, match="talosctl talos_cluster_talosctl = /nowhere/talosctl is not an "
                                              "executable file"):
        tools.locate_tool("talosctl", "/nowhere/talosctl", None, environ, explicit_name="talos_cluster_talosctl")
    with pytest.raises(tools.ToolError, match=r"talosctl \$TURNKEY_TALOSCTL = /nowhere is not"):
        tools.locate_tool("talosctl", None, None, dict(environ, TURNKEY_TALOSCTL="/nowhere"))
    with pytest.raises(tools.ToolError, match="cilium-chart .* is not a folder"):
        tools.locate_tool("cilium-chart", world["helm"], None, environ)


def test_a_tool_found_nowhere_names_what_was_tried(world):
    bare = {"XDG_CACHE_HOME": str(world["tmp"] / "empty"), "PATH": str(world["tmp"] / "empty-bin")}
    with pytest.raises(tools.ToolError) as missing:
        tools.locate_tool("talosctl", None, "v1.13.9", bare, explicit_name="talos_config_talosctl")
    assert "talosctl-v1.13.9/talosctl" in str(missing.value) and "talosctl on PATH" in str(missing.value)
    assert "set talos_config_talosctl or $TURNKEY_TALOSCTL" in str(missing.value)


def test_the_lookup_in_a_playbook(world):
    """lookup('turnkey.cluster.tool', ...) as the roles call it, with the controller's environment."""
    tmp = world["tmp"]
    tasks = [{"name": name, "ansible.builtin.debug": {"msg": expression}} for name, expression in (
        ("variable", "{{ lookup('turnkey.cluster.tool', 'talosctl', path='%s', version='v1.13.9') }}"
         % world["mine"]),
        ("version", "{{ lookup('turnkey.cluster.tool', 'talosctl', path='', version='v1.13.9') }}"),
        ("chart", "{{ lookup('turnkey.cluster.tool', 'cilium-chart', version='v1.20.0') }}"),
        ("broken", "{{ lookup('turnkey.cluster.tool', 'helm', path='/nowhere/helm', variable='cilium_helm_binary') }}"),
    )]
    playbook = tmp / "lookup.yml"
    playbook.write_text(yaml.safe_dump([{"name": "tools", "hosts": "localhost", "gather_facts": False,
                                         "tasks": tasks}]))
    inventory = tmp / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    env = {"XDG_CACHE_HOME": world["environ"]["XDG_CACHE_HOME"], "TURNKEY_TALOSCTL": "", "TURNKEY_HELM": "",
           "TURNKEY_CILIUM_CHART": ""}
    run = run_playbook("-i", str(inventory), playbook=str(playbook), env=env, json_output=True)
    results = {task: result for task, _host, result in task_results(run.stdout)}
    assert results["variable"]["msg"] == world["mine"]
    assert results["version"]["msg"] == world["pinned"]
    assert results["chart"]["msg"] == world["chart"]
    assert results["broken"]["failed"] and \
        "helm cilium_helm_binary = /nowhere/helm is not an executable file" in results["broken"]["msg"]
