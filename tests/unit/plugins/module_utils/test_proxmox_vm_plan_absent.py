"""proxmox_vm's plan for state=absent: a VM is destroyed only when the caller can prove it manages it, so a
bare `state: absent` (neither name nor owner tag) is refused, whether a VM is on the id or not."""

from __future__ import annotations

import importlib

import pytest

from tests.unit.plugins.module_utils.test_proxmox_vm_plan import node_config, spec

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

vm_plan = importlib.import_module("ansible_collections.turnkey.cluster.plugins.module_utils.proxmox_vm_plan")


@pytest.mark.parametrize("current", [None, {"config": node_config(), "status": "running"}],
                         ids=["no VM on the id", "a VM on the id"])
def test_absent_without_name_or_owner_tag_is_refused(current):
    with pytest.raises(vm_plan.PlanError) as refused:
        vm_plan.plan(spec(state="absent", name=None, owner_tag=None), current)
    assert refused.value.msg.startswith("VM 201: state=absent needs name or owner_tag")
    assert "nothing was removed" in refused.value.msg
    assert refused.value.fields == {"vmid": 201}


@pytest.mark.parametrize("proof", [{"name": "cp1", "owner_tag": None}, {"name": None, "owner_tag": "lab"}],
                         ids=["name alone", "owner tag alone"])
def test_absent_with_either_proof_destroys_the_matching_vm(proof):
    result = vm_plan.plan(spec(state="absent", **proof), {"config": node_config(), "status": "stopped"})
    assert result.actions == [("destroy", None)] and result.changes == ["destroy"]
    assert vm_plan.plan(spec(state="absent", **proof), None).actions == []
