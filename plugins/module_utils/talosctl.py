# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared code of the Talos modules: find the pinned talosctl, run it with an argument list, redact configs."""

from __future__ import annotations

import hashlib
import os
import shutil

TOOLS_ENV = os.path.join("turnkey-cluster", "tools", "tools.env")
# Machine-config fields that hold private keys, tokens or encryption secrets.
SECRET_KEYS = frozenset(("key", "token", "secret", "secretboxEncryptionSecret", "aescbcEncryptionSecret",
                         "bootstrapToken"))


def _from_tools_env():
    """The talosctl tools/build made, as recorded in ~/.cache/turnkey-cluster/tools/tools.env."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        with open(os.path.join(cache, TOOLS_ENV)) as handle:
            for line in handle:
                name, _sep, value = line.strip().partition("=")
                if name == "TURNKEY_TALOSCTL" and value:
                    return value
    except OSError:
        return None
    return None


NOT_FOUND = ("talosctl not found: set talosctl_path or TURNKEY_TALOSCTL, put it on PATH, "
             "or build the pinned one with `make tools`")


def locate_talosctl(explicit=None):
    """The talosctl to run: explicit, $TURNKEY_TALOSCTL, the one tools/build made, talosctl on PATH; or None."""
    for candidate in (explicit, os.environ.get("TURNKEY_TALOSCTL"), _from_tools_env(), shutil.which("talosctl")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_talosctl(module):
    talosctl = locate_talosctl(module.params.get("talosctl_path"))
    if talosctl is None:
        module.fail_json(msg=NOT_FOUND)
    return talosctl


def run_talosctl(module, talosctl, args, what):
    """Runs talosctl with an argument list (never a shell); fails the module with its output on error."""
    rc, out, err = module.run_command([talosctl] + list(args), check_rc=False, environ_update={"LC_ALL": "C"})
    if rc != 0:
        module.fail_json(msg="talosctl %s failed (exit %d): %s" % (what, rc, (err or out).strip()),
                         rc=rc, stderr=err, stdout=out)
    return out, err


def redact(value):
    """A copy of a machine config with every secret replaced by a short fingerprint, safe to show in a diff."""
    if isinstance(value, dict):
        return {k: ("(secret sha256:%s)" % hashlib.sha256(str(v).encode()).hexdigest()[:12]
                    if k in SECRET_KEYS and isinstance(v, str) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value
