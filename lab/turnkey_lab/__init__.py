"""turnkey_lab: a local twin of the turnkey.cluster homelab, on loopback only. See docs/lab.md."""
