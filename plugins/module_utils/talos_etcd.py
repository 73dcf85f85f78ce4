# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a control plane's etcd says: its members by hostname (talos_bootstrap, talos_health)."""

from __future__ import annotations

from ansible_collections.turnkey.cluster.plugins.module_utils.talosctl import call_talosctl, node_args


def member_hostnames(table):
    """The HOSTNAME column of `talosctl etcd members` (talosctl v1.13.9 prints only a table), or None
    when the output has no header."""
    lines = [line for line in table.splitlines() if line.strip()]
    header = next((line for line in lines if "HOSTNAME" in line), None)
    if header is None:
        return None
    column = header.index("HOSTNAME")
    return [line[column:].split()[0] for line in lines if line is not header and len(line) > column]


def etcd_members(module, talosctl, talosconfig, ip, endpoint=None):
    """(member hostnames, None) as the control plane at ip's own etcd lists them, or ([], its error)."""
    args = [talosctl, "etcd", "members"] + node_args(talosconfig, ip, endpoint)
    rc, out, err = call_talosctl(module, args, "etcd members on %s" % ip)
    if rc != 0:
        return [], ((err or out).strip().splitlines() or ["no answer"])[-1]
    members = member_hostnames(out)
    if members is None:
        return [], "lists no members"
    return members, None
