# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared code of the Talos modules: find the pinned talosctl, run it with an argument list, redact configs."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import shutil

from ansible_collections.turnkey.cluster.plugins.module_utils.private_files import write_private_file

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


def talos_argument_spec(node=False, **options):
    """The argument spec of a Talos module: its own options, talosctl_path, and with node=True the node it
    calls (doc fragments turnkey.cluster.talos and turnkey.cluster.talos.node)."""
    spec = dict(talosctl_path=dict(type="path"))
    if node:
        spec.update(node=dict(type="str", required=True), endpoint=dict(type="str"),
                    talosconfig=dict(type="path", required=True))
    spec.update(options)
    return spec


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


def private_file(folder, name, text):
    """A file readable only by us (secrets bundles, patches handed to talosctl), through the one writer."""
    return write_private_file(os.path.join(folder, name), text)


# The Talos modules' name for the one writer.
write_private = write_private_file


def node_args(talosconfig, node, endpoint=None):
    """The connection flags of a talosctl call aimed at one node."""
    return ["--talosconfig", talosconfig, "--nodes", node, "--endpoints", endpoint or node]


def in_maintenance(module, talosctl, talosconfig, node, endpoint=None):
    """True when the node runs in maintenance mode (no machine config yet), False when configured.

    Maintenance mode answers `version --insecure`; a configured node refuses a client without a certificate
    (TLS 1.3 may show that as a broken pipe rather than the alert) and answers with the talosconfig's.
    Neither: the module fails with the node's name and both answers.
    """
    env = {"LC_ALL": "C"}
    connection = node_args(talosconfig, node, endpoint)
    rc, out, err = module.run_command([talosctl, "version", "--insecure", "--json"] + connection,
                                      check_rc=False, environ_update=env)
    if rc == 0:
        return True
    insecure = (err or out).strip()
    rc, out, err = module.run_command([talosctl, "version", "--json"] + connection, check_rc=False, environ_update=env)
    if rc == 0:
        return False
    module.fail_json(msg="node %s does not answer on the Talos API (port 50000): in maintenance mode: %s; "
                         "with the talosconfig: %s" % (node, insecure, (err or out).strip()))


def certificate_expiry(pem_b64):
    """(expiry as ISO text, whole days left) of a base64-encoded PEM certificate; (None, None) if unreadable."""
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - cryptography comes with the controller's requirements
        return None, None
    try:
        cert = x509.load_pem_x509_certificate(base64.b64decode(pem_b64))
    except (ValueError, TypeError):
        return None, None
    expires = cert.not_valid_after_utc
    left = (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds() / 86400
    return expires.isoformat(), int(left)
