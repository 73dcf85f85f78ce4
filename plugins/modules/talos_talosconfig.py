#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: talos_talosconfig
short_description: Keep the cluster's talosconfig (0600), renewed before its client certificate expires
version_added: 0.1.0
description:
  - Writes the talosconfig of the cluster from its Talos secrets bundle with the real
    C(talosctl gen config --output-types talosconfig), then sets its endpoints and nodes.
  - The file is written (mode 0600, atomically) only when it is missing or unreadable, its endpoints,
    nodes or context differ, its CA is not the bundle's, or its client certificate has fewer than
    O(renew_days) days left. A new client certificate is issued from the bundle's CA then, so the renewed
    talosconfig works at once and the old one keeps working until it expires.
  - An existing O(dest) readable by others (mode not 0600) is reported as changed and set back to 0600.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.talos
options:
  cluster_name:
    description: The cluster name; also the talosconfig's context.
    type: str
    required: true
  secrets:
    description: The Talos secrets bundle (as C(talosctl gen secrets) writes it).
    type: dict
    required: true
  endpoints:
    description: The Talos API endpoints (the control planes' addresses).
    type: list
    elements: str
    required: true
  nodes:
    description: The default nodes of the context.
    type: list
    elements: str
    default: []
  renew_days:
    description: Renew the client certificate when fewer days than this are left.
    type: int
    default: 30
  dest:
    description: Where the talosconfig is kept (mode 0600; its folder is made 0700).
    type: path
    required: true
attributes:
  check_mode:
    support: full
    description: Reads O(dest) and reports whether it would be written; writes nothing.
  diff_mode:
    support: full
    description: Endpoints, nodes and the certificate's expiry before and after; never a key.
"""

EXAMPLES = r"""
- name: The talosconfig
  turnkey.cluster.talos_talosconfig:
    cluster_name: home
    secrets: "{{ lookup('turnkey.cluster.persistent_secret', 'talos_secrets', field='bundle') | from_yaml }}"
    endpoints: [192.168.1.11, 192.168.1.12, 192.168.1.13]
    nodes: [192.168.1.11]
    dest: "{{ inventory_dir }}/.state/talos/talosconfig"
"""

RETURN = r"""
path:
  description: The talosconfig's path.
  returned: always
  type: str
expires:
  description: When the client certificate expires (ISO 8601), after this run.
  returned: when the file exists or was written
  type: str
days_left:
  description: Whole days until the client certificate expires, after this run.
  returned: when the file exists or was written
  type: int
renewed:
  description: Whether a new client certificate was issued.
  returned: always
  type: bool
reasons:
  description: Why the file was (or would be) written or its mode set back to 0600.
  returned: always
  type: list
  elements: str
"""

import json
import os
import shutil
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.turnkey.cluster.plugins.module_utils.talosctl import (
    certificate_expiry,
    find_talosctl,
    private_file,
    run_talosctl,
    talos_argument_spec,
    write_private,
)

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML comes with ansible-core
    yaml = None


def load(path):
    try:
        with open(path) as handle:
            document = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return None
    return document if isinstance(document, dict) else None


def reasons_to_write(p, document):
    if document is None:
        return ["missing or unreadable"]
    context = (document.get("contexts") or {}).get(p["cluster_name"]) or {}
    reasons = []
    if document.get("context") != p["cluster_name"] or not context:
        reasons.append("context")
    if context.get("endpoints") != p["endpoints"]:
        reasons.append("endpoints")
    if (context.get("nodes") or []) != p["nodes"]:
        reasons.append("nodes")
    if context.get("ca") != p["secrets"].get("certs", {}).get("os", {}).get("crt"):
        reasons.append("CA differs from the secrets bundle")
    _expires, days = certificate_expiry(context.get("crt") or "")
    if days is None or days < p["renew_days"]:
        reasons.append("client certificate expires in %s days" % days)
    return reasons


def summary(document, name):
    context = ((document or {}).get("contexts") or {}).get(name) or {}
    expires, days = certificate_expiry(context.get("crt") or "")
    return "endpoints: %s\nnodes: %s\nclient certificate expires: %s (%s days)\n" % (
        context.get("endpoints"), context.get("nodes"), expires, days)


def generate(module, talosctl):
    p = module.params
    work = tempfile.mkdtemp(prefix="turnkey-talosconfig-")
    try:
        secrets = private_file(work, "secrets.yaml", json.dumps(p["secrets"]))
        out = "%s/talosconfig" % work
        endpoint = "https://%s:6443" % p["endpoints"][0]  # not written into a talosconfig
        run_talosctl(module, talosctl, ["gen", "config", p["cluster_name"], endpoint, "--with-secrets", secrets,
                                        "--output-types", "talosconfig", "--output", out], "gen config")
        document = load(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not document or p["cluster_name"] not in (document.get("contexts") or {}):
        module.fail_json(msg="talosctl gen config wrote no context %s" % p["cluster_name"])
    document["context"] = p["cluster_name"]
    document["contexts"][p["cluster_name"]].update(endpoints=p["endpoints"], nodes=p["nodes"])
    return document


def main():
    module = AnsibleModule(
        argument_spec=talos_argument_spec(
            cluster_name=dict(type="str", required=True),
            secrets=dict(type="dict", required=True, no_log=True),
            endpoints=dict(type="list", elements="str", required=True),
            nodes=dict(type="list", elements="str", default=[]),
            renew_days=dict(type="int", default=30),
            dest=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    if yaml is None:
        module.fail_json(msg="PyYAML is required")
    p = module.params
    if not p["endpoints"]:
        module.fail_json(msg="endpoints: at least one control plane address is needed")
    before = load(p["dest"])
    reasons = reasons_to_write(p, before)
    write = bool(reasons)
    mode = stat.S_IMODE(os.stat(p["dest"]).st_mode) if before is not None else 0o600
    if mode != 0o600:
        reasons.append("mode %04o, not 0600" % mode)
    result = dict(changed=bool(reasons), path=p["dest"], reasons=reasons,
                  renewed=before is None or any(r.startswith("client certificate") for r in reasons))
    after = before
    if mode != 0o600 and not write and not module.check_mode:
        os.chmod(p["dest"], 0o600)  # a write below is 0600 anyway
    if write and not module.check_mode:
        after = generate(module, find_talosctl(module))
        write_private(p["dest"], to_bytes(yaml.safe_dump(after, sort_keys=False)))
    if write and module._diff:
        result["diff"] = dict(before=summary(before, p["cluster_name"]) if before else "",
                              after=summary(after, p["cluster_name"]) if after is not before else
                              "(a new talosconfig: %s)\n" % ", ".join(reasons),
                              before_header=p["dest"], after_header=p["dest"])
    elif reasons and module._diff:
        result["diff"] = dict(before="mode: %04o\n" % mode, after="mode: 0600\n", before_header=p["dest"],
                              after_header=p["dest"])
    if not write:
        result["renewed"] = False
    context = ((after or {}).get("contexts") or {}).get(p["cluster_name"]) or {}
    expires, days = certificate_expiry(context.get("crt") or "")
    if expires:
        result.update(expires=expires, days_left=days)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
