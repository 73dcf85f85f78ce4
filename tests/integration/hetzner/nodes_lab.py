"""Helpers for the Hetzner module and role tests on net 127.87: real ansible-playbook runs against a lab.

Credentials reach ansible through the environment or the lab's credentials.json only, never argv.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest
import requests
import yaml
from hcloud import Client

from tests.playbook_runner import copy_inventory, run_playbook, task_results


@contextlib.contextmanager
def hetzner_lab(make_class_lab, net):
    """A lab with the Hetzner and Image Factory twins on `net`; requests (the hcloud library) verifies
    with REQUESTS_CA_BUNDLE, which a session's `verify` loses to, so it points at the lab CA meanwhile."""
    handle = make_class_lab(net)
    handle.run("up", "--profile", "fast", "--components", "hetzner,image_factory")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", str(handle.root / "pki" / "ca.pem"))
        yield handle


NET = "127.87"
BASE = f"https://{NET}.0.4:8443"
API = f"{BASE}/v1"
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
# Two Hetzner workers, so the per-node tasks really run in parallel.
TWO_NODES = {"add_hosts": {"worker": {"hcloud-worker2": {"node_ip": "127.3.0.11"}},
                           "hetzner_nodes": {"hcloud-worker2": None}}}


class NodesLab:
    """A lab's Hetzner twin driven through ansible-playbook: modules on localhost (play, triplet) and the
    role on a copy of the lab inventory. `net` picks the lab (the module test uses its own)."""

    def __init__(self, handle, tmp_path, net=NET):
        self.handle = handle
        self.tmp = tmp_path
        self.base = f"https://{net}.0.4:8443"
        self.token = handle.json("credentials.json")["hetzner"]["token"]
        self.ca = str(handle.root / "pki" / "ca.pem")
        base_env = {"TURNKEY_STATE_DIR": str(tmp_path / "state"), "ANSIBLE_LOCALHOST_WARNING": "0",
                    "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
        # Modules on localhost: the connection from the environment.
        api = self.base + "/v1"
        self.env = {**base_env, "HCLOUD_TOKEN": self.token, "HCLOUD_ENDPOINT": api, "REQUESTS_CA_BUNDLE": self.ca}
        # The role: everything from the lab inventory (which reads the lab's endpoints and credentials).
        self.role_env = {**base_env, "TURNKEY_LAB_DIR": str(handle.root)}
        self.client = Client(token=self.token, api_endpoint=api, poll_interval=0.05)
        self.runs = 0
        self.outputs: list[str] = []
        self.inventory = None

    # -- the twin --------------------------------------------------------------------------------------
    def lab(self, method, path, body=None):
        return requests.request(method, self.base + path, json=body, verify=self.ca, timeout=10)

    def clear_requests(self):
        """Clears the request log; the twin clears its rejects with it, so they are checked first."""
        assert self.lab("GET", "/_lab/rejects").json() == []
        self.lab("DELETE", "/_lab/requests")

    def requests_log(self):
        return self.lab("GET", "/_lab/requests").json()

    def writes(self):
        return [r for r in self.requests_log() if r["method"] != "GET"]

    # -- modules on localhost --------------------------------------------------------------------------
    def play(self, tasks, *args, expect_failure=False):
        """Runs the tasks in a playbook on localhost; returns {task name: result}."""
        self.runs += 1
        playbook = self.tmp / f"play{self.runs:02}.yml"
        playbook.write_text(yaml.safe_dump([{"name": "Hetzner", "hosts": "localhost", "gather_facts": False,
                                             "connection": "local", "tasks": tasks}], sort_keys=False))
        result = run_playbook("-i", "localhost,", *args, playbook=str(playbook), env=self.env, json_output=True,
                              timeout=300)
        self.outputs += [result.stdout, result.stderr]
        results = {name: outcome for name, _host, outcome in task_results(result.stdout)}
        failed = [name for name, outcome in results.items() if outcome.get("failed")]
        if expect_failure:
            assert failed, result.stdout[-3000:]
        else:
            messages = {name: results[name].get("msg") for name in failed}
            assert result.returncode == 0 and not failed, (messages, result.stderr[-2000:])
        return results

    def triplet(self, tasks, after_check=None, diff=True):
        """check -> every task changed, apply -> every task changed, rerun -> none changed."""
        names = [task["name"] for task in tasks]
        flags = ("--diff",) if diff else ()
        checked = self.play(tasks, "--check", *flags)
        assert {n: checked[n]["changed"] for n in names} == {n: True for n in names}, checked
        if after_check:
            after_check(checked)
        applied = self.play(tasks, *flags)
        assert {n: applied[n]["changed"] for n in names} == {n: True for n in names}, applied
        again = self.play(tasks, *flags)
        assert {n: again[n]["changed"] for n in names} == {n: False for n in names}, again
        return checked, applied, again

    # -- the role on the lab inventory -----------------------------------------------------------------
    def role(self, *args, playbook="hetzner_nodes.yml", expect_failure=False):
        """Runs a role playbook on the copied lab inventory; returns (recap, [(task, host, result)], seconds)."""
        if self.inventory is None:
            self.inventory = copy_inventory(self.tmp, "lab", TWO_NODES)
        started = time.monotonic()
        result = run_playbook("-i", str(self.inventory), *args, playbook=str(PLAYBOOKS / playbook),
                              env=self.role_env, json_output=True, timeout=600)
        took = time.monotonic() - started
        self.outputs += [result.stdout, result.stderr]
        results = task_results(result.stdout)
        failed = [(name, host, outcome.get("msg")) for name, host, outcome in results if outcome.get("failed")]
        if expect_failure:
            assert failed, result.stdout[-3000:]
        else:
            assert result.returncode == 0 and not failed, (failed, result.stderr[-2000:])
        stats = json.loads(result.stdout[result.stdout.index("{"):])["stats"]
        return stats, results, took


def throttled(results):
    """429 answers ridden through by the hcloud modules of a run."""
    total = 0
    for _name, _host, outcome in results:
        for item in outcome.get("results") or [outcome]:
            total += (item.get("hcloud_rate_limit") or {}).get("throttled", 0)
    return total


def waited(results):
    """Seconds the hcloud modules of a run spent waiting for the rate limit (their own report)."""
    total = 0.0
    for _name, _host, outcome in results:
        for item in outcome.get("results") or [outcome]:
            total += (item.get("hcloud_rate_limit") or {}).get("waited", 0.0)
    return total
