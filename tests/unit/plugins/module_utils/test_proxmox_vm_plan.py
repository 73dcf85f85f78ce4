"""The plan of proxmox_vm: (the VM as Proxmox has it, the VM as asked) -> ordered actions, or a refusal."""

from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

vm_plan = importlib.import_module("ansible_collections.turnkey.cluster.plugins.module_utils.proxmox_vm_plan")
PlanError = vm_plan.PlanError

IMAGE = "local:import/talos-aaaaaaaaaaaa-v1.13.9-nocloud-amd64.qcow2"
OLD_IMAGE = "local:import/talos-aaaaaaaaaaaa-v1.13.8-nocloud-amd64.qcow2"


def spec(**options):
    base = dict(vmid=201, name="cp1", state="started", import_from=None, clone_from=9000, image=None,
                owner_tag="lab", storage="local-zfs", disk_gb=4, cores=2, cpu="host", memory_mb=2048,
                balloon_mb=None, bridge="vmbr0", vlan=None, tags=["talos", "lab"], agent=True,
                ip="10.2.1.1/16", gateway="10.2.0.1", nameservers=["10.2.0.53"], searchdomain="lab.test",
                onboot=True, allow_destructive=False)
    base.update(options)
    return base


def node_config(**changes):
    """A node as the module leaves it: cloned, configured, with its cloud-init drive."""
    config = {"name": "cp1", "cores": 2, "cpu": "host", "memory": 2048, "tags": "lab;talos",
              "agent": "enabled=1,fstrim_cloned_disks=1", "onboot": 1,
              "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0", "bios": "ovmf", "machine": "q35",
              "scsihw": "virtio-scsi-single", "ipconfig0": "ip=10.2.1.1/16,gw=10.2.0.1",
              "nameserver": "10.2.0.53", "searchdomain": "lab.test", "digest": "d1",
              "scsi0": "local-zfs:base-9000-disk-0/vm-201-disk-0,iothread=1,size=4G",
              "ide2": "local-zfs:vm-201-cloudinit,media=cdrom", "description": vm_plan.IMAGE_MARK + IMAGE}
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


def names(result):
    return [action for action, _argument in result.actions]


def test_a_missing_node_is_cloned_configured_with_its_cloudinit_drive_grown_and_started():
    result = vm_plan.plan(spec(), None)
    assert names(result) == ["clone", "config", "grow", "start"]
    assert result.changes == ["create", "start"] and result.status == "running"
    follow_up = result.actions[1][1]
    assert follow_up["ide2"] == "local-zfs:cloudinit" and follow_up["ipconfig0"] == "ip=10.2.1.1/16,gw=10.2.0.1"
    assert result.diff["before"] == {} and result.diff["after"]["vmid"] == 201


def test_a_node_in_shape_and_running_needs_nothing():
    result = vm_plan.plan(spec(), {"config": node_config(), "status": "running"})
    assert result.actions == [] and result.changes == [] and result.diff is None


def test_a_half_made_clone_is_completed():
    """The clone landed, its follow-up config did not: the template's tags, no identity, no drive."""
    half = node_config(tags="lab;talos;template", ipconfig0=None, nameserver=None, searchdomain=None, ide2=None)
    result = vm_plan.plan(spec(), {"config": half, "status": "stopped"})
    assert names(result) == ["config", "start"]
    update = result.actions[0][1]
    assert update["ide2"] == "local-zfs:cloudinit" and update["ipconfig0"] == "ip=10.2.1.1/16,gw=10.2.0.1"
    assert update["digest"] == "d1"
    assert result.changes == ["ide2", "ipconfig0", "nameserver", "searchdomain", "tags", "start"]
    assert result.diff["before"]["ide2"] is None and result.diff["after"]["ide2"] == "local-zfs:cloudinit"


def test_a_locked_vm_is_not_planned():
    with pytest.raises(PlanError, match=r"VM 201 is locked \(create\)"):
        vm_plan.plan(spec(), {"config": node_config(lock="create"), "status": "stopped"})


