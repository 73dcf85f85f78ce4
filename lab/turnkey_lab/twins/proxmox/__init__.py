"""The Proxmox VE 9 API twin: auth, schema validation, VMs, storage, tasks and locks (see server.py)."""
