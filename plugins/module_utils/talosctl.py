# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared code of the Talos modules: find the pinned talosctl, run it with an argument list and a timeout."""

from __future__ import annotations

import base64
import datetime
import os
import signal
import subprocess

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.turnkey.cluster.plugins.module_utils.private_files import write_private_file
from ansible_collections.turnkey.cluster.plugins.module_utils.tools import ToolError, locate_tool

# Seconds one talosctl call may take: a node that accepts the connection and never answers would hang it.
DEFAULT_TIMEOUT = 60

NOT_FOUND = ("talosctl not found: set talosctl_path or TURNKEY_TALOSCTL, put it on PATH, "
             "or build the pinned one with `make tools`")


def locate_talosctl(explicit=None):
    """The talosctl to run by the collection's one rule (module_utils tools: explicit, $TURNKEY_TALOSCTL,
    the one `make tools` built, talosctl on PATH); None when there is none or the one named is not usable."""
    try:
        return locate_tool("talosctl", explicit=explicit, explicit_name="talosctl_path")
    except ToolError:
        return None


def talos_argument_spec(node=False, **options):
    """The argument spec of a Talos module: its own options, talosctl_path, and with node=True the node it
    calls (doc fragments turnkey.cluster.talos and turnkey.cluster.talos.node)."""
    spec = dict(talosctl_path=dict(type="path"), talosctl_timeout=dict(type="int", default=DEFAULT_TIMEOUT))
    if node:
        spec.update(node=dict(type="str", required=True), endpoint=dict(type="str"),
                    talosconfig=dict(type="path", required=True))
    spec.update(options)
    return spec


def find_talosctl(module):
    """The talosctl of the module's talosctl_path, else the rule's; fails the module saying what was tried."""
    try:
        return locate_tool("talosctl", explicit=module.params.get("talosctl_path"), explicit_name="talosctl_path")
    except ToolError as exc:
        module.fail_json(msg=str(exc))


def call_talosctl(module, argv, what):
    """(rc, stdout, stderr) of talosctl run with an argument list (never a shell) within the module's
    talosctl_timeout; a call that does not finish is killed and fails the module, naming `what` (the command
    and node, never the arguments)."""
    timeout = module.params.get("talosctl_timeout") or DEFAULT_TIMEOUT
    try:
        process = subprocess.Popen([to_text(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=dict(os.environ, LC_ALL="C"), start_new_session=True)
    except OSError as exc:
        module.fail_json(msg="cannot run talosctl %s: %s" % (what, exc))
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: the whole group goes
        process.communicate()
        module.fail_json(msg="talosctl %s gave no answer within %d s (talosctl_timeout): is the node up and its "
                             "Talos API (port 50000) answering?" % (what, timeout))
    return process.returncode, to_text(out, errors="surrogate_or_replace"), to_text(err, errors="surrogate_or_replace")


def run_talosctl(module, talosctl, args, what, keep_output=True):
    """Runs talosctl (call_talosctl); fails the module with its message on error. keep_output=False leaves
    its stdout out of the failure (a command that prints a config)."""
    rc, out, err = call_talosctl(module, [talosctl] + list(args), what)
    if rc != 0:
        said = (err or (out if keep_output else "")).strip()
        module.fail_json(msg="talosctl %s failed (exit %d): %s" % (what, rc, said), rc=rc,
                         **(dict(stderr=err, stdout=out) if keep_output else {}))
    return out, err


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
    connection = node_args(talosconfig, node, endpoint)
    rc, out, err = call_talosctl(module, [talosctl, "version", "--insecure", "--json"] + connection,
                                 "version --insecure on %s" % node)
    if rc == 0:
        return True
    insecure = (err or out).strip()
    rc, out, err = call_talosctl(module, [talosctl, "version", "--json"] + connection, "version on %s" % node)
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
