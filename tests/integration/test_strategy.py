"""The opt-in strategy turnkey.cluster.mitogen_linear, through the real ansible-playbook: each host's modules run in
one long-lived interpreter, so two tasks' commands have the same parent process; with Ansible's own linear strategy
(the default, and always the verify play's) every task starts a new one. Every local host has an interpreter of its
own, so the nodes' modules still run at the same time through the forks; a module that crashes is named as Ansible
names it. Without the mitogen package the plugin runs plain linear and says so."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.playbook_runner import BIN, REPO, local_inventory, run_playbook, task_results

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

PARENT = ["python3", "-c", "import os; print(os.getppid())"]
MITOGEN = {"ANSIBLE_STRATEGY": "turnkey.cluster.mitogen_linear"}
LINEAR = {"ANSIBLE_STRATEGY": "ansible.builtin.linear"}
# Each task prints when it started and ended, 2 s apart, on every host.
SPAN = ["python3", "-c", "import time; start = time.time(); time.sleep(2); print(start, time.time())"]
CRASH = """#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule
AnsibleModule(argument_spec={})
raise RuntimeError('the lab crashed this module on purpose')
"""


def play(tmp_path, tasks, hosts=("localhost",), play_options=None, env=None, ok=True):
    """Runs the tasks on local hosts (as the collection's nodes are) with the collection's ansible.cfg."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"name": "play", "hosts": "all", "gather_facts": False,
                                         **(play_options or {}), "tasks": tasks}]))
    inventory = local_inventory(tmp_path / "hosts.yml", hosts)
    run = run_playbook("-i", str(inventory), playbook=str(playbook), json_output=True,
                       env={"ANSIBLE_LIBRARY": str(tmp_path / "library"), **(env or {})})
    assert (run.returncode == 0) == ok, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def parents(tmp_path, play_options=None, env=None):
    """The parent process ids of two command tasks on one local host, and the run."""
    run = play(tmp_path, [{"name": f"parent {n}", "ansible.builtin.command": {"argv": PARENT}, "changed_when": False}
                          for n in (1, 2)], play_options=play_options, env=env)
    return [result["stdout"] for _task, _host, result in task_results(run.stdout)], run


def test_the_mitogen_strategy_runs_a_hosts_modules_in_one_interpreter(tmp_path):
    first, second = parents(tmp_path, env=MITOGEN)[0]
    assert first == second


def test_ansibles_linear_strategy_the_default_starts_an_interpreter_per_task(tmp_path):
    first, second = parents(tmp_path)[0]
    assert first != second
    first, second = parents(tmp_path, env=LINEAR)[0]
    assert first != second
    # a play's own strategy wins over the opted-in one (as the verify play's does)
    first, second = parents(tmp_path, play_options={"strategy": "ansible.builtin.linear"}, env=MITOGEN)[0]
    assert first != second


def test_each_local_host_has_its_own_interpreter_and_they_run_at_once(tmp_path):
    """The nodes are local hosts: their modules must overlap in time (the per-node parallelism of the forks)."""
    hosts = ("node1", "node2", "node3")
    run = play(tmp_path, [{"name": "span", "ansible.builtin.command": {"argv": SPAN}, "changed_when": False},
                          {"name": "parent", "ansible.builtin.command": {"argv": PARENT}, "changed_when": False}],
               hosts=hosts, env=MITOGEN)
    results = task_results(run.stdout)
    spans = {host: [float(edge) for edge in result["stdout"].split()] for task, host, result in results
             if task == "span"}
    assert set(spans) == set(hosts)
    assert max(start for start, _end in spans.values()) < min(end for _start, end in spans.values()), spans
    interpreters = {host: result["stdout"] for task, host, result in results if task == "parent"}
    assert len(set(interpreters.values())) == len(hosts), interpreters


@pytest.mark.parametrize("env", [MITOGEN, LINEAR], ids=["mitogen", "linear"])
def test_a_crashing_module_is_named_with_its_exception(tmp_path, env):
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "crash.py").write_text(CRASH)
    run = play(tmp_path, [{"name": "crash", "crash": {}}], env=env, ok=False)
    [(_task, _host, result)] = task_results(run.stdout)
    assert result["failed"] and "Module failed: the lab crashed this module on purpose" in result["msg"], result


def test_the_verify_play_keeps_ansibles_linear_strategy():
    plays = yaml.safe_load((REPO / "playbooks" / "verify.yml").read_text())
    assert [play.get("strategy") for play in plays] == ["ansible.builtin.linear"]


def test_without_mitogen_the_strategy_is_linear_and_says_so(tmp_path):
    # A sitecustomize that makes `import mitogen` fail, as on a machine without the package.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\nsys.modules['mitogen'] = None\nsys.modules['ansible_mitogen'] = None\n")
    (first, second), run = parents(tmp_path, env={**MITOGEN, "PYTHONPATH": str(hide)})
    assert first != second
    assert "the mitogen package is missing, so the plain linear strategy runs" in run.stderr


def test_the_strategy_documents_itself():
    shown = subprocess.run([str(BIN / "ansible-doc"), "-t", "strategy", "turnkey.cluster.mitogen_linear"], cwd=REPO,
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0 and "Opt-in" in shown.stdout, shown.stdout + shown.stderr
