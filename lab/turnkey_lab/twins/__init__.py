"""Simulated APIs ("twins") the lab runs as their own processes: Proxmox VE, Talos Image Factory, Hetzner.

Each twin is a `base.Twin` subclass served by `base.serve()` (stdlib HTTPS, the lab CA's certificate),
with the shared lab endpoints under `/_lab/` (health, request log, rejects, faults) described in base.py.
"""
