"""The Proxmox VE modules (and talos_schematic) through the real ansible-playbook against a real lab.

One lab on net 127.84 (`lab up --profile fast --components proxmox,image_factory`), its own state
folder, brought down in the finalizer. Credentials reach the modules through PROXMOX_* environment
variables, never argv. One test made of steps, in order, so pytest-xdist cannot split it onto one net.
The last step is the contract test: the twins refused none of the requests the modules sent.
"""

from __future__ import annotations

import json
import sys

import pytest
import requests
import yaml

from tests.lab.conftest import LabHandle
from tests.playbook_runner import run_playbook, task_results

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]

NET = "127.84"
PVE = f"https://{NET}.0.3:8006"
FACTORY = f"https://{NET}.0.6:8443"
VERSION = "v1.13.9"
EMPTY_ID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
QEMU_GA = ["siderolabs/qemu-guest-agent"]
META_10 = "addresses:\n    - address: 10.2.1.1/16\n      linkName: eth0\nhostnames:\n    - hostname: cp1\n"

# (extensions, kernel_args, meta, ID): the upstream image-factory vectors this module's inputs can express
# (tests/lab/test_image_factory_twin.py).
UPSTREAM = [
    ([], [], [], EMPTY_ID),
    ([], ["noapic", "nolapic"], [], "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"),
    ([], [], [{"key": 10, "value": "foo"}], "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f"),
]
# Schematics this collection builds, checked against the twin's answers.
REALISTIC = [
    (QEMU_GA, [], []),
    (QEMU_GA, ["net.ifnames=0", "console=ttyS0,115200", "talos.platform=nocloud"], []),
    (QEMU_GA + ["siderolabs/iscsi-tools"], ["true", "", "a: b", "- x", "it's", "{}"],
     [{"key": 10, "value": META_10}, {"key": 11, "value": "no newline\nat end"}]),
]


class Lab:
    def __init__(self, handle: LabHandle, tmp):
        self.handle, self.tmp = handle, tmp
        self.ca = str(handle.root / "pki" / "ca.pem")
        creds = handle.json("credentials.json")["proxmox"]
        self.env = {"PROXMOX_URL": PVE, "PROXMOX_TOKEN_ID": creds["token_id"],
                    "PROXMOX_TOKEN_SECRET": creds["token_secret"], "PROXMOX_CACERT": self.ca,
                    "TURNKEY_STATE_DIR": str(tmp / "state")}
        self.secret = creds["token_secret"]
        self.secrets = (creds["token_secret"], creds["password"])
        self.inventory = tmp / "hosts.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
        self.runs = 0

    def play(self, tasks, *args, check=False, diff=False, defaults=None):
        """Runs the tasks on localhost; returns (returncode, [(task, result)], stdout)."""
        self.runs += 1
        playbook = self.tmp / f"play{self.runs}.yml"
        play = {"name": "modules", "hosts": "localhost", "gather_facts": False, "tasks": tasks}
        if defaults:
            play["module_defaults"] = defaults
        playbook.write_text(yaml.safe_dump([play], sort_keys=False))
        flags = ["-i", str(self.inventory), *(["--check"] if check else []), *(["--diff"] if diff else []), *args]
        run = run_playbook(*flags, playbook=str(playbook), env=self.env, json_output=True, timeout=120)
        assert not any(secret in run.stdout + run.stderr for secret in self.secrets)  # no_log holds
        results = [(task, result) for task, _host, result in task_results(run.stdout)]
        return run.returncode, results, run.stdout

    def one(self, task, defaults=None, **kwargs):
        code, results, out = self.play([task], defaults=defaults, **kwargs)
        assert len(results) == 1, out
        return code, results[0][1]

    def lab_get(self, base, path):
        return requests.get(f"{base}/_lab/{path}", verify=self.ca, timeout=10).json()

    def fault(self, **fault):
        requests.post(f"{PVE}/_lab/faults", json=fault, verify=self.ca, timeout=10).raise_for_status()

    def clear_faults(self):
        requests.delete(f"{PVE}/_lab/faults", verify=self.ca, timeout=10).raise_for_status()


