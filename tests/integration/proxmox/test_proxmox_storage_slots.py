"""The storage slots of module proxmox_vm on the Proxmox VE twin: with no `throttle`, six forks clone from one
template at once, while the twin's storage is slow enough (a `slow` fault: each linked clone holds the
storage's lock 3 s, the twin's lock timeout stays 5 s) that a queue of six clones runs past the lock timeout.

- one slot: every clone, cloud-init drive and purge waits for the slot instead of the storage's lock, and the
  twin times out no lock (the module's retries are off, so one timeout would fail its node);
- no slot (`storage_slots: 0`, the cap the throttle used to give): the same play hits the twin's
  "can't lock file ... got timeout", so the first case passes because of the slots;
- check mode takes no slot: with the only slot held by another process it still plans, and the real run then
  waits for the slot and fails naming its folder.

One lab on net 127.120 (`--profile fast --components proxmox,image_factory`), brought down in the finalizer.
"""

from __future__ import annotations

import fcntl
import os
import sys

import pytest
import requests
import yaml

from ansible_collections.turnkey.cluster.plugins.module_utils.proxmox_slots import slot_key
from tests.lab.conftest import LabHandle
from tests.playbook_runner import run_playbook, task_results

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]

NET = "127.120"
PVE = f"https://{NET}.0.3:8006"
FACTORY = f"https://{NET}.0.6:8443"
TEMPLATE = 9300
NODES = {f"node{i}": 3000 + i for i in range(1, 7)}
LOCK_TIMEOUT = "can't lock file '/var/lock/pve-manager/pve-storage-local-zfs' - got timeout"


class Lab:
    def __init__(self, handle: LabHandle, tmp):
        self.handle, self.tmp, self.runs = handle, tmp, 0
        self.ca = str(handle.root / "pki" / "ca.pem")
        creds = handle.json("credentials.json")["proxmox"]
        self.env = {"PROXMOX_URL": PVE, "PROXMOX_TOKEN_ID": creds["token_id"],
                    "PROXMOX_TOKEN_SECRET": creds["token_secret"], "PROXMOX_CACERT": self.ca,
                    "TURNKEY_STATE_DIR": str(tmp / "state"), "ANSIBLE_FORKS": str(len(NODES) + 1)}
        self.slots = tmp / "slots"
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        self.inventory = tmp / "hosts.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {
            "hosts": {"localhost": local, **{name: {**local, "vmid": vmid} for name, vmid in NODES.items()}}}}))

    def play(self, hosts, tasks, check=False):
        """[(task, host, result)] and the return code of the tasks on hosts."""
        self.runs += 1
        playbook = self.tmp / f"play{self.runs}.yml"
        playbook.write_text(yaml.safe_dump([{"name": "slots", "hosts": hosts, "gather_facts": False,
                                             "tasks": tasks}], sort_keys=False))
        run = run_playbook("-i", str(self.inventory), *(["--check"] if check else []), playbook=str(playbook),
                           env=self.env, json_output=True, timeout=600)
        return run.returncode, task_results(run.stdout), run.stdout

    def lab(self, method, path, **kwargs):
        answer = requests.request(method, f"{PVE}/_lab/{path}", verify=self.ca, timeout=10, **kwargs)
        answer.raise_for_status()
        return answer.json()


def node_vm(slots, state="present", **options):
    """Each node's linked clone, every fork at once (no throttle), retries off: a lock timeout fails it."""
    return {"name": "vm", "turnkey.cluster.proxmox_vm": {
        "vmid": "{{ vmid }}", "name": "{{ inventory_hostname }}", "clone_from": TEMPLATE, "storage": "local-zfs",
        "owner_tag": "slots", "tags": ["slots"], "state": state, "ip": "127.2.3.{{ vmid - 3000 }}/24",
        "storage_slots": slots, "api_retries": 0, **options}}


