"""What the Image Factory twin offers: a few Talos versions, official extensions, synthetic image bytes.

Versions and extension names are real; extension refs/digests are synthetic (stable hashes), and images
are small deterministic byte strings (sha256 in counter mode over schematic, version and file), so a
download can be checked byte for byte and twice the same request gives the same bytes.
"""

from __future__ import annotations

import hashlib
import re

VERSIONS = ("v1.11.6", "v1.12.5", "v1.13.0", "v1.13.8", "v1.13.9", "v1.14.0-rc.1")

# name -> (image tag, description)
EXTENSIONS = {
    "siderolabs/qemu-guest-agent": ("10.0.2", "This system extension provides the QEMU Guest Agent service."),
    "siderolabs/tailscale": ("1.86.2", "This system extension provides Tailscale."),
    "siderolabs/iscsi-tools": ("v0.2.0", "This system extension provides iscsi-tools."),
    "siderolabs/util-linux-tools": ("2.41.1", "This system extension provides util-linux tools."),
    "siderolabs/amd-ucode": ("20250917", "This system extension provides AMD microcode binaries."),
    "siderolabs/intel-ucode": ("20250812", "This system extension provides Intel microcode binaries."),
    "siderolabs/nfs-utils": ("2.8.3", "This system extension provides NFS utilities."),
    "siderolabs/zfs": ("2.3.4", "This system extension provides the ZFS kernel module and tools."),
}

ARCHES = ("amd64", "arm64")
PLATFORMS = ("metal", "nocloud", "hcloud", "aws", "gcp", "azure", "openstack", "vmware", "oracle", "digital-ocean")
# (regex over the file name, content type, synthetic size in bytes)
_PLATFORM = "(?P<platform>" + "|".join(re.escape(p) for p in PLATFORMS) + ")"
_ARCH = "(?P<arch>amd64|arm64)"
FILES = (
    (rf"kernel-{_ARCH}", "application/octet-stream", 64 * 1024),
    (rf"initramfs-{_ARCH}\.xz", "application/x-xz", 96 * 1024),
    (rf"cmdline-{_PLATFORM}-{_ARCH}(-secureboot)?", "text/plain; charset=utf-8", 0),
    (rf"{_PLATFORM}-{_ARCH}(-secureboot)?\.iso", "application/x-iso9660-image", 256 * 1024),
    (rf"{_PLATFORM}-{_ARCH}(-secureboot)?\.raw\.(xz|zst)", "application/octet-stream", 192 * 1024),
    (rf"{_PLATFORM}-{_ARCH}(-secureboot)?\.qcow2", "application/octet-stream", 256 * 1024),
    (rf"{_PLATFORM}-{_ARCH}\.raw\.tar\.gz", "application/gzip", 192 * 1024),
    (rf"{_PLATFORM}-{_ARCH}(-secureboot)?-uki\.efi", "application/efi", 128 * 1024),
    (rf"(?:{_PLATFORM}-)?installer-{_ARCH}(-secureboot)?\.tar", "application/x-tar", 128 * 1024),
)


def extensions(version: str) -> list[dict]:
    result = []
    for name, (tag, description) in sorted(EXTENSIONS.items()):
        digest = hashlib.sha256(f"{name}:{tag}@{version}".encode()).hexdigest()
        result.append({"name": name, "ref": f"ghcr.io/{name}:{tag}", "digest": f"sha256:{digest}",
                       "author": "Sidero Labs", "description": description})
    return result


def describe(file: str) -> tuple[str, int] | None:
    """(content type, size) of an image path the factory knows, else None."""
    for pattern, content_type, size in FILES:
        if re.fullmatch(pattern, file):
            return content_type, size
    return None


def image_bytes(schematic: str, version: str, file: str, size: int, cmdline: list[str]) -> bytes:
    if file.startswith("cmdline-"):
        return (" ".join(["talos.platform=" + file.split("-")[1], *cmdline]) + "\n").encode()
    seed = hashlib.sha256(f"{schematic}/{version}/{file}".encode()).digest()
    blocks = (hashlib.sha256(seed + n.to_bytes(8, "big")).digest() for n in range((size + 31) // 32))
    return b"".join(blocks)[:size]
