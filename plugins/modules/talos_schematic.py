#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: talos_schematic
short_description: Turn a Talos schematic (extensions, kernel arguments, META) into its Image Factory ID
version_added: 0.1.0
description:
  - Computes the ID the Talos Image Factory gives a schematic made of official system extensions,
    extra kernel arguments and META values, and the image URL and installer image for it.
  - The ID is content-addressed (sha256 of the factory's canonical YAML of the schematic), so it is
    computed offline exactly as the factory computes it; O(mode=online) also registers the schematic
    with the factory (one POST) and fails when the factory answers another ID.
  - Registering a schematic that exists creates nothing, so the module reports C(changed) only when it
    writes O(cache_path).
author: turnkey.cluster maintainers (!UNKNOWN)
options:
  extensions:
    description: Official system extensions, for example C(siderolabs/qemu-guest-agent).
    type: list
    elements: str
    default: []
  kernel_args:
    description: Extra kernel arguments, for example C(net.ifnames=0).
    type: list
    elements: str
    default: []
  meta:
    description:
      - Talos META values; C(key) is 0-255 (10 carries the network configuration), C(value) a string.
    type: list
    elements: dict
    default: []
  mode:
    description:
      - V(online) registers the schematic with the factory (one POST) and checks the ID it answers.
      - V(offline) only computes the ID; nothing is sent.
      - In check mode the ID is always computed offline.
    type: str
    choices: [online, offline]
    default: online
  factory_url:
    description: The Image Factory, C(https://host[:port]).
    type: str
    default: https://factory.talos.dev
  validate_certs:
    description: Verify the factory's TLS certificate.
    type: bool
    default: true
  ca_path:
    description: PEM file of the CA that signed the factory's certificate.
    type: path
  timeout:
    description: Seconds the POST may take.
    type: int
    default: 30
  talos_version:
    description:
      - Talos version (C(v1.13.9)) for RV(image_url) and RV(installer_image); without it those are not returned.
    type: str
  platform:
    description: The platform of RV(image_url).
    type: str
    choices: [nocloud, metal, hcloud]
    default: nocloud
  arch:
    description: The architecture of RV(image_url).
    type: str
    choices: [amd64, arm64]
    default: amd64
  image_format:
    description:
      - File type of RV(image_url); default C(qcow2) for V(nocloud), C(raw.xz) otherwise.
    type: str
    choices: [qcow2, raw.xz, raw.zst, iso]
  cache_path:
    description:
      - JSON file mapping each schematic ID already registered to its canonical YAML; a schematic found
        there is not POSTed again. Written (mode 0600) when a new schematic was registered.
    type: path
attributes:
  check_mode:
    support: full
    description: Computes the ID offline and sends nothing; reports C(changed) when the cache file would be
      written.
  diff_mode:
    support: none
    description: No diff; the only thing written is the cache file.
"""

EXAMPLES = r"""
- name: Schematic of the Proxmox nodes
  turnkey.cluster.talos_schematic:
    extensions: [siderolabs/qemu-guest-agent]
    kernel_args: [net.ifnames=0]
    talos_version: "{{ cluster_versions.talos }}"
    platform: nocloud
    cache_path: "{{ inventory_dir }}/.state/schematics.json"
  register: schematic

- name: Offline only (no network), e.g. to compare with what was used
  turnkey.cluster.talos_schematic:
    mode: offline
    extensions: [siderolabs/qemu-guest-agent]
"""

RETURN = r"""
id:
  description: The schematic ID.
  returned: success
  type: str
  sample: 376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba
schematic:
  description: The canonical YAML the ID is the sha256 of.
  returned: success
  type: str
  sample: "customization: {}\n"
image_url:
  description: C(<factory>/image/<id>/<talos_version>/<platform>-<arch>.<format>).
  returned: when talos_version is set
  type: str
installer_image:
  description: The installer image for upgrades, C(factory.talos.dev/installer/<id>:<talos_version>).
  returned: when talos_version is set
  type: str
mode:
  description: How the ID was obtained, V(online) (the factory agreed) or V(offline).
  returned: success
  type: str
posted:
  description: Whether the schematic was POSTed to the factory in this run.
  returned: success
  type: bool
cached:
  description: Whether the schematic was found in O(cache_path).
  returned: success
  type: bool
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlparse
from ansible.module_utils.urls import open_url

from ansible_collections.turnkey.cluster.plugins.module_utils.talos_schematic import (
    SchematicError,
    canonical_yaml,
    request_body,
    schematic_id,
)
from ansible_collections.turnkey.cluster.plugins.module_utils.talosctl import write_private


def read_cache(module, path):
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        module.fail_json(msg="cache_path %s is not a readable JSON file: %s" % (path, to_native(exc)))
    if not isinstance(data, dict):
        module.fail_json(msg="cache_path %s must hold a JSON object {id: schematic}" % path)
    return data


def write_cache(path, data):
    write_private(os.path.abspath(path), (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def post_schematic(module, body):
    """POST /schematics, retrying 5xx and connection errors; the factory's answer as a dict."""
    params = module.params
    url = params["factory_url"].rstrip("/") + "/schematics"
    last = None
    for attempt in range(5):
        try:
            response = open_url(url, data=json.dumps(body), method="POST", headers={"Content-Type": "application/json"},
                                validate_certs=params["validate_certs"], ca_path=params["ca_path"],
                                timeout=params["timeout"])
            return json.loads(response.read())
        except HTTPError as exc:
            text = to_native(exc.read() or b"").strip() if hasattr(exc, "read") else ""
            last = "HTTP %s %s%s" % (exc.code, exc.reason, (": " + text) if text else "")
            if exc.code < 500:
                break
        except (URLError, OSError, ValueError) as exc:
            last = to_native(exc)
        time.sleep(min(4.0, 0.5 * 2 ** attempt))
    module.fail_json(msg="Image Factory %s refused the schematic: %s" % (url, last), factory_error=last)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            extensions=dict(type="list", elements="str", default=[]),
            kernel_args=dict(type="list", elements="str", default=[]),
            meta=dict(type="list", elements="dict", default=[]),
            mode=dict(type="str", choices=["online", "offline"], default="online"),
            factory_url=dict(type="str", default="https://factory.talos.dev"),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
            timeout=dict(type="int", default=30),
            talos_version=dict(type="str"),
            platform=dict(type="str", choices=["nocloud", "metal", "hcloud"], default="nocloud"),
            arch=dict(type="str", choices=["amd64", "arm64"], default="amd64"),
            image_format=dict(type="str", choices=["qcow2", "raw.xz", "raw.zst", "iso"]),
            cache_path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        text = canonical_yaml(params["extensions"], params["kernel_args"], params["meta"])
        body = request_body(params["extensions"], params["kernel_args"], params["meta"])
    except SchematicError as exc:
        module.fail_json(msg=to_native(exc))
    wanted = schematic_id(text)

    cache = read_cache(module, params["cache_path"])
    cached = cache.get(wanted) == text
    online = params["mode"] == "online" and not module.check_mode and not cached
    posted = False
    if online:
        answer = post_schematic(module, body)
        posted = True
        if answer.get("id") != wanted:
            module.fail_json(msg="The Image Factory answered schematic ID %s, computed offline %s: the offline "
                                 "computation does not match this factory" % (answer.get("id"), wanted),
                             factory_id=answer.get("id"), factory_schematic=answer.get("schematic"), id=wanted,
                             schematic=text)
    changed = bool(params["cache_path"]) and not cached and params["mode"] == "online"
    if changed and not module.check_mode:
        cache[wanted] = text
        try:
            write_cache(params["cache_path"], cache)
        except OSError as exc:
            module.fail_json(msg="cannot write cache_path %s: %s" % (params["cache_path"], to_native(exc)))

    result = dict(changed=changed, id=wanted, schematic=text, posted=posted, cached=cached,
                  mode="online" if (posted or cached) else "offline")
    if module.check_mode and params["mode"] == "online" and not cached:
        result["msg"] = "check mode: the ID was computed offline; nothing was sent to the factory"
    if params["talos_version"]:
        factory = params["factory_url"].rstrip("/")
        fmt = params["image_format"] or ("qcow2" if params["platform"] == "nocloud" else "raw.xz")
        image = "%s-%s.%s" % (params["platform"], params["arch"], fmt)
        result["image_url"] = "%s/image/%s/%s/%s" % (factory, wanted, params["talos_version"], image)
        host = urlparse(factory).netloc or factory
        result["installer_image"] = "%s/installer/%s:%s" % (host, wanted, params["talos_version"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
