"""The lab's least-privilege Proxmox identities grant exactly what the layers' preflights require, and
docs/proxmox-privileges.md names every one of those privileges.

No lab needed: the component's table (lab/turnkey_lab/components/proxmox.py) against the `required` lists
of the preflight tasks in roles/proxmox_nodes and roles/proxmox_csi_token, read as YAML.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from turnkey_lab.components.proxmox import LEAST_PRIVILEGE

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

REPO = Path(__file__).resolve().parents[2]


def preflight(role: str) -> dict:
    tasks = yaml.safe_load((REPO / "roles" / role / "tasks" / "main.yml").read_text())
    return next(t for t in tasks[0]["block"] if "turnkey.cluster.proxmox_permissions" in t)


def lab_grants(layer: str) -> dict[str, set[str]]:
    """{path kind: privileges} the lab grants for a layer (/vms, /storage/<x>, ...)."""
    _user, _token, roles = LEAST_PRIVILEGE[layer]
    grants: dict[str, set[str]] = {}
    for privs, paths in roles.values():
        for path in paths:
            grants.setdefault(path, set()).update(privs)
    return grants


def test_layer01_lab_identity_is_exactly_the_preflight():
    task = preflight("proxmox_nodes")
    build = task["vars"]["proxmox_nodes_build_privileges"]
    by_kind: dict[str, set[str]] = {}
    for entry in build:
        paths = entry["paths"]
        kind = ("vms" if "vm_paths" in paths or "template_path" in paths else
                paths[0].split("{{")[0].rstrip("/") if isinstance(paths, list) else paths)
        by_kind.setdefault(kind, set()).update(entry["privs"])
    assert by_kind == {"vms": lab_grants("infrastructure")["/vms"],
                       "/storage": lab_grants("infrastructure")["/storage/local-zfs"]
                       | lab_grants("infrastructure")["/storage/local"],
                       "/nodes": lab_grants("infrastructure")["/nodes/pve"],
                       "/sdn/zones/localnetwork": lab_grants("infrastructure")["/sdn/zones/localnetwork/vmbr0"]}
    # and per storage: AllocateSpace only where VM disks go, the image privileges only where the image goes
    vm_storage = next(e for e in build if "vm_storage" in str(e["paths"]))
    image_storage = next(e for e in build if "image_storage" in str(e["paths"]))
    assert set(vm_storage["privs"]) == lab_grants("infrastructure")["/storage/local-zfs"]
    assert set(image_storage["privs"]) == lab_grants("infrastructure")["/storage/local"]
    teardown = task["vars"]["proxmox_nodes_teardown_privileges"]
    assert set(teardown[0]["privs"]) <= lab_grants("infrastructure")["/vms"]


def test_layer00_lab_identity_is_exactly_the_preflight():
    required = preflight("proxmox_csi_token")["turnkey.cluster.proxmox_permissions"]["required"]
    wanted = set().union(*(entry["privs"] for entry in required))
    granted = set().union(*lab_grants("persistent_auth").values())
    assert wanted == granted
    # Permissions.Modify only where the CSI user's ACL entries go (below /vms and on the CSI storage).
    assert lab_grants("persistent_auth")["/vms"] == {"Permissions.Modify"}
    assert lab_grants("persistent_auth")["/access"] == {"Realm.AllocateUser", "Sys.Modify", "User.Modify"}


def test_the_docs_name_every_privilege():
    doc = (REPO / "docs" / "proxmox-privileges.md").read_text()
    for layer in LEAST_PRIVILEGE:
        user, _token, roles = LEAST_PRIVILEGE[layer]
        assert user in doc
        for role, (privs, _paths) in roles.items():
            assert role in doc
            for priv in privs:
                assert priv in doc, (role, priv)
