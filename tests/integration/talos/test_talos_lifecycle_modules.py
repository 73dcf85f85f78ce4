"""talos_talosconfig, talos_apply and talos_bootstrap run as Ansible tasks against the Talos node twin,
driven by the real talosctl: maintenance apply, dry-run diffs, no surprise reboots (staged, and a rerun
that does not stage again), bootstrap once, a maintenance node refused by name, client config expiry.
The twin runs on 127.93.1.x."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest
import yaml

from tests.lab.test_talos_twin import make_twin, talosctl, twin_binary  # noqa: F401 # pylint: disable=unused-import
from tests.playbook_runner import run_playbook, task_results

CP1, W1, CP2 = "127.93.1.1", "127.93.1.2", "127.93.1.3"


@pytest.fixture
def bundle(talosctl, tmp_path):  # noqa: F811 - the fixture imported above
    out = tmp_path / "secrets.yaml"
    subprocess.run([talosctl, "gen", "secrets", "-o", str(out)], check=True, capture_output=True)
    subprocess.run([talosctl, "gen", "config", "lab", "https://127.93.1.100:6443", "--with-secrets", str(out),
                    "-o", str(tmp_path / "gen"), "--with-docs=false", "--with-examples=false"],
                   check=True, capture_output=True)
    return yaml.safe_load(out.read_text())


class Runner:
    """One Ansible task at a time on localhost, its result parsed from the json callback."""

    def __init__(self, tmp_path, talosctl_path):
        self.tmp, self.talosctl = tmp_path, talosctl_path
        self.inventory = tmp_path / "hosts.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))

    def __call__(self, module, args, *flags, fails=False):
        task = {"name": module, "turnkey.cluster." + module: {**args, "talosctl_path": self.talosctl}}
        playbook = self.tmp / "play.yml"
        playbook.write_text(yaml.safe_dump([{"name": "t", "hosts": "localhost", "gather_facts": False,
                                             "tasks": [task]}], sort_keys=False))
        run = run_playbook("-i", str(self.inventory), *flags, playbook=str(playbook), json_output=True, timeout=180)
        result = task_results(run.stdout)[0][2]
        assert bool(result.get("failed")) == fails, result
        return result


def config_with(gen, kind, change):
    """The generated config of a node type with one change to its v1alpha1 document."""
    documents = list(yaml.safe_load_all((gen / ("%s.yaml" % kind)).read_text()))
    change(documents[0])
    return yaml.safe_dump_all(documents, sort_keys=False)


def test_talosconfig_apply_and_bootstrap(talosctl, make_twin, bundle, tmp_path):  # noqa: F811
    make_twin({"cp1": CP1, "w1": W1, "cp2": CP2})
    task = Runner(tmp_path, talosctl)
    gen, state = tmp_path / "gen", tmp_path / "state"
    talosconfig = str(state / "talos" / "talosconfig")
    args = {"cluster_name": "lab", "secrets": bundle, "endpoints": [CP1], "nodes": [CP1], "dest": talosconfig}

    # talosconfig: written 0600 from the bundle, its expiry reported, left alone, renewed when asked
    assert task("talos_talosconfig", args, "--check")["changed"]
    made = task("talos_talosconfig", args)
    assert made["changed"] and made["renewed"] and 360 <= made["days_left"] <= 365
    assert stat.S_IMODE((state / "talos" / "talosconfig").stat().st_mode) == 0o600
    written = (state / "talos" / "talosconfig").read_bytes()
    assert not task("talos_talosconfig", args)["changed"]
    assert (state / "talos" / "talosconfig").read_bytes() == written
    renewed = task("talos_talosconfig", {**args, "renew_days": 400})
    assert renewed["changed"] and renewed["renewed"] and "client certificate expires in" in renewed["reasons"][0]
    moved = task("talos_talosconfig", {**args, "endpoints": [CP1, CP2]})
    assert moved["changed"] and moved["reasons"] == ["endpoints"]

    # apply: maintenance mode is found and applied insecurely; check mode applies nothing
    cp1 = tmp_path / "cp1.yaml"
    cp1.write_text((gen / "controlplane.yaml").read_text())
    apply = {"node": CP1, "talosconfig": talosconfig, "config": str(cp1)}
    checked = task("talos_apply", apply, "--check")
    assert checked["changed"] and checked["maintenance"]
    assert task("talos_apply", apply, "--check")["maintenance"], "check mode must not have applied"
    first = task("talos_apply", apply)
    assert first["changed"] and first["maintenance"]
    again = task("talos_apply", apply)
    assert not again["changed"] and not again["maintenance"] and again["mode"] == "none"

    # a change Talos applies live: the dry run's diff is shown, the config applied without a reboot
    cp1.write_text(config_with(gen, "controlplane", lambda d: d["machine"]["nodeLabels"].update(rack="r1")))
    diffed = task("talos_apply", apply, "--check", "--diff")
    assert diffed["changed"] and "+        rack: r1" in diffed["config_diff"]
    live = task("talos_apply", apply)
    assert live["changed"] and live["mode"] == "no-reboot" and not live["reboot_required"]
    assert not task("talos_apply", apply)["changed"]

    # a change that needs a reboot is staged, never rebooted by surprise; the rerun does not stage it again
    cp1.write_text(config_with(gen, "controlplane", lambda d: d["machine"].update(
        env={"http_proxy": "http://127.93.0.9:3128"}, nodeLabels={**d["machine"]["nodeLabels"], "rack": "r1"})))
    staged = task("talos_apply", apply)
    assert staged["changed"] and staged["mode"] == "staged" and staged["reboot_required"] and staged["staged"]
    assert stat.S_IMODE((tmp_path / "cp1.yaml.staged").stat().st_mode) == 0o600
    waiting = task("talos_apply", apply)
    assert not waiting["changed"] and waiting["staged"]
    assert any("waits for the node's next reboot" in w for w in waiting.get("warnings", []))
    rebooted = task("talos_apply", {**apply, "allow_reboot": True})  # the staged config is not applied twice
    assert not rebooted["changed"], "a config already staged is not applied again"

    # bootstrap: a node in maintenance mode is refused by name; the first control plane once, then no change
    refused = task("talos_bootstrap", {"node": CP2, "talosconfig": talosconfig}, fails=True)
    assert refused["msg"] == ("%s is still in maintenance mode (no machine config applied): apply its config "
                              "before bootstrap" % CP2)
    assert task("talos_bootstrap", {"node": CP1, "talosconfig": talosconfig}, "--check")["changed"]
    done = task("talos_bootstrap", {"node": CP1, "talosconfig": talosconfig})
    assert done["changed"] and done["bootstrapped"]
    twice = task("talos_bootstrap", {"node": CP1, "talosconfig": talosconfig})
    assert not twice["changed"] and not twice["bootstrapped"]

    # a worker joins from maintenance mode too
    worker = tmp_path / "w1.yaml"
    worker.write_text((gen / "worker.yaml").read_text())
    assert task("talos_apply", {"node": W1, "talosconfig": talosconfig, "config": str(worker)})["maintenance"]


def test_unreachable_node_is_named(talosctl, tmp_path, bundle):  # noqa: F811
    task = Runner(tmp_path, talosctl)
    config = tmp_path / "cp.yaml"
    config.write_text((tmp_path / "gen" / "controlplane.yaml").read_text())
    failed = task("talos_apply", {"node": "127.93.9.9", "talosconfig": str(tmp_path / "none"), "config": str(config)},
                  fails=True)
    assert failed["msg"].startswith("node 127.93.9.9 does not answer on the Talos API")
