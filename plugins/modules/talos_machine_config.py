#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: talos_machine_config
short_description: Render a Talos machine config with talosctl gen config, validate it, keep it 0600
version_added: 0.1.0
description:
  - Renders the machine config of one node type with the real C(talosctl gen config), from the cluster's
    secrets bundle and a list of config patches, without documentation or examples.
  - Every rendered config is checked with C(talosctl validate --strict) in the given mode before it is kept.
  - The config is written to O(dest) (mode 0600, atomically) only when it differs, so a rerun reports
    no change. With the same secrets bundle C(talosctl) renders the same bytes.
  - Runs on the controller. Diffs show only the values at allow-listed paths of the config (see notes).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.talos
options:
  cluster_name:
    description: The Talos cluster name.
    type: str
    required: true
  endpoint:
    description: The Kubernetes API endpoint, C(https://<API VIP>:6443).
    type: str
    required: true
  machine_type:
    description: The node type to render.
    type: str
    required: true
    choices: [controlplane, worker]
  secrets:
    description:
      - The secrets bundle, as C(talosctl gen secrets) writes it (a dict). It is written to a private
        temporary file for C(talosctl) and removed afterwards.
    type: dict
    required: true
  patches:
    description:
      - Config patches, applied in order (strategic merge patches as dicts, or YAML/JSON6902 text).
      - They are shown in verbose output; put credentials in O(secret_patches).
    type: list
    elements: raw
    default: []
  secret_patches:
    description:
      - Patches that carry credentials (registry auth, WireGuard keys, tokens in inline manifests), applied
        after O(patches). C(no_log) - Ansible masks their values in every output of the task.
    type: list
    elements: raw
    default: []
  kubernetes_version:
    description: Kubernetes version, without the leading C(v).
    type: str
    required: true
  talos_version:
    description: Talos version the config is generated for (C(v1.13.9)).
    type: str
    required: true
  install_image:
    description: The installer image (the Image Factory's installer for the schematic).
    type: str
  install_disk:
    description: The disk Talos installs to.
    type: str
    default: /dev/sda
  dns_domain:
    description: The cluster's Kubernetes DNS domain.
    type: str
    default: cluster.local
  validate_mode:
    description: The mode of C(talosctl validate).
    type: str
    choices: [metal, cloud, container]
    default: metal
  dest:
    description: Where the config is kept (mode 0600; the folder is created with mode 0700).
    type: path
    required: true
attributes:
  check_mode:
    support: full
    description: Renders and validates, compares with O(dest), writes nothing.
  diff_mode:
    support: full
    description: The config before and after, only allow-listed values shown.
notes:
  - The config holds the node's certificates and the cluster's keys; it is never returned by the module.
  - The diff shows a value only when its path is on the allow-list of C(module_utils/talos_redact.py)
    (machine type, install disk and image, addresses, routes, hostname, labels, kubelet and control-plane
    arguments, cluster name, endpoint and networks, versions and images, ...); every other value - tokens,
    certificates and keys, registry credentials, WireGuard keys, file contents, inline manifests, anything
    unknown - is C((hidden <tag>)), equal values with equal tags within one run.
"""

EXAMPLES = r"""
- name: Machine config of the node
  turnkey.cluster.talos_machine_config:
    cluster_name: "{{ cluster_name }}"
    endpoint: "https://{{ cluster_network.api_vip }}:6443"
    machine_type: controlplane
    secrets: "{{ lookup('turnkey.cluster.persistent_secret', 'talos_secrets') }}"
    kubernetes_version: "{{ cluster_versions.kubernetes }}"
    talos_version: "{{ cluster_versions.talos }}"
    patches:
      - machine:
          network:
            hostname: cp1
      - cluster:
          network:
            cni:
              name: none
    dest: "{{ inventory_dir }}/.state/talos/cp1.yaml"
"""

RETURN = r"""
dest:
  description: The config's path.
  returned: always
  type: str
sha256:
  description: SHA-256 of the rendered config, to tell when it changes without reading it.
  returned: always
  type: str
validated:
  description: The mode C(talosctl validate --strict) accepted the config in.
  returned: always
  type: str
  sample: metal
"""

import hashlib
import json
import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.turnkey.cluster.plugins.module_utils.talos_redact import Redactor
from ansible_collections.turnkey.cluster.plugins.module_utils.talosctl import (
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


def render(module, talosctl, work):
    p = module.params
    secrets = private_file(work, "secrets.yaml", json.dumps(p["secrets"]))
    args = ["gen", "config", p["cluster_name"], p["endpoint"], "--with-secrets", secrets,
            "--output-types", p["machine_type"], "--output", os.path.join(work, "config.yaml"),
            "--with-docs=false", "--with-examples=false", "--kubernetes-version", p["kubernetes_version"],
            "--talos-version", p["talos_version"], "--install-disk", p["install_disk"],
            "--dns-domain", p["dns_domain"]]
    if p["install_image"]:
        args += ["--install-image", p["install_image"]]
    for index, patch in enumerate(p["patches"] + p["secret_patches"]):
        text = patch if isinstance(patch, str) else json.dumps(patch)
        args += ["--config-patch", "@" + private_file(work, "patch-%02d.yaml" % index, text)]
    run_talosctl(module, talosctl, args, "gen config")
    config = os.path.join(work, "config.yaml")
    run_talosctl(module, talosctl, ["validate", "--config", config, "--mode", p["validate_mode"], "--strict"],
                 "validate")
    with open(config, "rb") as handle:
        return handle.read()


def main():
    module = AnsibleModule(
        argument_spec=talos_argument_spec(
            cluster_name=dict(type="str", required=True),
            endpoint=dict(type="str", required=True),
            machine_type=dict(type="str", required=True, choices=["controlplane", "worker"]),
            secrets=dict(type="dict", required=True, no_log=True),
            patches=dict(type="list", elements="raw", default=[]),
            secret_patches=dict(type="list", elements="raw", default=[], no_log=True),
            kubernetes_version=dict(type="str", required=True),
            talos_version=dict(type="str", required=True),
            install_image=dict(type="str"),
            install_disk=dict(type="str", default="/dev/sda"),
            dns_domain=dict(type="str", default="cluster.local"),
            validate_mode=dict(type="str", choices=["metal", "cloud", "container"], default="metal"),
            dest=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    if yaml is None:
        module.fail_json(msg="PyYAML is required")
    talosctl = find_talosctl(module)
    dest = module.params["dest"]
    work = tempfile.mkdtemp(prefix="turnkey-talos-")
    try:
        content = render(module, talosctl, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    try:
        with open(dest, "rb") as handle:
            before = handle.read()
    except FileNotFoundError:
        before = None
    except OSError as exc:
        module.fail_json(msg="cannot read %s: %s" % (dest, to_native(exc)))
    changed = before != content
    mode_wrong = before is not None and (os.stat(dest).st_mode & 0o777) != 0o600
    result = dict(changed=changed or mode_wrong, dest=dest, sha256=hashlib.sha256(content).hexdigest(),
                  validated=module.params["validate_mode"])
    if changed and module._diff:
        redactor = Redactor()  # one for both sides: an unchanged hidden value keeps its tag
        result["diff"] = dict(before=redactor.config_text(before), after=redactor.config_text(content),
                              before_header=dest, after_header=dest)
    if not module.check_mode:
        try:
            if changed:
                write_private(dest, to_bytes(content))
            elif mode_wrong:
                os.chmod(dest, 0o600)
        except OSError as exc:
            module.fail_json(msg="cannot write %s: %s" % (dest, to_native(exc)))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