def schematic_task(extensions, kernel_args, meta, **options):
    return {"name": "schematic", "turnkey.cluster.talos_schematic": {
        "extensions": extensions, "kernel_args": kernel_args, "meta": meta, **options}}


def schematic_ids_match_the_factory(lab: Lab):
    tasks = [schematic_task(e, k, m, mode="offline") for e, k, m, _id in UPSTREAM]
    tasks += [schematic_task(e, k, m, mode="offline") for e, k, m in REALISTIC]
    code, results, out = lab.play(tasks)
    assert code == 0, out
    offline = [result for _task, result in results]
    assert [r["id"] for r in offline[:len(UPSTREAM)]] == [vector[3] for vector in UPSTREAM]
    assert offline[0]["schematic"] == "customization: {}\n"
    assert not any(r["changed"] or r["posted"] for r in offline)
    for (extensions, kernel_args, meta), result in zip(REALISTIC, offline[len(UPSTREAM):], strict=True):
        body = {"customization": {"systemExtensions": {"officialExtensions": extensions},
                                  "extraKernelArgs": kernel_args, "meta": meta}}
        answer = requests.post(f"{FACTORY}/schematics", json=body, verify=lab.ca, timeout=10).json()
        assert (result["id"], result["schematic"]) == (answer["id"], answer["schematic"])


def schematic_online_check_apply_rerun(lab: Lab):
    cache = lab.tmp / "cache" / "schematics.json"
    task = schematic_task(QEMU_GA, ["net.ifnames=0"], [], factory_url=FACTORY, ca_path=lab.ca,
                          cache_path=str(cache), talos_version=VERSION, platform="nocloud")
    before = len(lab.lab_get(FACTORY, "requests"))
    code, checked = lab.one(task, check=True)
    assert code == 0 and checked["changed"] and not checked["posted"] and "offline" in checked["msg"]
    assert not cache.exists()
    code, applied = lab.one(task)
    assert code == 0 and applied["changed"] and applied["posted"] and applied["mode"] == "online"
    assert applied["id"] == checked["id"]
    assert json.loads(cache.read_text()) == {applied["id"]: applied["schematic"]}
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    code, rerun = lab.one(task)
    assert code == 0 and not rerun["changed"] and not rerun["posted"] and rerun["cached"]
    posts = [r for r in lab.lab_get(FACTORY, "requests")[before:] if r["method"] == "POST"]
    assert [(p["path"], p["status"]) for p in posts] == [("/schematics", 201)]  # one POST in three runs
    assert rerun["image_url"] == f"{FACTORY}/image/{applied['id']}/{VERSION}/nocloud-amd64.qcow2"
    assert rerun["installer_image"] == f"{NET}.0.6:8443/installer/{applied['id']}:{VERSION}"
    assert requests.get(f"{FACTORY}/schematics/{applied['id']}", verify=lab.ca, timeout=10).text == applied["schematic"]
    lab.schematic = applied["id"]


def image_task(**options):
    return {"name": "image", "turnkey.cluster.proxmox_image": {
        "schematic_id": options.pop("schematic_id"), "talos_version": options.pop("talos_version", VERSION),
        "factory_url": FACTORY, "storage": "local", **options}}


def image_check_apply_rerun(lab: Lab):
    task = image_task(schematic_id=lab.schematic)
    name = f"talos-{lab.schematic[:12]}-{VERSION}-nocloud-amd64.qcow2"
    code, checked = lab.one(task, check=True, diff=True)
    assert code == 0 and checked["changed"] and checked["volid"] == f"local:import/{name}"
    url = f"{FACTORY}/image/{lab.schematic}/{VERSION}/nocloud-amd64.qcow2"
    assert checked["diff"] == {"before": {}, "after": {"volid": f"local:import/{name}", "url": url}}
    code, applied = lab.one(task)
    assert code == 0 and applied["changed"] and applied["upid"].startswith("UPID:pve:")
    image = requests.get(applied["url"], verify=lab.ca, timeout=10).content
    assert applied["size"] == len(image)
    code, rerun = lab.one(task, check=True)
    assert code == 0 and not rerun["changed"]
    code, rerun = lab.one(task)
    assert code == 0 and not rerun["changed"] and "upid" not in rerun and rerun["size"] == len(image)
    lab.volid = applied["volid"]


