"""The opt-in strategy turnkey.cluster.mitogen_linear, through the real ansible-playbook: each host's modules run in
one long-lived interpreter, so two tasks' commands have the same parent process; with Ansible's own linear strategy
(the default, and always the verify play's) every task starts a new one. Without the mitogen package the plugin runs
plain linear and says so."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.playbook_runner import BIN, REPO, run_playbook, task_results

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

PARENT = ["python3", "-c", "import os; print(os.getppid())"]
MITOGEN = {"ANSIBLE_STRATEGY": "turnkey.cluster.mitogen_linear"}


def parents(tmp_path, play_options=None, env=None):
    """The parent process ids of two command tasks on one local host, and the run."""
    playbook = tmp_path / "parents.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "parents", "hosts": "localhost", "gather_facts": False, **(play_options or {}),
        "tasks": [{"name": f"parent {n}", "ansible.builtin.command": {"argv": PARENT}, "changed_when": False}
                  for n in (1, 2)]}]))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    run = run_playbook("-i", str(inventory), playbook=str(playbook), json_output=True, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return [result["stdout"] for _task, _host, result in task_results(run.stdout)], run


def test_the_mitogen_strategy_runs_a_hosts_modules_in_one_interpreter(tmp_path):
    first, second = parents(tmp_path, env=MITOGEN)[0]
    assert first == second


def test_ansibles_linear_strategy_the_default_starts_an_interpreter_per_task(tmp_path):
    first, second = parents(tmp_path)[0]
    assert first != second
    # a play's own strategy wins over the opted-in one (as the verify play's does)
    first, second = parents(tmp_path, play_options={"strategy": "ansible.builtin.linear"}, env=MITOGEN)[0]
    assert first != second


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
