#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pdns_zone
short_description: A zone on a PowerDNS Authoritative server, over its HTTP API
version_added: 0.1.0
description:
  - Ensures the zone O(name) exists with the given kind, SOA-EDIT-API, nameservers (its apex NS rrset)
    and, for a secondary (O(kind=Slave)), the primaries it transfers from; or that it is absent.
  - Reads the zone first and changes only what differs, so a rerun is C(changed=false).
  - The same module configures the primary (O(kind=Master) or C(Native)) and the secondary
    (O(kind=Slave) with O(masters)); records are M(turnkey.cluster.pdns_rrset)'s business.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.pdns
options:
  name:
    description: The zone, e.g. C(example.com); the trailing dot is added when missing.
    type: str
    required: true
  kind:
    description:
      - C(Master) sends NOTIFY to its secondaries and lets them transfer the zone; C(Native) relies on
        database replication; C(Slave) is transferred by AXFR from O(masters).
    type: str
    choices: [Native, Master, Slave]
    default: Native
  nameservers:
    description:
      - The zone's nameservers (the apex NS rrset), e.g. C([ns1.example.com, ns2.example.com]). Kept
        exactly when given; left alone when omitted. Not for O(kind=Slave), whose records come by transfer.
    type: list
    elements: str
  nameserver_ttl:
    description: TTL of the apex NS rrset when this module writes it.
    type: int
    default: 3600
  masters:
    description:
      - The primaries a O(kind=Slave) zone transfers from (C(ip) or C(ip:port)). Required for C(Slave).
    type: list
    elements: str
  soa_edit_api:
    description:
      - How the API moves the SOA serial on every change made through it (PowerDNS' C(SOA-EDIT-API)) -
        C(DEFAULT) (date-based, C(YYYYMMDDnn)), C(INCREASE), C(EPOCH), C(OFF). Left alone for C(Slave).
    type: str
    default: DEFAULT
  soa_edit:
    description: PowerDNS' C(SOA-EDIT) metadata (how served serials are edited); left alone when omitted.
    type: str
  retrieve:
    description:
      - For a O(kind=Slave) zone that is created or whose O(masters) change, ask the server to transfer it
        at once (C(axfr-retrieve)) instead of waiting for a NOTIFY or its refresh timer.
    type: bool
    default: true
  state:
    description: Whether the zone exists. C(absent) deletes it with all its records.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads the zone and reports what would be created, changed or deleted; writes nothing.
  diff_mode:
    support: full
    description: Shows the zone's kind, masters, SOA-EDIT settings and nameservers before and after.
"""

EXAMPLES = r"""
- name: The cluster's zone on the primary, notifying its secondary
  turnkey.cluster.pdns_zone:
    api_url: https://dns.example.com:8081
    ca_path: /etc/ssl/homelab-ca.pem
    api_key: "{{ dns_api_key }}"
    name: cluster.example.com
    kind: Master
    nameservers: [ns1.cluster.example.com, ns2.cluster.example.com]

- name: The same zone on the secondary, transferred from the primary
  turnkey.cluster.pdns_zone:
    api_url: https://ns2.example.com:8081
    api_key: "{{ dns_secondary_api_key }}"
    name: cluster.example.com
    kind: Slave
    masters: [203.0.113.10]
"""

RETURN = r"""
name:
  description: The zone's canonical name (trailing dot).
  returned: always
  type: str
  sample: cluster.example.com.
operation:
  description: C(create), C(update), C(delete) or C(none) (in check mode, what would happen).
  returned: always
  type: str
zone:
  description: The zone's settings after the task (in check mode, what they would be); null when absent.
  returned: always
  type: dict
  sample: {"kind": "Master", "masters": [], "soa_edit_api": "DEFAULT", "nameservers": ["ns1.example.com."]}
serial:
  description: The zone's SOA serial as the server reports it (0 for a secondary that has not transferred
    yet); null when the zone is absent or only would be created.
  returned: always
  type: int