def image_5xx_burst_is_retried(lab: Lab):
    lab.fault(kind="http_5xx", count=2, status=503, match="download-url")
    try:
        code, result = lab.one(image_task(schematic_id=EMPTY_ID))
    finally:
        lab.clear_faults()
    # the download POST is not idempotent: each 503 is settled by reading the node's tasks and the storage
    assert code == 0 and result["changed"] and result["reread"] == 2 and result["retried"] == 0
    statuses = [r["status"] for r in lab.lab_get(PVE, "requests") if r["path"].endswith("/download-url")]
    assert statuses[-3:] == [503, 503, 200]


def image_failed_task_reports_proxmox_error_and_log(lab: Lab):
    lab.fault(kind="task_fail", match="download", message="download failed: 404 Not Found")
    try:
        code, result = lab.one(image_task(schematic_id=EMPTY_ID, talos_version="v1.13.8"))
    finally:
        lab.clear_faults()
    assert code != 0 and result["failed"]
    assert "download failed: 404 Not Found" in result["msg"]
    assert result["proxmox_error"] == "download failed: 404 Not Found"
    assert result["task_log"][-1] == "TASK ERROR: download failed: 404 Not Found"
    assert result["upid"].startswith("UPID:pve:")


def wrong_credentials_fail_with_proxmox_text(lab: Lab):
    saved = lab.env["PROXMOX_TOKEN_SECRET"]
    lab.env["PROXMOX_TOKEN_SECRET"] = "not-the-secret"
    try:
        code, result = lab.one(image_task(schematic_id=EMPTY_ID))
    finally:
        lab.env["PROXMOX_TOKEN_SECRET"] = saved
    assert code != 0 and result["status"] == 401 and "Proxmox VE" in result["msg"]


TEMPLATE, NODE_VM = 9100, 201
NODE = {"name": "cp1", "cores": 2, "memory_mb": 2048, "balloon_mb": 1024, "tags": ["talos", "lab"],
        "ip": "127.2.1.1/16", "gateway": "127.2.0.1", "nameservers": ["127.2.0.53"], "searchdomain": "lab.turnkey.test"}


def vm_task(vmid, **options):
    return {"name": "vm", "turnkey.cluster.proxmox_vm": {"vmid": vmid, "storage": "local-zfs", **options}}


def pve_config(lab: Lab, vmid):
    headers = {"Authorization": "PVEAPIToken=%s=%s" % (lab.env["PROXMOX_TOKEN_ID"], lab.secret)}
    answer = requests.get(f"{PVE}/api2/json/nodes/pve/qemu/{vmid}/config", headers=headers, verify=lab.ca, timeout=10)
    return answer.json()["data"]


def pve_put(lab: Lab, vmid, **config):
    headers = {"Authorization": "PVEAPIToken=%s=%s" % (lab.env["PROXMOX_TOKEN_ID"], lab.secret)}
    requests.put(f"{PVE}/api2/json/nodes/pve/qemu/{vmid}/config", headers=headers, data=config, verify=lab.ca,
                 timeout=10).raise_for_status()


def triplet(lab: Lab, task):
    """check mode -> changed, apply -> changed, rerun -> not changed; the applied result."""
    code, checked = lab.one(task, check=True, diff=True)
    assert code == 0 and checked["changed"] and checked["diff"]["before"] == {}, checked.get("msg")
    code, applied = lab.one(task)
    assert applied.get("changes") == checked["changes"]  # check mode tells what the run does
    assert code == 0 and applied["changed"], (applied.get("msg"), applied.get("task_log"))
    code, rerun = lab.one(task, diff=True)
    assert code == 0 and not rerun["changed"] and rerun["changes"] == [], rerun.get("msg")
    return applied


