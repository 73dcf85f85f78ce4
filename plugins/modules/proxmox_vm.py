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
    description: VM name, the node's hostname (a DNS label). Required unless O(state=absent).
    type: str
  state:
    description:
      - V(present) - the VM exists with this shape (power state untouched); V(started) / V(stopped) - and
        is running / stopped; V(template) - and is a template (stopped first); V(absent) - it does not exist
        (stopped first, disks purged).
    type: str
    choices: [present, started, stopped, template, absent]
    default: present
  import_from:
    description: Image volume to import the system disk from, C(local:import/talos-....qcow2).
    type: str
  clone_from:
    description: VM id of a template to make a linked clone of.
    type: int
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
      - Talos answers through the agent once the C(siderolabs/qemu-guest-agent) extension is in its image.
    type: int
    default: 0
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
    ip: "{{ node_ip }}/{{ cluster_network.cidr | ansible.utils.ipaddr('prefix') }}"
    gateway: "{{ cluster_network.gateway }}"
    nameservers: "{{ cluster_network.dns_servers }}"
    searchdomain: "{{ cluster_domain }}"

- name: Remove it
  turnkey.cluster.proxmox_vm:
    vmid: 1500
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
addresses:
  description: IPv4 addresses the guest agent reported (the loopback interface excluded).
  returned: when O(wait_agent) waited
  type: list
  elements: str
  sample: [10.2.1.1]
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils.proxmox import (
    PROXMOX_REQUIRED_ONE_OF,
    PROXMOX_REQUIRED_TOGETHER,
    ProxmoxClient,
    ProxmoxError,
    proxmox_argument_spec,
)

# Config keys compared and changed in place, and those that need allow_destructive.
SAFE = ("name", "cores", "cpu", "memory", "balloon", "tags", "agent", "onboot", "ipconfig0", "nameserver",
        "searchdomain")
DESTRUCTIVE = ("net0", "bios", "machine", "scsihw")


def prop(value):
    """A Proxmox property string as a dict; a bare first item is stored under ''."""
    result = {}
    for item in str(value).split(","):
        if not item:
            continue
        key, sep, val = item.partition("=")
        if sep:
            result[key] = val
        else:
            result[""] = key
    return result


def size_gb(drive):
    size = prop(drive).get("size", "0")
    units = {"K": 1.0 / 1024 / 1024, "M": 1.0 / 1024, "G": 1.0, "T": 1024.0}
    if size and size[-1] in units:
        return float(size[:-1]) * units[size[-1]]
    return float(size or 0) / 1024 ** 3


