# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# Documented in cluster_nodes.yml beside this file.

ROLE_GROUPS = ("controlplane", "worker")
PROVIDER_GROUPS = {"proxmox_nodes": "proxmox", "hetzner_nodes": "hetzner"}
NODE_VARIABLES = ("ip", "vmid", "cores", "memory_mb", "balloon_mb", "disk_gb")


def cluster_nodes(hostvars, hosts):
    nodes = []
    for host in hosts:
        variables = hostvars[host]
        groups = variables.get("group_names", [])
        record = {"name": host,
                  "roles": [group for group in ROLE_GROUPS if group in groups],
                  "providers": [provider for group, provider in PROVIDER_GROUPS.items() if group in groups]}
        for key in NODE_VARIABLES:
            record[key] = variables.get("node_" + key)
        # where talosctl reaches the node: hetzner_nodes records a public address when it uses one
        record["talos_address"] = variables.get("hetzner_nodes_talos_api_address") or record["ip"]
        nodes.append(record)
    return nodes


class FilterModule:
    def filters(self):
        return {"cluster_nodes": cluster_nodes}