def vm_template_imported_from_the_image(lab: Lab):
    task = vm_task(TEMPLATE, name="talos-template", import_from=lab.volid, state="template", disk_gb=3,
                   tags=["talos", "lab"])  # "lab": the owner tag its clones inherit until configured
    applied = triplet(lab, task)
    assert applied["changes"] == ["create", "template"]
    config = pve_config(lab, TEMPLATE)
    assert config["template"] == 1 and config["bios"] == "ovmf" and config["machine"] == "q35"
    assert config["cpu"] == "host" and config["scsihw"] == "virtio-scsi-single"
    assert config["scsi0"].startswith("local-zfs:base-9100-disk-0,") and "size=3G" in config["scsi0"]
    assert all(option in config["scsi0"] for option in ("iothread=1", "ssd=1", "discard=on"))
    assert config["efidisk0"].startswith("local-zfs:") and "pre-enrolled-keys=0" in config["efidisk0"]
    assert config["agent"] == "enabled=1,fstrim_cloned_disks=1" and "ide2" not in config


def vm_linked_clone_started_with_its_network_identity(lab: Lab):
    applied = triplet(lab, vm_task(NODE_VM, clone_from=TEMPLATE, state="started", disk_gb=4, **NODE))
    assert applied["status"] == "running" and applied["changes"] == ["create", "start"]
    config = pve_config(lab, NODE_VM)
    assert config["scsi0"].startswith(f"local-zfs:base-{TEMPLATE}-disk-0/vm-{NODE_VM}-disk-0,")
    assert config["ipconfig0"] == "ip=127.2.1.1/16,gw=127.2.0.1" and config["balloon"] == 1024
    assert config["ide2"] == f"local-zfs:vm-{NODE_VM}-cloudinit,media=cdrom"  # allocated like Proxmox does
    network = lab.lab_get(PVE, "vms")[str(NODE_VM)]["network"]
    assert network["ip"] == "127.2.1.1" and network["hostname"] == "cp1" and network["nameserver"] == "127.2.0.53"


def clone_posts(lab: Lab, start):
    return [r for r in lab.lab_get(PVE, "requests")[start:] if r["method"] == "POST" and r["path"].endswith("/clone")]


def vm_ambiguous_clone_answer_is_read_back_not_cloned_again(lab: Lab):
    """The clone POST took effect but its answer was lost (504): the module reads the VM instead of
    cloning again (a second POST would fail on 'VM 203 already exists'), then completes it."""
    start = len(lab.lab_get(PVE, "requests"))
    lab.fault(kind="http_5xx_after", status=504, match=f"/qemu/{TEMPLATE}/clone")
    try:
        code, result = lab.one(vm_task(203, clone_from=TEMPLATE, name="w3", state="present", tags=["talos", "lab"],
                                       owner_tag="lab", ip="127.2.2.3/16"))
    finally:
        lab.clear_faults()
    assert code == 0 and result["changes"] == ["create"] and result["reread"] == 1, result.get("msg")
    assert [r["status"] for r in clone_posts(lab, start)] == [504]  # one clone, never a second
    config = pve_config(lab, 203)
    assert config["name"] == "w3" and config["ide2"].startswith("local-zfs:vm-203-cloudinit")


