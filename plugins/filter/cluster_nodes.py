# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os

# Documented in cluster_nodes.yml beside this file.

ROLE_GROUPS = ("controlplane", "worker")
PROVIDER_GROUPS = {"proxmox_nodes": "proxmox", "hetzner_nodes": "hetzner"}
NODE_VARIABLES = ("ip", "vmid", "cores", "memory_mb", "balloon_mb", "disk_gb")


def _state_dir(variables):
    """The cluster's state folder, by the rule every role uses: TURNKEY_STATE_DIR, else .state beside the inventory."""
    return os.environ.get("TURNKEY_STATE_DIR") or os.path.join(variables.get("inventory_dir") or ".", ".state")


def _recorded_talos_address(state_dir, host):
    """The address hetzner_nodes recorded for a Hetzner node (a file, so a run that skips that play finds it)."""
    try:
        with open(os.path.join(state_dir, "hetzner", host + ".json")) as handle:
            return json.load(handle).get("talos_address")
    except (OSError, ValueError, AttributeError):
        return None


def cluster_nodes(hostvars, hosts, state_dir=None):
    nodes = []
    for host in hosts:
        variables = hostvars[host]
        groups = variables.get("group_names", [])
        record = {"name": host,
                  "roles": [group for group in ROLE_GROUPS if group in groups],
                  "providers": [provider for group, provider in PROVIDER_GROUPS.items() if group in groups]}
        for key in NODE_VARIABLES:
            record[key] = variables.get("node_" + key)
        # where talosctl reaches the node: a Hetzner node's public address when hetzner_nodes recorded one
        recorded = None
        if "hetzner" in record["providers"]:
            recorded = _recorded_talos_address(state_dir or _state_dir(variables), host)
        record["talos_address"] = recorded or record["ip"]
        nodes.append(record)
    return nodes


class FilterModule:
    def filters(self):
        return {"cluster_nodes": cluster_nodes}
