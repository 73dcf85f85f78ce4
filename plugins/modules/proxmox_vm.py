#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proxmox_vm
short_description: A Talos node's virtual machine on Proxmox VE, with drift detection
version_added: 0.1.0
description:
  - Creates, updates, starts, stops, converts to a template and removes the QEMU virtual machine of a
    Talos node, with a pre-assigned VM id.
  - The shape is the collection's node shape - UEFI (OVMF) with an EFI disk without pre-enrolled keys,
    machine q35, CPU type host, VirtIO SCSI single, C(scsi0) with iothread, ssd and discard, the QEMU guest
    agent with fstrim, C(net0) VirtIO on a bridge (with a VLAN tag) and a cloud-init drive carrying the
    node's network identity (C(ipconfig0), C(nameserver), C(searchdomain); the VM name is the hostname).
  - The system disk is imported from an image volume (O(import_from), see M(turnkey.cluster.proxmox_image))
    or is a linked clone of a template (O(clone_from)).
  - What to do is planned from the VM as Proxmox has it and the options (module_utils proxmox_vm_plan),
    then applied in order; check mode and diff report the plan. A linked clone whose follow-up config
    failed (no cloud-init drive, the template's shape) is completed by the next run.
  - A create, clone, start, stop or destroy that got an ambiguous answer (a timeout, a reset, a gateway's
    5xx - it may have happened) is not sent again blindly; the VM is read first and the call repeated only
    when it did not take effect.
  - An existing VM is compared with what is asked; what can change in place (cores, memory, balloon, CPU
    type, tags, agent, cloud-init network, name, a bigger disk) is changed, and RV(diff) shows it.
    Changes that replace or rewire hardware (the NIC's bridge/VLAN/model, firmware, machine type, SCSI
    controller) are refused unless O(allow_destructive=true); a smaller disk is always refused.
  - Every task (create, clone, config, resize, start, stop, template, destroy) is waited for; a failed
    task fails the module with Proxmox's error and the task log.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.proxmox
options:
  vmid:
    description: The VM id.
    type: int
    required: true
  name:
    description:
      - VM name, the node's hostname (a DNS label). Required unless O(state=absent).
      - With O(state=absent), O(name) or O(owner_tag) (or both) is required; the VM on O(vmid) is destroyed
        only when it matches them.
    type: str
  state:
    description:
      - V(present) - the VM exists with this shape (power state untouched); V(started) / V(stopped) - and
        is running / stopped; V(template) - and is a template (stopped first); V(absent) - it does not exist
        (stopped first, disks purged).
      - V(absent) without O(name) and O(owner_tag) is refused before anything is touched, whether a VM is on
        O(vmid) or not - nothing would prove that VM is one this caller manages.
    type: str
    choices: [present, started, stopped, template, absent]
    default: present
  import_from:
    description: Image volume to import the system disk from, C(local:import/talos-....qcow2).
    type: str
  clone_from:
    description: VM id of a template to make a linked clone of.
    type: int
  image:
    description:
      - The image the system disk must come from, as the volume C(local:import/talos-....qcow2) (the file name
        carries the schematic and the Talos version). Defaults to O(import_from).
      - A VM created from an image records it in its description, on a line that starts with
        C(turnkey.cluster image) followed by the volume; linked clones inherit that line from their template.
      - A template (existing, or converted with O(state=template)) holding another image, or none recorded,
        is refused and left as it is; with O(clone_from), a template holding another image is refused before
        anything is cloned. Existing VMs that are not templates are not checked (they are not re-imaged).
    type: str
  owner_tag:
    description:
      - A tag that marks the VMs this caller manages (the collection uses the cluster name). An existing VM
        on O(vmid) is changed or destroyed only when its tags hold it and its name is O(name) (each checked
        when given); otherwise the module fails naming the VM's name and tags and changes nothing.
    type: str
  storage:
    description: Storage of the system disk, EFI disk and cloud-init drive.
    type: str
    default: local-zfs
  disk_gb:
    description: Size of the system disk in GiB; the disk is grown to it (never shrunk).
    type: int
  cores:
    description: CPU cores.
    type: int
    default: 2
  cpu:
    description: CPU type.
    type: str
    default: host
  memory_mb:
    description: Memory in MiB.
    type: int
    default: 2048
  balloon_mb:
    description: Balloon floor in MiB (C(0) turns ballooning off); not set means no floor is configured.
    type: int
  bridge:
    description: Bridge of C(net0).
    type: str
    default: vmbr0
  vlan:
    description: VLAN tag of C(net0).
    type: int
  tags:
    description: Tags of the VM.
    type: list
    elements: str
    default: []
  agent:
    description: Enable the QEMU guest agent (with fstrim of cloned disks).
    type: bool
    default: true
  ip:
    description: Static address of the node with its prefix, C(10.2.1.1/16), for C(ipconfig0).
    type: str
  gateway:
    description: Default gateway for C(ipconfig0).
    type: str
  nameservers:
    description: DNS resolvers for the cloud-init drive.
    type: list
    elements: str
    default: []
  searchdomain:
    description: DNS search domain for the cloud-init drive.
    type: str
  onboot:
    description: Start the VM when the host boots.
    type: bool
    default: true
  allow_destructive:
    description:
      - Apply changes that rewire or replace hardware of an existing VM (NIC bridge/VLAN/model, firmware,
        machine type, SCSI controller). Without it such drift fails the module and names the fields.
    type: bool
    default: false
  timeout:
    description: Seconds each task may run.
    type: int
    default: 600
  wait_agent:
    description:
      - With O(state=started), wait up to this many seconds until the QEMU guest agent reports the
        address of O(ip) (any IPv4 address when O(ip) is unset), that is until the node has booted with
        its network identity. C(0) does not wait. Not done in check mode.
      - Talos answers through the agent once the C(siderolabs/qemu-guest-agent) extension is in its image;
        when the agent never answers, the failure says so.
      - The link carrying O(ip) must hold no other address (link-local ones aside) than O(ip) and
        O(allowed_addresses); another one (a DHCP lease beside the static address) fails the wait at once,
        naming the node, the planned and the extra addresses.
    type: int
    default: 0
  allowed_addresses:
    description: Addresses the node's primary link may carry besides O(ip) (the control plane's VIP).
    type: list
    elements: str
    default: []
  storage_slots:
    description:
      - At most this many requests that take the storage's lock (the clone, the create, a config that adds a
        disk such as the cloud-init drive, the conversion to a template, the destroy) run at once
        against O(storage) of this O(api_url) and O(node), counted across every module process of this
        controller (Ansible's forks, parallel runs of the same user). A slot is held from the request until
        the task it started has ended; everything else (reading, the start, the boot wait) runs uncapped.
      - Proxmox gives up waiting for a storage lock after 10 s (C(can't lock file ... - got timeout)), so
        many disk operations at once fail without a cap; a cap here, instead of a C(throttle) on the task,
        leaves the rest of each module run in parallel (a resize and a start take the VM's lock only).
      - Each slot is a lock file (C(flock)) in O(storage_slots_dir); a module that dies frees its slot.
        A request waits up to O(timeout) seconds for a slot, then fails naming the folder.
      - C(0) turns the cap off. Nothing is locked in check mode (nothing is sent).
    type: int
    default: 3
  storage_slots_dir:
    description:
      - Folder of the slot lock files, one sub-folder per endpoint, node and storage. Created with mode
        C(0700); an existing one must belong to the user running the module and be writable by it alone.
      - Runs that must share a cap must use the same folder. Defaults to C(turnkey-proxmox-slots-<uid>) in
        the system's temporary folder.
    type: path
attributes:
  check_mode:
    support: full
    description: Reads the VM and reports what would be created, changed, started or removed.
  diff_mode:
    support: full
    description: Returns the compared configuration before and after.
"""

EXAMPLES = r"""
- name: The VM of a Talos node, started
  turnkey.cluster.proxmox_vm:
    api_url: "{{ proxmox.api_url }}"
    api_token_id: "{{ proxmox.token_id }}"
    api_token_secret: "{{ proxmox.token_secret }}"
    node: "{{ proxmox.node }}"
    vmid: "{{ node_vmid }}"
    name: "{{ inventory_hostname }}"
    state: started
    import_from: "{{ image.volid }}"
    storage: "{{ proxmox.vm_storage }}"
    disk_gb: "{{ node_disk_gb }}"
    cores: "{{ node_cores }}"
    memory_mb: "{{ node_memory_mb }}"
    balloon_mb: "{{ node_balloon_mb }}"
    bridge: "{{ proxmox.bridge }}"
    tags: [talos, "{{ cluster_name }}"]
    owner_tag: "{{ cluster_name }}"
    ip: "{{ node_ip }}/{{ cluster_network.cidr | ansible.utils.ipaddr('prefix') }}"
    gateway: "{{ cluster_network.gateway }}"
    nameservers: "{{ cluster_network.dns_servers }}"
    searchdomain: "{{ cluster_domain }}"

- name: Remove it (only if the VM on 1500 is named cp1 and tagged with the cluster's name)
  turnkey.cluster.proxmox_vm:
    vmid: 1500
    name: cp1
    owner_tag: "{{ cluster_name }}"
    state: absent
"""

RETURN = r"""
vmid:
  description: The VM id.
  returned: always
  type: int
status:
  description: Power state after the module ran (C(running), C(stopped)); absent when the VM is gone.
  returned: when the VM exists
  type: str
changes:
  description: The configuration keys that were (or would be) changed.
  returned: success
  type: list
  elements: str
diff:
  description: Compared configuration before and after.
  returned: in diff mode
  type: dict
destructive:
  description: Fields whose change needs O(allow_destructive).
  returned: when such drift was found
  type: list
  elements: str
retried:
  description: Transient failures (lock timeouts, 502/503/504, connection errors) absorbed by retrying.
  returned: success
  type: int
reread:
  description: Ambiguous answers to a create, clone or power call that were settled by reading the VM.
  returned: success
  type: int
extra_addresses:
  description: Addresses on the node's primary link that are not planned (the boot wait failed on them).
  returned: when the boot wait found such addresses
  type: list
  elements: str
storage_slot_wait_s:
  description: Seconds the module waited for a storage slot (O(storage_slots)), summed over its requests.
  returned: success
  type: float
addresses:
  description: IPv4 addresses the guest agent reported (the loopback interface excluded).
  returned: when O(wait_agent) waited
  type: list
  elements: str
  sample: [10.2.1.1]
"""

import ipaddress
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils.proxmox import (
    PROXMOX_REQUIRED_ONE_OF,
    PROXMOX_REQUIRED_TOGETHER,
    ProxmoxClient,
    ProxmoxError,
    proxmox_argument_spec,
)
from ansible_collections.turnkey.cluster.plugins.module_utils.proxmox_slots import (
    SlotError,
    StorageSlots,
    default_folder,
    slot_key,
)
from ansible_collections.turnkey.cluster.plugins.module_utils.proxmox_vm_plan import (
    PlanError,
    plan,
    size_gb,
)

# Config keys that are disks: setting one allocates a volume on the storage (under its lock).
DRIVE_KEY = re.compile(r"^((scsi|virtio|sata|ide)\d+|efidisk0|tpmstate0)$")


def routable(address):
    """The address as text, or None for a link-local one (every IPv6 link has one) or garbage."""
    try:
        parsed = ipaddress.ip_address(str(address).split("%", maxsplit=1)[0])
    except ValueError:
        return None
    return None if parsed.is_link_local else str(parsed)


class Vm:
    """Reads the VM, asks the plan what to do, and applies it."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.vmid = module.params["vmid"]
        self.result = dict(changed=False, vmid=self.vmid, changes=[])
        self.slots = StorageSlots(self.params["storage_slots_dir"] or default_folder(),
                                  slot_key(client.endpoint, client.node, self.params["storage"]),
                                  self.params["storage_slots"], self.params["timeout"])

    def on_storage(self, call, *args, **kwargs):
        """call(...) while holding one of the storage's slots: the requests that take the storage's lock."""
        try:
            with self.slots.hold():
                return call(*args, **kwargs)
        except SlotError as exc:
            raise ProxmoxError("Proxmox VE: VM %s: %s" % (self.vmid, exc), proxmox_error=str(exc)) from None

    def path(self, *parts):
        return self.client.node_path("qemu", self.vmid, *parts)

    def task(self, method, parts, what, landed=None, **params):
        self.client.run_task(method, self.path(*parts), "%s of VM %s" % (what, self.vmid),
                             timeout=self.params["timeout"], landed=landed, **params)

    # -- reading ---------------------------------------------------------------------------------------
    def read(self, vmid=None, wait_unlock=True):
        """{"config", "status"} of the VM, or None. A locked VM (a create or clone still running) is
        waited for, up to the task timeout, so the plan sees it finished."""
        vmid = self.vmid if vmid is None else vmid
        deadline = time.monotonic() + self.params["timeout"]
        while True:
            vms = self.client.get(self.client.node_path("qemu"))
            if not any(int(vm.get("vmid")) == vmid for vm in vms or []):
                return None
            config = self.client.get(self.client.node_path("qemu", vmid, "config"))
            if not (wait_unlock and config.get("lock")) or time.monotonic() > deadline:
                status = self.client.get(self.client.node_path("qemu", vmid, "status", "current")).get("status")
                return {"config": config, "status": status}
            time.sleep(0.5)

    def vm_landed(self):
        """After an ambiguous answer to a create or clone: it took effect when the VM exists once its
        task is done (a failed task leaves no VM)."""
        current = self.read()
        return current is not None and not current["config"].get("lock")

    def power_landed(self, status):
        return lambda: (self.read() or {}).get("status") == status

    # -- apply -----------------------------------------------------------------------------------------
    def apply(self, actions):
        p = self.params
        for action, argument in actions:
            # the clone, the create, a new disk, the template's base volumes and the purge take the storage's
            # lock: each holds a storage slot (storage_slots) until its task has ended. A resize takes the VM's
            # config lock only (Proxmox resizes the volume without the storage's lock), like a start.
            if action == "clone":
                self.on_storage(self.client.run_task, "post", self.client.node_path("qemu", p["clone_from"], "clone"),
                                "linked clone of %s to VM %s" % (p["clone_from"], self.vmid),
                                timeout=p["timeout"], landed=self.vm_landed, **argument)
            elif action == "create":
                self.on_storage(self.client.run_task, "post", self.client.node_path("qemu"),
                                "create of VM %s" % self.vmid, timeout=p["timeout"], landed=self.vm_landed, **argument)
            elif action == "config":
                if any(DRIVE_KEY.match(key) for key in argument):
                    self.on_storage(self.client.put, self.path("config"), **argument)
                else:
                    self.client.put(self.path("config"), **argument)
            elif action == "grow":
                config = self.client.get(self.path("config"))
                if size_gb(config.get("scsi0", "")) < argument:
                    self.task("put", ("resize",), "resize", disk="scsi0", size="%dG" % argument)
            elif action == "resize":
                self.task("put", ("resize",), "resize", disk="scsi0", size="%dG" % argument)
            elif action == "start":
                self.task("post", ("status", "start"), "start", landed=self.power_landed("running"))
            elif action == "stop":
                self.task("post", ("status", "stop"), "stop", landed=self.power_landed("stopped"))
            elif action == "template":
                self.on_storage(self.task, "post", ("template",), "conversion to a template",
                                landed=lambda: bool((self.read() or {"config": {}})["config"].get("template")))
            elif action == "destroy":
                self.on_storage(self.task, "delete", (), "destroy", landed=lambda: self.read() is None, purge=1)

    def run(self):
        p = self.params
        current = self.read()
        template = None
        if current is None and p["clone_from"] is not None and p["state"] != "absent" and p["image"]:
            template = (self.read(p["clone_from"], wait_unlock=False) or {}).get("config")
        try:
            todo = plan(p, current, template)
        except PlanError as exc:
            self.module.fail_json(msg=exc.msg, **exc.fields)
        self.result.update(changed=bool(todo.changes), changes=todo.changes)
        if todo.status:
            self.result["status"] = todo.status
        if todo.destructive:
            self.result["destructive"] = todo.destructive
        if self.module._diff and todo.diff is not None:
            self.result["diff"] = todo.diff
        if not self.module.check_mode:
            self.apply(todo.actions)
        return self.result

    # -- the boot wait ---------------------------------------------------------------------------------
    def wait_agent(self):
        """Poll the guest agent until the node's address shows up; the agent answers 500 until it runs.
        The node must have nothing else on that link: an address that is not planned (a DHCP lease beside
        the static one, a leftover) fails the wait at once."""
        name = self.params["name"]
        wanted = (self.params["ip"] or "").split("/")[0] or None
        allowed = set(self.params["allowed_addresses"]) | {wanted}
        deadline = time.monotonic() + self.params["wait_agent"]
        delay, last, answered = 0.2, "no answer yet", False
        while True:
            try:
                answer = self.client.get(self.path("agent", "network-get-interfaces"))
                answered = True
                links = {iface.get("name"): [a for a in (routable(entry.get("ip-address"))
                                                         for entry in iface.get("ip-addresses") or []) if a]
                         for iface in answer.get("result", []) if iface.get("name") != "lo"}
                addresses = [a for found in links.values() for a in found if ipaddress.ip_address(a).version == 4]
                primary = [link for link, found in links.items() if wanted in found]
                if primary:
                    extra = sorted(a for a in links[primary[0]] if a not in allowed)
                    if extra:
                        self.module.fail_json(
                            msg="Node %s (VM %s) has %s on its primary link %s besides its planned address %s: "
                                "a second address (a DHCP lease, a leftover) makes its traffic leave from an "
                                "address the cluster does not know. Turn DHCP off on that network for the node "
                                "(or reserve nothing for its MAC) and reboot it."
                                % (name, self.vmid, ", ".join(extra), primary[0], wanted),
                            vmid=self.vmid, planned_address=wanted, extra_addresses=extra, addresses=addresses,
                            changes=self.result["changes"])
                if addresses and (wanted is None or primary):
                    self.result["addresses"] = addresses
                    return
                last = "the agent reports %s, not %s" % (", ".join(addresses) or "no address", wanted)
            except ProxmoxError as exc:
                last = exc.proxmox_error or str(exc)
            if time.monotonic() >= deadline:
                hint = "" if answered else (
                    " The agent never answered: Talos runs it only when the image's schematic has the "
                    "siderolabs/qemu-guest-agent extension (talos_image.extensions).")
                self.module.fail_json(msg="VM %s (%s) did not report its address %s through the QEMU guest agent "
                                          "within %d s: %s.%s" % (self.vmid, name, wanted or "(any)",
                                                                  self.params["wait_agent"], last, hint),
                                      vmid=self.vmid, proxmox_error=last, changes=self.result["changes"])
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def main():
    argument_spec = proxmox_argument_spec()
    argument_spec.update(
        vmid=dict(type="int", required=True),
        name=dict(type="str"),
        state=dict(type="str", choices=["present", "started", "stopped", "template", "absent"], default="present"),
        import_from=dict(type="str"),
        clone_from=dict(type="int"),
        image=dict(type="str"),
        owner_tag=dict(type="str"),
        storage=dict(type="str", default="local-zfs"),
        disk_gb=dict(type="int"),
        cores=dict(type="int", default=2),
        cpu=dict(type="str", default="host"),
        memory_mb=dict(type="int", default=2048),
        balloon_mb=dict(type="int"),
        bridge=dict(type="str", default="vmbr0"),
        vlan=dict(type="int"),
        tags=dict(type="list", elements="str", default=[]),
        agent=dict(type="bool", default=True),
        ip=dict(type="str"),
        gateway=dict(type="str"),
        nameservers=dict(type="list", elements="str", default=[]),
        searchdomain=dict(type="str"),
        onboot=dict(type="bool", default=True),
        allow_destructive=dict(type="bool", default=False),
        timeout=dict(type="int", default=600),
        wait_agent=dict(type="int", default=0),
        allowed_addresses=dict(type="list", elements="str", default=[]),
        storage_slots=dict(type="int", default=3),
        storage_slots_dir=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_together=PROXMOX_REQUIRED_TOGETHER, required_one_of=PROXMOX_REQUIRED_ONE_OF,
                           mutually_exclusive=[["import_from", "clone_from"]])
    client = ProxmoxClient(module)
    vm = Vm(module, client)
    try:
        result = vm.run()
        if module.params["state"] == "started" and module.params["wait_agent"] > 0 and not module.check_mode:
            vm.wait_agent()
    except ProxmoxError as exc:
        client.fail(exc, vmid=module.params["vmid"], changes=vm.result["changes"])
    result.update(retried=client.retried, reread=client.reread,
                  storage_slot_wait_s=round(vm.slots.waited, 2))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