def vm_half_made_clone_is_completed_by_the_next_run(lab: Lab):
    """The clone lands, its follow-up config (identity, cloud-init drive) fails: the next run finishes it."""
    node = {**NODE, "name": "w4", "ip": "127.2.2.4/16", "owner_tag": "lab"}
    task = vm_task(204, clone_from=TEMPLATE, state="started", disk_gb=4, **node)
    lab.fault(kind="http_5xx", status=500, match="PUT /api2/json/nodes/pve/qemu/204/config",
              message="unable to open file - Input/output error")
    try:
        code, failed = lab.one(task)
    finally:
        lab.clear_faults()
    assert code != 0 and "Input/output error" in failed["msg"]
    half = pve_config(lab, 204)
    assert "ide2" not in half and "ipconfig0" not in half  # cloned, but not this node yet
    code, checked = lab.one(task, check=True, diff=True)
    assert code == 0 and "ide2" in checked["changes"] and checked["changes"][-1] == "start", checked.get("msg")
    assert checked["diff"]["after"]["ide2"] == "local-zfs:cloudinit" and "ide2" not in pve_config(lab, 204)
    code, repaired = lab.one(task)
    assert code == 0 and repaired["changes"] == checked["changes"] and repaired["status"] == "running"
    config = pve_config(lab, 204)
    assert config["ide2"].startswith("local-zfs:vm-204-cloudinit")
    assert config["ipconfig0"] == "ip=127.2.2.4/16,gw=127.2.0.1" and config["tags"] == "lab;talos"
    assert lab.lab_get(PVE, "vms")["204"]["network"]["ip"] == "127.2.2.4"
    code, rerun = lab.one(task)
    assert code == 0 and not rerun["changed"]
    for vmid, name in ((203, "w3"), (204, "w4")):  # what it proves it manages, it may destroy
        code, removed = lab.one(vm_task(vmid, name=name, owner_tag="lab", state="absent"))
        assert code == 0 and removed["changes"] == ["destroy"], removed.get("msg")


def vm_foreign_vm_on_the_id_is_refused(lab: Lab):
    """A VM this run cannot prove is its own (name and owner tag) is neither changed nor destroyed."""
    code, _made = lab.one(vm_task(205, import_from=lab.volid, name="someone-else", tags=["prod"], state="present"))
    assert code == 0
    before = pve_config(lab, 205)
    for task in (vm_task(205, clone_from=TEMPLATE, state="started", owner_tag="lab", **{**NODE, "name": "w5"}),
                 vm_task(205, name="w5", owner_tag="lab", state="absent"),
                 vm_task(205, name="someone-else", owner_tag="lab", state="absent")):
        code, refused = lab.one(task)
        assert code != 0 and "VM 205 (name 'someone-else', tags prod) exists but is not one this run manages" \
            in refused["msg"], refused
        assert refused["vm_name"] == "someone-else" and refused["vm_tags"] == ["prod"]
    assert pve_config(lab, 205) == before  # nothing changed
    code, removed = lab.one(vm_task(205, name="someone-else", owner_tag="prod", state="absent"))
    assert code == 0 and removed["changes"] == ["destroy"]


def vm_template_of_another_image_is_refused_and_not_cloned_from(lab: Lab):
    """The template records its image; another Talos version or schematic is never served by it."""
    other = f"local:import/talos-{EMPTY_ID[:12]}-{VERSION}-nocloud-amd64.qcow2"  # image_5xx_burst_is_retried's
    assert pve_config(lab, TEMPLATE)["description"] == f"turnkey.cluster image: {lab.volid}"
    code, refused = lab.one(vm_task(TEMPLATE, name="talos-template", import_from=other, state="template",
                                    disk_gb=3, tags=["talos", "lab"]))
    assert code != 0 and lab.volid in refused["msg"] and other in refused["msg"], refused
    assert refused["template_image"] == lab.volid and refused["wanted_image"] == other
    start = len(lab.lab_get(PVE, "requests"))
    code, refused = lab.one(vm_task(206, clone_from=TEMPLATE, image=other, state="started", **{**NODE, "name": "w6"}))
    assert code != 0 and "nodes are not cloned from an older image" in refused["msg"]
    assert clone_posts(lab, start) == [] and "206" not in lab.lab_get(PVE, "vms")


