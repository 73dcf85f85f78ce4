# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan of turnkey.cluster.proxmox_vm: from the VM as Proxmox has it and the VM as asked, the ordered
actions that make the one the other. Pure (no I/O), so check mode, diff and the run itself come from the
same answer, and a half-made VM (a clone whose follow-up config failed) is just one more difference.

`spec` is the module's parameters. `current` is None (no VM on the id) or {"config": <GET config>,
"status": "running"|"stopped"}. `template` is the config of `clone_from` when a clone is to be made.
`plan()` returns a Plan or raises PlanError (a refusal: nothing may be changed)."""

from __future__ import annotations

# Config keys compared and changed in place, and those that need allow_destructive.
SAFE = ("name", "cores", "cpu", "memory", "balloon", "tags", "agent", "onboot", "ipconfig0", "nameserver",
        "searchdomain")
DESTRUCTIVE = ("net0", "bios", "machine", "scsihw")
NIC_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3")
# The line of a VM's description that names the image its system disk came from (templates, and the
# clones that inherit the description).
IMAGE_MARK = "turnkey.cluster image: "


class PlanError(Exception):
    """A refusal, with the fields fail_json should carry."""

    def __init__(self, msg, **fields):
        super().__init__(msg)
        self.msg = msg
        self.fields = fields


class Plan:
    """actions: ordered (name, argument) pairs for the module to apply; changes: what the result reports;
    diff: before/after of what differs; status: the power state once applied (None when absent)."""

    def __init__(self):
        self.actions = []
        self.changes = []
        self.diff = None
        self.destructive = []
        self.status = None

    def add(self, action, argument=None, change=None):
        self.actions.append((action, argument))
        if change:
            self.changes.append(change)


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


def tags_of(config):
    return sorted(t for t in str(config.get("tags") or "").replace(",", ";").replace(" ", ";").split(";") if t)


def image_of(config):
    """The image a VM's description names (IMAGE_MARK), or None."""
    for line in str(config.get("description") or "").splitlines():
        if line.startswith(IMAGE_MARK):
            return line[len(IMAGE_MARK):].strip()
    return None


def has_cloudinit_drive(config):
    return any(key[:3] in ("ide", "sat", "scs") and "cloudinit" in str(value) for key, value in config.items())


def wants_cloudinit(spec):
    """A node carries its identity on a cloud-init drive; a template does not (its clones get theirs)."""
    return spec["state"] != "template"


def wanted_config(spec):
    net = "virtio,bridge=%s" % spec["bridge"]
    if spec.get("vlan") is not None:
        net += ",tag=%d" % spec["vlan"]
    wanted = dict(name=spec["name"], cores=spec["cores"], cpu=spec["cpu"], memory=spec["memory_mb"],
                  tags=";".join(sorted(set(spec.get("tags") or []))),
                  agent="enabled=1,fstrim_cloned_disks=1" if spec["agent"] else "enabled=0",
                  onboot=1 if spec["onboot"] else 0, net0=net, bios="ovmf", machine="q35", scsihw="virtio-scsi-single")
    if spec.get("balloon_mb") is not None:
        wanted["balloon"] = spec["balloon_mb"]
    if spec.get("ip"):
        wanted["ipconfig0"] = "ip=%s" % spec["ip"] + (",gw=%s" % spec["gateway"] if spec.get("gateway") else "")
    if spec.get("nameservers"):
        wanted["nameserver"] = " ".join(spec["nameservers"])
    if spec.get("searchdomain"):
        wanted["searchdomain"] = spec["searchdomain"]
    if not wanted["tags"]:
        del wanted["tags"]
    return wanted


def same(key, want, have):
    if have is None:
        return False
    if key == "net0":
        have_p, want_p = prop(have), prop(want)
        model = [k for k in have_p if k in NIC_MODELS]
        have_p.pop(model[0] if model else "", None)
        return (model[0] if model else None) == want_p.pop("") and have_p == want_p
    if key == "agent":
        return prop(have) == prop(want) or (prop(have).get("enabled", prop(have).get("")) == "0"
                                            and prop(want).get("enabled") == "0")
    if key == "tags":
        return tags_of({"tags": have}) == sorted(str(want).split(";"))
    return str(have) == str(want)


def image(spec):
    """The image the VM's disk must come from: `image`, else the imported volume."""
    return spec.get("image") or spec.get("import_from")


def check_owner(spec, config):
    """A VM on the id is changed or destroyed only when it proves it is ours: its name is `name` and its
    tags hold `owner_tag` (each checked when given). Anything else is someone else's VM."""
    vmid = spec["vmid"]
    name, tags = config.get("name"), tags_of(config)
    wrong = []
    if spec.get("name") and name != spec["name"]:
        wrong.append("its name is not %r" % spec["name"])
    if spec.get("owner_tag") and spec["owner_tag"] not in tags:
        wrong.append("its tags lack %r" % spec["owner_tag"])
    if wrong:
        raise PlanError("VM %s (name %r, tags %s) exists but is not one this run manages: %s; nothing was "
                        "changed. It is never taken over: give the node a free vmid, or remove or retag that VM "
                        "by hand if it is really this node's."
                        % (vmid, name, ";".join(tags) or "(none)", " and ".join(wrong)),
                        vmid=vmid, vm_name=name, vm_tags=tags)


def check_image(spec, config, vmid, role):
    """A template (or the template a clone is made from) must hold the image asked for."""
    wanted, have = image(spec), image_of(config)
    if not wanted or have == wanted:
        return
    raise PlanError("VM %s (%s) holds the image %s, but the image asked for is %s: %s. A template's disk is "
                    "never replaced in place (its linked clones share it). Give the new image its own template "
                    "(proxmox.template_vmid set to a free VM id), or remove the old template once no VM is "
                    "cloned from it (proxmox_nodes_teardown_template=true)."
                    % (vmid, role, have or "(not recorded)", wanted,
                       "nodes are not cloned from an older image" if role == "template of the clone"
                       else "nothing was changed"),
                    vmid=spec["vmid"], template_image=have, wanted_image=wanted)


