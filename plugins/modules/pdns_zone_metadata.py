#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pdns_zone_metadata
short_description: One kind of a PowerDNS zone's metadata, over its HTTP API
version_added: 0.1.0
description:
  - Ensures the zone's metadata of kind O(kind) holds exactly O(values), or is unset.
  - Zone metadata switches per-zone behaviour of PowerDNS Authoritative, for example which TSIG keys may change
    the zone by RFC 2136 update (C(TSIG-ALLOW-DNSUPDATE)), from which networks (C(ALLOW-DNSUPDATE-FROM)), and
    whether an update NOTIFYs the secondaries (C(NOTIFY-DNSUPDATE)). See PowerDNS' "Per zone settings".
  - The values are compared as a set (PowerDNS keeps them in no fixed order). Only this kind is sent; the zone's
    other metadata is never touched.
  - A kind PowerDNS does not let its API change (C(TSIG-ALLOW-AXFR), C(PRESIGNED) ...) fails with PowerDNS' answer.
  - A zone that does not exist fails the task, except in check mode (the play's M(turnkey.cluster.pdns_zone) task
    would have made it).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.pdns
options:
  zone:
    description: The zone, e.g. C(example.com).
    type: str
    required: true
  kind:
    description: The metadata kind, e.g. C(TSIG-ALLOW-DNSUPDATE), C(ALLOW-DNSUPDATE-FROM), or a custom C(X-) kind.
    type: str
    required: true
  values:
    description: The kind's values. Required when O(state=present).
    type: list
    elements: str
  state:
    description: Whether the kind is set.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads the kind and reports whether it would be set, changed or removed; writes nothing.
  diff_mode:
    support: full
    description: Shows the kind's values before and after (names of keys and networks, no secrets).
"""

EXAMPLES = r"""
- name: Only the key acme-dns01 may update the zone
  turnkey.cluster.pdns_zone_metadata:
    api_url: https://dns.example.com:8081
    api_key: "{{ dns_api_key }}"
    zone: cluster.example.com
    kind: TSIG-ALLOW-DNSUPDATE
    values: [acme-dns01]

- name: No updates from anywhere
  turnkey.cluster.pdns_zone_metadata:
    api_url: https://dns.example.com:8081
    api_key: "{{ dns_api_key }}"
    zone: cluster.example.com
    kind: ALLOW-DNSUPDATE-FROM
    state: absent
"""

RETURN = r"""
kind:
  description: The metadata kind, upper case.
  returned: always
  type: str
  sample: TSIG-ALLOW-DNSUPDATE
values:
  description: The kind's values after the task, sorted (in check mode, what they would be); empty when unset.
  returned: always
  type: list
  elements: str
  sample: [acme-dns01]
operation:
  description: C(create), C(update), C(delete) or C(none) (in check mode, what would happen).
  returned: always
  type: str
"""

from ansible_collections.turnkey.cluster.plugins.module_utils import pdns as pdns_lib


def ensure(module):
    params = module.params
    zone = pdns_lib.canonical_name(params["zone"])
    kind = params["kind"].strip().upper()
    client = pdns_lib.PdnsClient(params)
    values = client.metadata(zone, kind)
    if values is None and not module.check_mode:
        raise pdns_lib.PdnsError("zone %s does not exist on %s: create it first (turnkey.cluster.pdns_zone)"
                                 % (zone, client.url))
    current = sorted(values or []) or None
    wanted = sorted(set(params["values"])) if params["state"] == "present" else None
    action = pdns_lib.action_of(current, wanted)
    if not module.check_mode:
        if wanted is not None and action != "none":
            client.set_metadata(zone, kind, wanted)
        elif action == "delete":
            client.delete_metadata(zone, kind)
    result = {"changed": action != "none", "kind": kind, "operation": action, "values": wanted or []}
    if module._diff:
        result["diff"] = pdns_lib.diff_of({kind: current} if current else None, {kind: wanted} if wanted else None,
                                          "%s metadata %s" % (zone, kind))
    return result


def main():
    module = pdns_lib.present_or_absent_module(dict(
        zone=dict(type="str", required=True),
        kind=dict(type="str", required=True),
        values=dict(type="list", elements="str"),
    ), "values", "give at least one value, or state=absent to unset the kind")
    pdns_lib.run(module, ensure)


if __name__ == "__main__":
    main()