def vm_boot_wait_fails_on_an_extra_address_and_names_a_silent_agent(lab: Lab):
    task = vm_task(NODE_VM, clone_from=TEMPLATE, state="started", disk_gb=4, wait_agent=30, **NODE)
    lab.fault(kind="agent_extra_address", match=str(NODE_VM), address="192.168.1.77", count=0)
    try:
        code, failed = lab.one(task)
        code_allowed, allowed = lab.one(dict(task, **{"turnkey.cluster.proxmox_vm": dict(
            task["turnkey.cluster.proxmox_vm"], allowed_addresses=["192.168.1.77"])}))
    finally:
        lab.clear_faults()
    assert code != 0 and failed.get("extra_addresses") == ["192.168.1.77"], failed
    assert all(text in failed["msg"] for text in ("cp1", "127.2.1.1", "192.168.1.77", "eth0"))
    assert code_allowed == 0 and allowed["addresses"] == ["127.2.1.1", "192.168.1.77"], allowed.get("msg")
    code, booted = lab.one(task)
    assert code == 0 and booted["addresses"] == ["127.2.1.1"]
    # The empty schematic's image has no guest-agent extension: Talos runs no agent, the wait says why.
    no_agent = f"local:import/talos-{EMPTY_ID[:12]}-{VERSION}-nocloud-amd64.qcow2"
    code, silent = lab.one(vm_task(207, import_from=no_agent, state="started", wait_agent=2, owner_tag="lab",
                                   **{**NODE, "name": "w7", "ip": "127.2.2.7/16"}))
    assert code != 0 and "siderolabs/qemu-guest-agent" in silent["msg"] and "w7" in silent["msg"], silent
    code, removed = lab.one(vm_task(207, name="w7", owner_tag="lab", state="absent"))
    assert code == 0 and removed["changes"] == ["destroy"]


def vm_drift_is_shown_and_corrected(lab: Lab):
    pve_put(lab, NODE_VM, cores=4, tags="talos;lab;manual")
    task = vm_task(NODE_VM, clone_from=TEMPLATE, state="started", disk_gb=4, **NODE)
    code, checked = lab.one(task, check=True, diff=True)
    assert code == 0 and checked["changed"] and checked["changes"] == ["cores", "tags"]
    assert checked["diff"] == {"before": {"cores": 4, "tags": "talos;lab;manual"},
                               "after": {"cores": 2, "tags": "lab;talos"}}
    assert pve_config(lab, NODE_VM)["cores"] == 4  # check mode changed nothing
    code, applied = lab.one(task)
    assert code == 0 and applied["changed"] and pve_config(lab, NODE_VM)["cores"] == 2
    code, rerun = lab.one(task)
    assert code == 0 and not rerun["changed"]


def vm_destructive_change_is_refused(lab: Lab):
    mac_before = pve_config(lab, NODE_VM)["net0"]
    code, refused = lab.one(vm_task(NODE_VM, clone_from=TEMPLATE, state="started", vlan=42, **NODE))
    assert code != 0 and "allow_destructive" in refused["msg"] and refused["destructive"] == ["net0"]
    assert pve_config(lab, NODE_VM)["net0"] == mac_before
    code, smaller = lab.one(vm_task(NODE_VM, clone_from=TEMPLATE, state="started", disk_gb=1, **NODE))
    assert code != 0 and "shrink" in smaller["msg"]


def vm_clone_lock_timeout_is_retried_and_password_login(lab: Lab):
    lab.fault(kind="lock_timeout", match="pve-storage-local-zfs")
    try:
        code, result = lab.one(vm_task(202, clone_from=TEMPLATE, name="w1", state="present"))
    finally:
        lab.clear_faults()
    assert code == 0 and result["changed"] and result["retried"] == 1, result.get("msg")
    assert pve_config(lab, 202)["scsi0"].startswith(f"local-zfs:base-{TEMPLATE}-disk-0/vm-202-disk-0,")
    creds = lab.handle.json("credentials.json")["proxmox"]
    saved = dict(lab.env)
    for key in ("PROXMOX_TOKEN_ID", "PROXMOX_TOKEN_SECRET"):
        del lab.env[key]
    lab.env.update(PROXMOX_USER=creds["username"], PROXMOX_PASSWORD=creds["password"])
    try:
        code, removed = lab.one(vm_task(202, name="w1", state="absent"))
    finally:
        lab.env = saved
    assert code == 0 and removed["changed"] and removed["changes"] == ["destroy"], removed.get("msg")