class Vm:
    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.vmid = module.params["vmid"]
        self.result = dict(changed=False, vmid=self.vmid, changes=[])

    def path(self, *parts):
        return self.client.node_path("qemu", self.vmid, *parts)

    def task(self, method, parts, what, **params):
        self.client.run_task(method, self.path(*parts), "%s of VM %s" % (what, self.vmid),
                             timeout=self.params["timeout"], **params)

    def exists(self):
        vms = self.client.get(self.client.node_path("qemu"))
        return any(int(vm.get("vmid")) == self.vmid for vm in vms or [])

    def status(self):
        return self.client.get(self.path("status", "current")).get("status")

    # -- the wanted shape ------------------------------------------------------------------------------
    def wanted(self):
        p = self.params
        net = "virtio,bridge=%s" % p["bridge"]
        if p["vlan"] is not None:
            net += ",tag=%d" % p["vlan"]
        wanted = dict(name=p["name"], cores=p["cores"], cpu=p["cpu"], memory=p["memory_mb"],
                      tags=";".join(sorted(set(p["tags"]))), agent="enabled=1,fstrim_cloned_disks=1" if p["agent"]
                      else "enabled=0", onboot=1 if p["onboot"] else 0, net0=net, bios="ovmf", machine="q35",
                      scsihw="virtio-scsi-single")
        if p["balloon_mb"] is not None:
            wanted["balloon"] = p["balloon_mb"]
        if p["ip"]:
            wanted["ipconfig0"] = "ip=%s" % p["ip"] + (",gw=%s" % p["gateway"] if p["gateway"] else "")
        if p["nameservers"]:
            wanted["nameserver"] = " ".join(p["nameservers"])
        if p["searchdomain"]:
            wanted["searchdomain"] = p["searchdomain"]
        if not wanted["tags"]:
            del wanted["tags"]
        return wanted

    @staticmethod
    def same(key, want, have):
        if have is None:
            return False
        if key == "net0":
            have_p, want_p = prop(have), prop(want)
            model = [k for k in have_p if k in ("virtio", "e1000", "rtl8139", "vmxnet3")]
            have_p.pop(model[0] if model else "", None)
            return (model[0] if model else None) == want_p.pop("") and have_p == want_p
        if key == "agent":
            return prop(have) == prop(want) or (prop(have).get("enabled", prop(have).get("")) == "0"
                                                and prop(want).get("enabled") == "0")
        if key == "tags":
            return sorted(str(have).replace(",", ";").split(";")) == sorted(str(want).split(";"))
        return str(have) == str(want)

    # -- create ----------------------------------------------------------------------------------------
    def create(self, wanted):
        p = self.params
        storage = p["storage"]
        if p["clone_from"] is not None:
            self.client.run_task("post", self.client.node_path("qemu", p["clone_from"], "clone"),
                                 "linked clone of %s to VM %s" % (p["clone_from"], self.vmid),
                                 timeout=p["timeout"], newid=self.vmid, name=p["name"], full=0)
            config = dict(wanted)
            config["ide2"] = "%s:cloudinit" % storage
            self.client.put(self.path("config"), **config)
        else:
            scsi0 = "%s:0,import-from=%s,iothread=1,ssd=1,discard=on" % (storage, p["import_from"])
            params = dict(wanted, vmid=self.vmid, scsi0=scsi0, ostype="l26", boot="order=scsi0",
                          efidisk0="%s:1,efitype=4m,pre-enrolled-keys=0" % storage, serial0="socket")
            if p["state"] != "template":  # a template carries no node identity; its clones get the drive
                params["ide2"] = "%s:cloudinit" % storage
            self.client.run_task("post", self.client.node_path("qemu"), "create of VM %s" % self.vmid,
                                 timeout=p["timeout"], **params)
        if p["disk_gb"]:
            self.grow()

    def grow(self):
        config = self.client.get(self.path("config"))
        if size_gb(config.get("scsi0", "")) < self.params["disk_gb"]:
            self.task("put", ("resize",), "resize", disk="scsi0", size="%dG" % self.params["disk_gb"])

    # -- main ------------------------------------------------------------------------------------------
    def run(self):
        p = self.params
        state = p["state"]
        exists = self.exists()
        if state == "absent":
            return self.absent(exists)
        if not p["name"]:
            self.module.fail_json(msg="name is required unless state=absent")
        wanted = self.wanted()
        if not exists:
            if p["import_from"] is None and p["clone_from"] is None:
                self.module.fail_json(msg="VM %s does not exist: import_from or clone_from is needed to create it"
                                      % self.vmid)
            self.result["changed"] = True
            self.result["changes"] = ["create"]
            if self.module._diff:
                self.result["diff"] = dict(before={}, after=dict(wanted, vmid=self.vmid))
            if not self.module.check_mode:
                self.create(wanted)
            self.power(state, created=True)
            return self.result
        config = self.client.get(self.path("config"))
        changes = {k: v for k, v in wanted.items() if not self.same(k, v, config.get(k))}
        destructive = sorted(k for k in changes if k in DESTRUCTIVE)
        grow = p["disk_gb"] and size_gb(config.get("scsi0", "")) < p["disk_gb"]
        if p["disk_gb"] and 0 < p["disk_gb"] < size_gb(config.get("scsi0", "")) - 0.001:
            self.module.fail_json(msg="VM %s: scsi0 is %.1f GiB, disk_gb %d would shrink it; Proxmox cannot shrink "
                                      "disks" % (self.vmid, size_gb(config.get("scsi0", "")), p["disk_gb"]),
                                  vmid=self.vmid)
        if destructive and not p["allow_destructive"]:
            before = {k: config.get(k) for k in destructive}
            after = {k: changes[k] for k in destructive}
            self.module.fail_json(msg="VM %s: changing %s needs allow_destructive=true (it rewires or replaces "
                                      "hardware)" % (self.vmid, ", ".join(destructive)),
                                  destructive=destructive, diff=dict(before=before, after=after), vmid=self.vmid)
        keys = sorted(changes) + (["scsi0"] if grow else [])
        if keys:
            self.result["changed"] = True
            self.result["changes"] = keys
            if destructive:
                self.result["destructive"] = destructive
            if self.module._diff:
                before = {k: config.get(k) for k in changes}
                after = dict(changes)
                if grow:
                    before["disk_gb"] = round(size_gb(config.get("scsi0", "")), 3)
                    after["disk_gb"] = p["disk_gb"]
                self.result["diff"] = dict(before=before, after=after)
        if not self.module.check_mode and keys:
            if changes:
                update = dict(changes)
                if "net0" in update:  # keep the MAC: it is the node's identity on the network
                    macs = [v for k, v in prop(config.get("net0", "")).items()
                            if k in ("virtio", "e1000", "rtl8139", "vmxnet3")]
                    if macs:
                        update["net0"] = update["net0"].replace("virtio", "virtio=%s" % macs[0], 1)
                self.client.put(self.path("config"), digest=config["digest"], **update)
            if grow:
                self.grow()
        self.power(state, created=False, is_template=bool(config.get("template")))
        return self.result

    def power(self, state, created, is_template=False):
        if is_template and state in ("started", "stopped", "present", "template"):
            if state == "started":
                self.module.fail_json(msg="VM %s is a template: it cannot be started" % self.vmid)
            self.result["status"] = "stopped"
            return
        status = "stopped" if created and self.module.check_mode else self.status()
        if state == "started" and status != "running":
            self.mark("start")
            if not self.module.check_mode:
                self.task("post", ("status", "start"), "start")
            status = "running"
        elif state in ("stopped", "template") and status == "running":
            self.mark("stop")
            if not self.module.check_mode:
                self.task("post", ("status", "stop"), "stop")
            status = "stopped"
        if state == "template":
            self.mark("template")
            if not self.module.check_mode:
                self.task("post", ("template",), "conversion to a template")
        self.result["status"] = status

    def wait_agent(self):
        """Poll the guest agent until the node's address shows up; the agent answers 500 until it runs."""
        wanted = (self.params["ip"] or "").split("/")[0] or None
        deadline = time.monotonic() + self.params["wait_agent"]
        delay, last = 0.2, "no answer yet"
        while True:
            try:
                answer = self.client.get(self.path("agent", "network-get-interfaces"))
                addresses = [a.get("ip-address") for iface in answer.get("result", []) if iface.get("name") != "lo"
                             for a in iface.get("ip-addresses") or [] if a.get("ip-address-type") == "ipv4"]
                if addresses and (wanted is None or wanted in addresses):
                    self.result["addresses"] = addresses
                    return
                last = "the agent reports %s, not %s" % (", ".join(addresses) or "no address", wanted)
            except ProxmoxError as exc:
                last = exc.proxmox_error or str(exc)
            if time.monotonic() >= deadline:
                self.module.fail_json(msg="VM %s (%s) did not report its address %s through the QEMU guest agent "
                                          "within %d s: %s" % (self.vmid, self.params["name"], wanted or "(any)",
                                                               self.params["wait_agent"], last),
                                      vmid=self.vmid, proxmox_error=last, changes=self.result["changes"])
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def mark(self, action):
        self.result["changed"] = True
        self.result["changes"] = self.result["changes"] + [action]

    def absent(self, exists):
        if not exists:
            return self.result
        self.result["changed"] = True
        self.result["changes"] = ["destroy"]
        if self.module._diff:
            self.result["diff"] = dict(before={"vmid": self.vmid}, after={})
        if self.module.check_mode:
            return self.result
        if self.status() == "running":
            self.task("post", ("status", "stop"), "stop")
        self.task("delete", (), "destroy", purge=1)
        return self.result


def main():
    argument_spec = proxmox_argument_spec()
    argument_spec.update(
        vmid=dict(type="int", required=True),
        name=dict(type="str"),
        state=dict(type="str", choices=["present", "started", "stopped", "template", "absent"], default="present"),
        import_from=dict(type="str"),
        clone_from=dict(type="int"),
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
    result["retried"] = client.retried
    module.exit_json(**result)


if __name__ == "__main__":
    main()