def plan(spec, current, template=None):
    result = Plan()
    vmid = spec["vmid"]
    if spec["state"] == "absent":
        if not (spec.get("name") or spec.get("owner_tag")):
            raise PlanError("VM %s: state=absent needs name or owner_tag (or both) to prove the VM on the id is "
                            "one this run manages; without them any VM there would be destroyed, so nothing was "
                            "removed" % vmid, vmid=vmid)
        if current is None:
            return result
        check_owner(spec, current["config"])
        if current["status"] == "running":
            result.add("stop")
        result.add("destroy", change="destroy")
        result.diff = dict(before={"vmid": vmid}, after={})
        return result
    if not spec.get("name"):
        raise PlanError("name is required unless state=absent", vmid=vmid)
    wanted = wanted_config(spec)
    if current is None:
        return plan_create(spec, wanted, template, result)
    config = current["config"]
    check_owner(spec, config)
    if config.get("lock"):
        raise PlanError("VM %s is locked (%s): a create, clone or other task on it has not finished; if none "
                        "runs any more, `qm unlock %s` on the host" % (vmid, config["lock"], vmid), vmid=vmid)
    is_template = bool(config.get("template"))
    if is_template or spec["state"] == "template":
        check_image(spec, config, vmid, "template")
    changes = {k: v for k, v in wanted.items() if not same(k, v, config.get(k))}
    if wants_cloudinit(spec) and not has_cloudinit_drive(config) and not is_template:
        changes["ide2"] = "%s:cloudinit" % spec["storage"]  # a clone whose follow-up config failed
    current_gb = size_gb(config.get("scsi0", ""))
    if spec.get("disk_gb") and 0 < spec["disk_gb"] < current_gb - 0.001:
        raise PlanError("VM %s: scsi0 is %.1f GiB, disk_gb %d would shrink it; Proxmox cannot shrink disks"
                        % (vmid, current_gb, spec["disk_gb"]), vmid=vmid)
    grow = bool(spec.get("disk_gb")) and current_gb < spec["disk_gb"]
    destructive = sorted(k for k in changes if k in DESTRUCTIVE)
    if destructive and not spec["allow_destructive"]:
        raise PlanError("VM %s: changing %s needs allow_destructive=true (it rewires or replaces hardware)"
                        % (vmid, ", ".join(destructive)), destructive=destructive, vmid=vmid,
                        diff=dict(before={k: config.get(k) for k in destructive},
                                  after={k: changes[k] for k in destructive}))
    result.destructive = destructive
    if changes:
        update = dict(changes)
        if "net0" in update:  # keep the MAC: it is the node's identity on the network
            macs = [v for k, v in prop(config.get("net0", "")).items() if k in NIC_MODELS]
            if macs:
                update["net0"] = update["net0"].replace("virtio", "virtio=%s" % macs[0], 1)
        result.add("config", dict(update, digest=config.get("digest")) if config.get("digest") else update)
    if grow:
        result.add("resize", spec["disk_gb"])
    result.changes = sorted(changes) + (["scsi0"] if grow else [])
    if result.changes:
        before = {k: config.get(k) for k in changes}
        after = dict(changes)
        if grow:
            before["disk_gb"] = round(current_gb, 3)
            after["disk_gb"] = spec["disk_gb"]
        result.diff = dict(before=before, after=after)
    plan_power(spec, current["status"], is_template, result)
    return result


def plan_create(spec, wanted, template, result):
    vmid, storage = spec["vmid"], spec["storage"]
    if spec.get("import_from") is None and spec.get("clone_from") is None:
        raise PlanError("VM %s does not exist: import_from or clone_from is needed to create it" % vmid, vmid=vmid)
    if spec.get("clone_from") is not None:
        if template is not None:
            check_image(spec, template, spec["clone_from"], "template of the clone")
        result.add("clone", dict(newid=vmid, name=spec["name"], full=0), change="create")
        follow_up = dict(wanted)  # the clone has the template's config: make it this node
        if wants_cloudinit(spec):
            follow_up["ide2"] = "%s:cloudinit" % storage
        result.add("config", follow_up)
    else:
        params = dict(wanted, vmid=vmid, ostype="l26", boot="order=scsi0", serial0="socket",
                      scsi0="%s:0,import-from=%s,iothread=1,ssd=1,discard=on" % (storage, spec["import_from"]),
                      efidisk0="%s:1,efitype=4m,pre-enrolled-keys=0" % storage)
        if image(spec):
            params["description"] = IMAGE_MARK + image(spec)
        if wants_cloudinit(spec):
            params["ide2"] = "%s:cloudinit" % storage
        result.add("create", params, change="create")
    if spec.get("disk_gb"):
        result.add("grow", spec["disk_gb"])  # to at least this size, once the disk exists
    result.diff = dict(before={}, after=dict(wanted, vmid=vmid))
    plan_power(spec, "stopped", False, result)
    return result


def plan_power(spec, status, is_template, result):
    state = spec["state"]
    if is_template:
        if state == "started":
            raise PlanError("VM %s is a template: it cannot be started" % spec["vmid"], vmid=spec["vmid"])
        result.status = "stopped"
        return
    if state == "started" and status != "running":
        result.add("start", change="start")
        status = "running"
    elif state in ("stopped", "template") and status == "running":
        result.add("stop", change="stop")
        status = "stopped"
    if state == "template":
        result.add("template", change="template")
    result.status = status
