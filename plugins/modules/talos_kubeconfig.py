#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: talos_kubeconfig
short_description: Fetch the cluster's admin kubeconfig from Talos (0600), renewed before it expires
version_added: 0.1.0
description:
  - Fetches the admin kubeconfig with the real C(talosctl kubeconfig) from a configured control plane;
    Talos issues it from the cluster CA each time it is asked.
  - It is fetched (and written 0600, atomically) only when O(dest) is missing or unreadable, its server
    is not O(server), its cluster CA is not O(ca) (when given), or its client certificate has fewer than
    O(renew_days) days left - so a rerun
    reports no change and an operator is never locked out by a certificate a year old.
  - An existing O(dest) readable by others (mode not 0600) is reported as changed and set back to 0600.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.talos
  - turnkey.cluster.talos.node
options:
  server:
    description: The API server URL the kubeconfig must name (C(https://<API VIP>:6443)).
    type: str
    required: true
  ca:
    description:
      - The Kubernetes CA certificate the kubeconfig must trust, as PEM text or base64 of the PEM (as the
        secrets bundle's C(certs.k8s.crt) holds it). A kubeconfig naming another CA is fetched again, and a
        fetched one naming another CA is an error. Not checked when omitted.
    type: str
  renew_days:
    description: Fetch a new kubeconfig when its client certificate has fewer days left than this.
    type: int
    default: 30
  dest:
    description: Where the kubeconfig is kept (mode 0600; its folder is made 0700).
    type: path
    required: true
attributes:
  check_mode:
    support: full
    description: Reads O(dest) and reports whether it would be fetched; fetches and writes nothing.
  diff_mode:
    support: full
    description: Server and certificate expiry before and after; never a key.
"""

EXAMPLES = r"""
- name: The admin kubeconfig
  turnkey.cluster.talos_kubeconfig:
    node: 192.168.1.11
    talosconfig: "{{ inventory_dir }}/.state/talos/talosconfig"
    server: https://192.168.1.10:6443
    ca: "{{ talos_secrets.certs.k8s.crt }}"
    dest: "{{ inventory_dir }}/.state/kubeconfig"
"""

RETURN = r"""
path:
  description: The kubeconfig's path.
  returned: always
  type: str
expires:
  description: When the client certificate expires (ISO 8601), after this run.
  returned: when the file exists or was fetched
  type: str
days_left:
  description: Whole days until the client certificate expires, after this run.
  returned: when the file exists or was fetched
  type: int
renewed:
  description: Whether a new kubeconfig (a new client certificate) was fetched.
  returned: always
  type: bool
reasons:
  description: Why it was (or would be) fetched or its mode set back to 0600.
  returned: always
  type: list
  elements: str
"""

import base64
import os
import shutil
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils.talosctl import (
    certificate_expiry,
    find_talosctl,
    node_args,
    run_talosctl,
    talos_argument_spec,
    write_private,
)

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML comes with ansible-core
    yaml = None


def pem_of(value):
    """The PEM text of a certificate given as PEM or as base64 of the PEM; None when neither."""
    text = (value or "").strip()
    if not text.startswith("-----BEGIN"):
        try:
            text = base64.b64decode(text, validate=True).decode().strip()
        except (ValueError, UnicodeDecodeError):
            return None
    return text if text.startswith("-----BEGIN") else None


def facts(path):
    """(server, client certificate base64, CA PEM) of the kubeconfig's current context; None when unreadable."""
    try:
        with open(path) as handle:
            document = yaml.safe_load(handle)
        contexts = {c["name"]: c["context"] for c in document["contexts"]}
        context = contexts[document["current-context"]]
        cluster = {c["name"]: c["cluster"] for c in document["clusters"]}[context["cluster"]]
        user = {u["name"]: u["user"] for u in document["users"]}[context["user"]]
        return cluster["server"], user["client-certificate-data"], pem_of(cluster.get("certificate-authority-data"))
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def describe(found):
    if not found:
        return ""
    expires, days = certificate_expiry(found[1])
    return "server: %s\nclient certificate expires: %s (%s days)\n" % (found[0], expires, days)


def main():
    module = AnsibleModule(
        argument_spec=talos_argument_spec(
            node=True,
            server=dict(type="str", required=True),
            ca=dict(type="str"),
            renew_days=dict(type="int", default=30),
            dest=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    if yaml is None:
        module.fail_json(msg="PyYAML is required")
    p = module.params
    want_ca = None
    if p["ca"]:
        want_ca = pem_of(p["ca"])
        if want_ca is None:
            module.fail_json(msg="ca: neither a PEM certificate nor base64 of one")
    before = facts(p["dest"])
    reasons = []
    if before is None:
        reasons.append("missing or unreadable")
    else:
        if before[0] != p["server"]:
            reasons.append("server is %s" % before[0])
        if want_ca and before[2] != want_ca:
            reasons.append("CA differs")
        _expires, days = certificate_expiry(before[1])
        if days is None or days < p["renew_days"]:
            reasons.append("client certificate expires in %s days" % days)
    fetch = bool(reasons)
    mode = stat.S_IMODE(os.stat(p["dest"]).st_mode) if before is not None else 0o600
    if mode != 0o600:
        reasons.append("mode %04o, not 0600" % mode)
    result = dict(changed=bool(reasons), path=p["dest"], reasons=reasons, renewed=fetch)
    after = before
    if mode != 0o600 and not fetch and not module.check_mode:
        os.chmod(p["dest"], 0o600)  # a fetch below writes 0600 anyway
    if fetch and not module.check_mode:
        talosctl = find_talosctl(module)
        work = tempfile.mkdtemp(prefix="turnkey-kubeconfig-")
        try:
            fetched = os.path.join(work, "kubeconfig")
            run_talosctl(module, talosctl, ["kubeconfig", fetched, "--force", "--merge=false"]
                         + node_args(p["talosconfig"], p["node"], p["endpoint"]), "kubeconfig from %s" % p["node"])
            after = facts(fetched)
            if after is None:
                module.fail_json(msg="talosctl kubeconfig from %s wrote no usable kubeconfig" % p["node"])
            if after[0] != p["server"]:
                module.fail_json(msg="the kubeconfig from %s names server %s, not %s: check the cluster endpoint"
                                     % (p["node"], after[0], p["server"]))
            if want_ca and after[2] != want_ca:
                module.fail_json(msg="the kubeconfig from %s trusts another CA than the ca option: is %s a node "
                                     "of this cluster?" % (p["node"], p["node"]))
            with open(fetched, "rb") as handle:
                write_private(p["dest"], handle.read())
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if fetch and module._diff:
        result["diff"] = dict(before=describe(before), after=describe(after) if after is not before else
                              "(a new kubeconfig: %s)\n" % ", ".join(reasons),
                              before_header=p["dest"], after_header=p["dest"])
    elif reasons and module._diff:
        result["diff"] = dict(before="mode: %04o\n" % mode, after="mode: 0600\n", before_header=p["dest"],
                              after_header=p["dest"])
    if after:
        expires, days = certificate_expiry(after[1])
        if expires:
            result.update(expires=expires, days_left=days)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
