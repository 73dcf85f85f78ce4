"""Runs the real ansible-playbook from the repository root, on inventories copied to a temp folder.

Tests never point at the working inventories in place: each gets a copy, its own lab state folder and
its own vault password, so a developer's lab and secrets are never touched by the suite.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TEST_VAULT_PASSWORD = "test-vault-password-not-for-real-use"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def deep_merge(base, overlay):
    """Dicts merge key by key; anything else (lists included) is replaced."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _unset(data, dotted):
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    data.pop(last, None)


def copy_inventory(tmp_path, base="lab", overlay=None):
    """Copies inventory/<base> into tmp_path/inventory and applies a fixture overlay:
    set (deep-merged into group_vars/all/cluster.yml), unset (dotted keys), hosts (host_vars files),
    unset_host_vars (host -> [keys]), remove_hosts ([hosts]), move (host -> [from_group, to_group]; null for none) and
    add_hosts (group -> {host: vars})."""
    overlay = overlay or {}
    target = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory" / base, target, ignore=shutil.ignore_patterns("secrets", ".vault-password"))
    spec_file = target / "group_vars" / "all" / "cluster.yml"
    spec = yaml.safe_load(spec_file.read_text())
    spec = deep_merge(spec, overlay.get("set") or {})
    for dotted in overlay.get("unset") or []:
        _unset(spec, dotted)
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))

    hosts_file = target / "hosts.yml"
    inventory = yaml.safe_load(hosts_file.read_text())
    groups = inventory["all"]["children"]["cluster"]["children"]
    for group in groups.values():
        group["hosts"] = group.get("hosts") or {}
    for host, keys in (overlay.get("unset_host_vars") or {}).items():
        for group in groups.values():
            for key in keys:
                (group["hosts"].get(host) or {}).pop(key, None)
    for host, (source, destination) in (overlay.get("move") or {}).items():
        variables = groups[source]["hosts"].pop(host) if source else None
        if destination:
            groups.setdefault(destination, {"hosts": {}})["hosts"][host] = variables
    for host in overlay.get("remove_hosts") or []:
        for group in groups.values():
            group["hosts"].pop(host, None)
    for group, members in (overlay.get("add_hosts") or {}).items():
        groups[group]["hosts"].update(members)
    hosts_file.write_text(yaml.safe_dump(inventory, sort_keys=False))
    # host_vars/ wins over the variables written inline in hosts.yml.
    for host, variables in (overlay.get("hosts") or {}).items():
        (target / "host_vars").mkdir(exist_ok=True)
        (target / "host_vars" / ("%s.yml" % host)).write_text(yaml.safe_dump(variables))
    return target


def lab_env(tmp_path, password=TEST_VAULT_PASSWORD):
    """An isolated lab state folder holding only a vault password, and the variables pointing at it."""
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir(parents=True, exist_ok=True)
    password_file = lab_dir / "vault-password"
    if password is not None:
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
    return {"TURNKEY_LAB_DIR": str(lab_dir), "TURNKEY_STATE_DIR": str(tmp_path / "state"),
            "TURNKEY_VAULT_PASSWORD": password or ""}


def local_inventory(path, hosts=("localhost",), variables=None):
    """Writes an inventory of local hosts run by this Python, as the collection's nodes are; returns its path."""
    inventory = {"hosts": {host: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
                           for host in hosts}}
    if variables is not None:
        inventory["vars"] = variables
    path.write_text(yaml.safe_dump({"all": inventory}))
    return path


def run_playbook(*args, env=None, playbook="site.yml", json_output=False, timeout=600):
    environment = dict(os.environ)
    environment.pop("TURNKEY_LAB_VAULT_PASSWORD", None)
    environment.update({"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1",
                        "PATH": "%s:%s" % (BIN, os.environ["PATH"])})
    if json_output:
        environment["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.json"
    environment.update(env or {})
    command = [str(BIN / "ansible-playbook"), playbook, *args]
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout,
                          check=False)


def recap(stdout):
    """{host: {'ok', 'changed', 'unreachable', 'failed'}} from the PLAY RECAP."""
    return {m.group(1): dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()[1:]), strict=True))
            for m in RECAP.finditer(stdout)}


def task_results(json_stdout):
    """(task name, host, result) of a run with the json stdout callback, in order."""
    report = json.loads(json_stdout[json_stdout.index("{"):])
    return [(task["task"]["name"], host, result)
            for play in report["plays"] for task in play["tasks"] for host, result in task["hosts"].items()]


def failed_results(json_stdout):
    return [entry for entry in task_results(json_stdout) if entry[2].get("failed")]


def task_result(json_stdout, name, host="localhost"):
    matches = [result for task, where, result in task_results(json_stdout) if task == name and where == host]
    assert len(matches) == 1, "task %r ran %d times on %s" % (name, len(matches), host)
    return matches[0]