"""

from ansible_collections.turnkey.cluster.plugins.module_utils import pdns as pdns_lib


def current_view(data):
    if data is None:
        return None
    ns = pdns_lib.find_rrset(data, data["name"].lower(), "NS")
    return {"kind": data.get("kind"), "masters": sorted(data.get("masters") or []),
            "soa_edit_api": data.get("soa_edit_api"), "soa_edit": data.get("soa_edit"),
            "nameservers": sorted(r["content"].lower() for r in (ns or {}).get("records") or [])}


def wanted_view(params, current):
    wanted = dict(current or {"kind": None, "masters": [], "soa_edit_api": None, "soa_edit": "",
                              "nameservers": []})
    wanted["kind"] = params["kind"]
    wanted["masters"] = sorted(params["masters"] or []) if params["kind"] == "Slave" else []
    if params["kind"] != "Slave" or current is None:
        wanted["soa_edit_api"] = params["soa_edit_api"]
    if params["soa_edit"] is not None:
        wanted["soa_edit"] = params["soa_edit"]
    if params["nameservers"] is not None:
        wanted["nameservers"] = sorted(pdns_lib.canonical_name(ns) for ns in params["nameservers"])
    return wanted


def validate(module):
    params = module.params
    if params["state"] != "present":
        return
    if params["kind"] == "Slave":
        if not params["masters"]:
            module.fail_json(msg="kind=Slave needs masters: the primaries the zone is transferred from")
        if params["nameservers"]:
            module.fail_json(msg="nameservers are not for kind=Slave: a secondary's records come by transfer")
    elif params["masters"]:
        module.fail_json(msg="masters is only for kind=Slave (kind is %s)" % params["kind"])


def ensure(module):
    params = module.params
    name = pdns_lib.canonical_name(params["name"])
    client = pdns_lib.PdnsClient(params)
    data = client.zone(name)
    before = current_view(data)
    after = wanted_view(params, before) if params["state"] == "present" else None
    action = pdns_lib.action_of(before, after)
    if action != "none" and not module.check_mode:
        apply(client, params, name, action, before, after)
        data = client.zone(name)
        if action != "delete":
            after = current_view(data)
    result = {"changed": action != "none", "name": name, "operation": action, "zone": after,
              "serial": data.get("serial") if data else None}
    if module._diff:
        result["diff"] = pdns_lib.diff_of(before, after, "zone %s" % name)
    return result


def apply(client, params, name, action, before, after):
    if action == "delete":
        client.delete_zone(name)
        return
    if action == "create":
        body = {"name": name, "kind": after["kind"], "nameservers": after["nameservers"],
                "soa_edit_api": after["soa_edit_api"]}
        if after["kind"] == "Slave":
            body = {"name": name, "kind": "Slave", "masters": after["masters"], "nameservers": []}
        if params["soa_edit"] is not None:
            body["soa_edit"] = params["soa_edit"]
        client.create_zone(body)
    else:
        changes = {key: after[key] for key in ("kind", "masters", "soa_edit_api", "soa_edit")
                   if after[key] != before[key]}
        if changes:
            client.update_zone(name, changes)
        if after["nameservers"] != before["nameservers"] and after["kind"] != "Slave":
            records = [{"content": ns, "disabled": False} for ns in after["nameservers"]]
            client.patch_rrsets(name, [{"name": name, "type": "NS", "ttl": params["nameserver_ttl"],
                                        "changetype": "REPLACE" if records else "DELETE", "records": records}])
    masters_changed = action == "create" or after["masters"] != before["masters"]
    if after["kind"] == "Slave" and params["retrieve"] and masters_changed:
        client.axfr_retrieve(name)


def main():
    module = pdns_lib.present_or_absent_module(dict(
        name=dict(type="str", required=True),
        kind=dict(type="str", choices=["Native", "Master", "Slave"], default="Native"),
        nameservers=dict(type="list", elements="str"),
        nameserver_ttl=dict(type="int", default=3600),
        masters=dict(type="list", elements="str"),
        soa_edit_api=dict(type="str", default="DEFAULT"),
        soa_edit=dict(type="str"),
        retrieve=dict(type="bool", default=True),
    ))
    validate(module)
    pdns_lib.run(module, ensure)


if __name__ == "__main__":
    main()