def template_from_an_image(lab: Lab):
    tasks = [
        {"name": "schematic", "register": "schematic", "turnkey.cluster.talos_schematic": {
            "factory_url": FACTORY, "ca_path": lab.ca, "cache_path": str(lab.tmp / "schematics.json"),
            "extensions": [], "kernel_args": [], "meta": [], "talos_version": "v1.13.9", "platform": "nocloud"}},
        {"name": "image", "register": "image", "turnkey.cluster.proxmox_image": {
            "schematic_id": "{{ schematic.id }}", "talos_version": "v1.13.9", "factory_url": FACTORY,
            "storage": "local"}},
        {"name": "template", "turnkey.cluster.proxmox_vm": {
            "vmid": TEMPLATE, "name": "slots-template", "state": "template", "import_from": "{{ image.volid }}",
            "storage": "local-zfs", "tags": ["slots"], "owner_tag": "slots", "storage_slots_dir": str(lab.slots)}}]
    code, _results, out = lab.play("localhost", tasks)
    assert code == 0, out[-3000:]


def check_mode_takes_no_slot(lab: Lab):
    folder = lab.slots / slot_key(f"{NET}.0.3:8006", "pve", "local-zfs")
    held = os.open(folder / "slot-0", os.O_RDWR)  # made by the template task; another run holds it now
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        task = node_vm(1, storage_slots_dir=str(lab.slots), timeout=3)
        code, results, out = lab.play("node1", [task], check=True)
        assert code == 0, out[-3000:]
        [(_task, _host, checked)] = results
        assert checked["changed"] and checked["changes"] == ["create"] and checked["storage_slot_wait_s"] == 0
        code, results, out = lab.play("node1", [task])
        [(_task, _host, failed)] = results
        assert code != 0 and failed["failed"]
        assert "no storage slot came free within 3 s" in failed["msg"] and str(folder) in failed["msg"]
    finally:
        os.close(held)
    assert str(NODES["node1"]) not in lab.lab("GET", "vms")  # neither run cloned


def one_slot_keeps_the_lock_timeouts_away(lab: Lab):
    lab.lab("POST", "faults", json={"kind": "slow", "factor": 60})
    try:
        code, results, out = lab.play("node*", [node_vm(1, storage_slots_dir=str(lab.slots))])
        assert code == 0, out[-3000:]
        assert sorted(host for _task, host, result in results if result["changed"]) == sorted(NODES)
        assert all(result["retried"] == 0 for _task, _host, result in results)
        # they queued on the slot instead of on the storage's lock
        assert max(result["storage_slot_wait_s"] for _task, _host, result in results) > 1
        code, results, out = lab.play("node*", [node_vm(1, state="absent", storage_slots_dir=str(lab.slots))])
        assert code == 0, out[-3000:]
    finally:
        lab.lab("DELETE", "faults")


def no_slot_lets_the_lock_timeouts_through(lab: Lab):
    lab.lab("POST", "faults", json={"kind": "slow", "factor": 60})
    try:
        code, results, out = lab.play("node*", [node_vm(0)])
    finally:
        lab.lab("DELETE", "faults")
    failed = [result for _task, _host, result in results if result.get("failed")]
    assert code != 0 and failed, out[-3000:]
    assert all(LOCK_TIMEOUT in result["msg"] for result in failed), [r["msg"] for r in failed]


def the_twin_refused_nothing(lab: Lab):
    assert lab.lab("GET", "rejects") == []


STEPS = (template_from_an_image, check_mode_takes_no_slot, one_slot_keeps_the_lock_timeouts_away,
         no_slot_lets_the_lock_timeouts_through, the_twin_refused_nothing)


def test_storage_slots_on_the_twin(tmp_path_factory):
    handle = LabHandle(tmp_path_factory.mktemp("pve-slots") / "state", NET)
    try:
        handle.run("up", "--profile", "fast", "--components", "proxmox,image_factory")
        lab = Lab(handle, tmp_path_factory.mktemp("pve-slots-plays"))
        for step in STEPS:
            step(lab)
    finally:
        handle.run("down", ok=False)
        handle.kill_everything()
