"""The simulated host: one node `pve` with a dir storage `local` and a zfspool `local-zfs`, bridge vmbr0.

Sizes and versions are those of a small homelab box running Proxmox VE 9.1.
"""

from __future__ import annotations

import secrets

from .auth import BUILTIN_ROLES

NODE = "pve"
PVE_VERSION = {"version": "9.1.9", "release": "9.1", "repoid": "b1b1d9e1a4f2c3d7"}
GIB = 1024 ** 3

STORAGES = {
    "local": {"type": "dir", "content": "iso,vztmpl,backup,import,snippets", "path": "/var/lib/vz",
              "total": 100 * GIB, "shared": 0},
    "local-zfs": {"type": "zfspool", "content": "images,rootdir", "pool": "rpool/data", "total": 800 * GIB,
                  "shared": 0},
}

NETWORK = [
    {"iface": "lo", "type": "loopback", "active": 1, "autostart": 1, "method": "loopback", "families": ["inet"]},
    {"iface": "enp1s0", "type": "eth", "active": 1, "exists": 1, "method": "manual", "families": ["inet"]},
    {"iface": "vmbr0", "type": "bridge", "active": 1, "autostart": 1, "bridge_ports": "enp1s0",
     "bridge_stp": "off", "bridge_fd": "0", "method": "static", "families": ["inet"], "cidr": "192.168.1.10/24",
     "address": "192.168.1.10", "netmask": "24", "gateway": "192.168.1.1"},
]


def initial_state() -> dict:
    return {
        "initialized": False,
        "ticket_key": secrets.token_hex(32),  # signs tickets and CSRF tokens
        "users": {"root@pam": {"userid": "root@pam", "enable": 1, "expire": 0, "comment": "Lab root",
                               "password": None}},
        "tokens": {},
        "roles": {name: list(privs) for name, privs in BUILTIN_ROLES.items()},
        "acl": [],
        "vms": {},
        "volumes": {name: {} for name in STORAGES},  # storage -> volid -> {format, size, content, ...}
        "tasks": {},
    }