@pytest.mark.parametrize("changes, reason", [
    ({"name": "db1"}, "(name 'db1', tags lab;talos) exists but is not one this run manages: its name is not 'cp1'"),
    ({"tags": "prod;talos"}, "(name 'cp1', tags prod;talos) exists but is not one this run manages: its tags lack"),
])
@pytest.mark.parametrize("state", ["started", "absent"])
def test_a_foreign_vm_on_the_id_is_refused_never_taken_over(changes, reason, state):
    with pytest.raises(PlanError) as refused:
        vm_plan.plan(spec(state=state), {"config": node_config(**changes), "status": "running"})
    assert refused.value.msg.startswith("VM 201 (name") and reason in refused.value.msg
    assert refused.value.fields["vm_name"] == changes.get("name", "cp1")


def test_absent_stops_then_destroys_a_vm_it_manages():
    result = vm_plan.plan(spec(state="absent"), {"config": node_config(), "status": "running"})
    assert names(result) == ["stop", "destroy"] and result.changes == ["destroy"]
    assert vm_plan.plan(spec(state="absent"), None).actions == []


def test_drift_destructive_and_shrink():
    result = vm_plan.plan(spec(cores=4), {"config": node_config(), "status": "running"})
    assert names(result) == ["config"] and result.changes == ["cores"]
    assert result.diff == {"before": {"cores": 2}, "after": {"cores": 4}}
    with pytest.raises(PlanError, match="allow_destructive") as refused:
        vm_plan.plan(spec(vlan=42), {"config": node_config(), "status": "running"})
    assert refused.value.fields["destructive"] == ["net0"]
    allowed = vm_plan.plan(spec(vlan=42, allow_destructive=True), {"config": node_config(), "status": "running"})
    assert allowed.actions[0][1]["net0"] == "virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=42"  # the MAC is kept
    with pytest.raises(PlanError, match="shrink"):
        vm_plan.plan(spec(disk_gb=2), {"config": node_config(), "status": "running"})
    grown = vm_plan.plan(spec(disk_gb=8), {"config": node_config(), "status": "running"})
    assert grown.actions == [("resize", 8)] and grown.changes == ["scsi0"]


def template_spec(**options):
    base = dict(vmid=9000, name="lab-talos-template", state="template", clone_from=None, import_from=IMAGE,
                tags=["talos", "template", "lab"], ip=None, gateway=None, nameservers=[], searchdomain=None,
                onboot=False, disk_gb=None)
    return spec(**{**base, **options})


def test_a_template_records_its_image_and_gets_no_cloudinit_drive():
    result = vm_plan.plan(template_spec(), None)
    assert names(result) == ["create", "template"] and result.changes == ["create", "template"]
    create = result.actions[0][1]
    assert create["description"] == vm_plan.IMAGE_MARK + IMAGE and "ide2" not in create


def test_a_template_of_another_image_is_refused():
    template = {"config": node_config(name="lab-talos-template", tags="lab;talos;template", template=1, ide2=None,
                                      onboot=0, description=vm_plan.IMAGE_MARK + OLD_IMAGE), "status": "stopped"}
    assert vm_plan.plan(template_spec(import_from=OLD_IMAGE), template).actions == []
    with pytest.raises(PlanError, match="holds the image .*v1.13.8.* asked for is .*v1.13.9") as refused:
        vm_plan.plan(template_spec(), template)
    assert refused.value.fields["template_image"] == OLD_IMAGE
    template["config"].pop("description")
    with pytest.raises(PlanError, match=r"\(not recorded\)"):
        vm_plan.plan(template_spec(), template)


def test_a_clone_of_a_template_of_another_image_is_refused_before_cloning():
    with pytest.raises(PlanError, match="nodes are not cloned from an older image"):
        vm_plan.plan(spec(image=IMAGE), None, {"template": 1, "description": vm_plan.IMAGE_MARK + OLD_IMAGE})
    assert names(vm_plan.plan(spec(image=IMAGE), None, {"template": 1, "description": vm_plan.IMAGE_MARK + IMAGE}
                              ))[0] == "clone"


def test_power_and_templates():
    stopped = vm_plan.plan(spec(state="stopped"), {"config": node_config(), "status": "running"})
    assert names(stopped) == ["stop"] and stopped.status == "stopped"
    with pytest.raises(PlanError, match="is a template: it cannot be started"):
        vm_plan.plan(spec(), {"config": node_config(template=1), "status": "stopped"})
