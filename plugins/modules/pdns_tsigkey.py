#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pdns_tsigkey
short_description: A TSIG key on a PowerDNS server, over its HTTP API
version_added: 0.1.0
description:
  - Ensures the TSIG key O(name) exists on the server with O(algorithm) and the secret O(secret), or is absent.
  - A TSIG key signs DNS messages; a zone lets the holders of the keys its C(TSIG-ALLOW-DNSUPDATE) metadata names
    change its records with RFC 2136 updates (M(turnkey.cluster.pdns_zone_metadata)), for example cert-manager's
    ACME DNS-01 solver.
  - The secret is compared with the one the server holds (read with the key) and never shown - not in the
    result, not in the diff, at any verbosity. A different secret replaces the server's (C(PUT)); holders of the
    old secret are refused from then on.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.pdns
options:
  name:
    description: The key's name, e.g. C(acme-dns01), as the signers name it.
    type: str
    required: true
  algorithm:
    description: The HMAC algorithm.
    type: str
    choices: [hmac-md5, hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512]
    default: hmac-sha256
  secret:
    description:
      - The key's secret, base64-encoded (as C(tsig-keygen) prints it and cert-manager's RFC 2136 solver reads it).
        Required when O(state=present).
      - A string of letters and digits whose length is a multiple of 4 is valid base64, so a generated token of
        the persistent store can serve as it is.
    type: str
  state:
    description: Whether the key exists.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads the key and reports whether it would be created, changed or deleted; writes nothing.
  diff_mode:
    support: full
    description: Shows the key's name and algorithm before and after, and whether its secret would change; never
      the secret.
"""

EXAMPLES = r"""
- name: The key cert-manager signs its DNS-01 updates with
  turnkey.cluster.pdns_tsigkey:
    api_url: https://dns.example.com:8081
    api_key: "{{ dns_api_key }}"
    name: acme-dns01
    secret: "{{ acme_tsig_secret }}"
  no_log: true

- name: No more updates signed with the old key
  turnkey.cluster.pdns_tsigkey:
    api_url: https://dns.example.com:8081
    api_key: "{{ dns_api_key }}"
    name: old-updater
    state: absent
"""

RETURN = r"""
name:
  description: The key's name.
  returned: always
  type: str
  sample: acme-dns01
algorithm:
  description: The key's algorithm after the task; null when absent.
  returned: always
  type: str
  sample: hmac-sha256
operation:
  description: C(create), C(update), C(delete) or C(none) (in check mode, what would happen).
  returned: always
  type: str
"""

import base64
import binascii

from ansible_collections.turnkey.cluster.plugins.module_utils import pdns as pdns_lib


def view(key, secret_changed=False):
    """What the result and the diff show of a key: never its secret."""
    if key is None:
        return None
    shown = {"name": key["name"], "algorithm": key["algorithm"]}
    if secret_changed:
        shown["secret"] = "(replaced)"
    return shown


def decoded(secret):
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        return None


def ensure(module):
    params = module.params
    name = params["name"].strip().rstrip(".")
    client = pdns_lib.PdnsClient(params)
    current = client.tsigkey(name)
    if current is not None:
        current = {"name": name, "algorithm": current.get("algorithm", "").lower(), "key": current.get("key", "")}
    wanted = None
    if params["state"] == "present":
        wanted = {"name": name, "algorithm": params["algorithm"], "key": params["secret"]}
    secret_changed = bool(current and wanted) and decoded(current["key"]) != decoded(wanted["key"])
    if current is None or wanted is None:
        action = pdns_lib.action_of(current, wanted)
    else:
        action = "update" if secret_changed or current["algorithm"] != wanted["algorithm"] else "none"
    if not module.check_mode:
        if action == "create":
            client.create_tsigkey(name, wanted["algorithm"], wanted["key"])
        elif action == "update":
            client.update_tsigkey(name, wanted["algorithm"], wanted["key"])
        elif action == "delete":
            client.delete_tsigkey(name)
    after = wanted if action != "none" else current
    result = {"changed": action != "none", "name": name, "operation": action,
              "algorithm": after["algorithm"] if after else None}
    if module._diff:
        result["diff"] = pdns_lib.diff_of(view(current), view(after, secret_changed), "TSIG key %s" % name)
    return result


def main():
    module = pdns_lib.present_or_absent_module(dict(
        name=dict(type="str", required=True),
        algorithm=dict(type="str", default="hmac-sha256",
                       choices=["hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"]),
        secret=dict(type="str", no_log=True),
    ), "secret")
    if module.params["state"] == "present" and not decoded(module.params["secret"] or ""):
        module.fail_json(msg="secret is not base64 (or is empty): give the key's secret as tsig-keygen prints it")
    pdns_lib.run(module, ensure)


if __name__ == "__main__":
    main()