def vm_stopped_with_module_defaults(lab: Lab):
    """The action group turnkey.cluster.proxmox carries the connection options (no PROXMOX_URL here)."""
    url = lab.env.pop("PROXMOX_URL")
    defaults = {"group/turnkey.cluster.proxmox": {"api_url": url, "node": "pve"}}
    try:
        task = vm_task(NODE_VM, name=NODE["name"], state="stopped")
        code, checked = lab.one(task, defaults, check=True)
        assert code == 0 and checked["changed"] and checked["changes"] == ["stop"], checked.get("msg")
        code, applied = lab.one(task, defaults)
        assert code == 0 and applied["changed"] and applied["status"] == "stopped"
        code, rerun = lab.one(task, defaults)
        assert code == 0 and not rerun["changed"]
    finally:
        lab.env["PROXMOX_URL"] = url


def vm_absent(lab: Lab):
    # a bare state=absent proves nothing about the VM on the id: refused, the VM stays
    code, refused = lab.one(vm_task(NODE_VM, state="absent"))
    assert code != 0 and "state=absent needs name or owner_tag" in refused["msg"], refused
    assert pve_config(lab, NODE_VM)["name"] == NODE["name"]
    task = vm_task(NODE_VM, name=NODE["name"], owner_tag="lab", state="absent")
    code, checked = lab.one(task, check=True)
    assert code == 0 and checked["changed"] and checked["changes"] == ["destroy"]
    code, applied = lab.one(task)
    assert code == 0 and applied["changed"]
    code, rerun = lab.one(task)
    assert code == 0 and not rerun["changed"]
    headers = {"Authorization": "PVEAPIToken=%s=%s" % (lab.env["PROXMOX_TOKEN_ID"], lab.secret)}
    vms = requests.get(f"{PVE}/api2/json/nodes/pve/qemu", headers=headers, verify=lab.ca, timeout=10).json()["data"]
    assert {vm["vmid"] for vm in vms} == {TEMPLATE}


def the_twins_refused_nothing(lab: Lab):
    assert lab.lab_get(PVE, "rejects") == []
    assert lab.lab_get(FACTORY, "rejects") == []


STEPS = (schematic_ids_match_the_factory, schematic_online_check_apply_rerun, image_check_apply_rerun,
         image_5xx_burst_is_retried, image_failed_task_reports_proxmox_error_and_log,
         wrong_credentials_fail_with_proxmox_text, vm_template_imported_from_the_image,
         vm_linked_clone_started_with_its_network_identity, vm_ambiguous_clone_answer_is_read_back_not_cloned_again,
         vm_half_made_clone_is_completed_by_the_next_run, vm_foreign_vm_on_the_id_is_refused,
         vm_template_of_another_image_is_refused_and_not_cloned_from,
         vm_boot_wait_fails_on_an_extra_address_and_names_a_silent_agent, vm_drift_is_shown_and_corrected,
         vm_destructive_change_is_refused, vm_clone_lock_timeout_is_retried_and_password_login,
         vm_stopped_with_module_defaults, vm_absent,
         the_twins_refused_nothing)


def test_proxmox_modules_on_the_lab(tmp_path_factory):
    handle = LabHandle(tmp_path_factory.mktemp("pve-modules") / "state", NET)
    try:
        handle.run("up", "--profile", "fast", "--components", "proxmox,image_factory")
        lab = Lab(handle, tmp_path_factory.mktemp("pve-plays"))
        for step in STEPS:
            step(lab)
    finally:
        handle.run("down", ok=False)
        handle.kill_everything()
