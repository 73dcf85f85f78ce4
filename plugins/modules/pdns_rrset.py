#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pdns_rrset
short_description: One record set (name and type) in a PowerDNS zone, over its HTTP API
version_added: 0.1.0
description:
  - Ensures the rrset O(name)/O(type) in O(zone) holds exactly O(records) with O(ttl), or is absent.
  - Names and record contents are compared in PowerDNS' canonical form, which the module writes for you -
    a name without a trailing dot is relative to the zone (C(www) is C(www.example.com.), C(@) the apex),
    host names in C(CNAME)/C(NS)/C(MX)/C(SRV)/C(PTR) contents get their trailing dot, C(TXT) contents
    their quotes - so a rerun is C(changed=false).
  - Only this rrset is sent (C(PATCH) with C(changetype) C(REPLACE) or C(DELETE)); the zone's other
    records are never touched. With the zone's SOA-EDIT-API, PowerDNS moves the SOA serial, and a
    C(Master) zone NOTIFYs its secondaries.
  - A zone that does not exist fails the task, except in check mode, where the rrset is reported as one
    that would be created (the play's M(turnkey.cluster.pdns_zone) task would have made the zone).
  - For C(SOA), the serial in O(records) is ignored when comparing and the zone's current serial kept,
    because SOA-EDIT-API owns it.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.pdns
options:
  zone:
    description: The zone the rrset belongs to, e.g. C(example.com). It must exist (M(turnkey.cluster.pdns_zone)).
    type: str
    required: true
  name:
    description: The owner name, absolute (C(www.example.com), C(www.example.com.)) or relative to O(zone)
      (C(www), C(@) for the apex).
    type: str
    required: true
  type:
    description: The record type, e.g. C(A), C(AAAA), C(CNAME), C(TXT), C(MX), C(NS), C(SOA).
    type: str
    required: true
  records:
    description: The records' contents in zone-file presentation format. Required when O(state=present).
    type: list
    elements: str
  ttl:
    description: The rrset's TTL in seconds.
    type: int
    default: 3600
  state:
    description: Whether the rrset exists.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads the zone and reports whether the rrset would be created, replaced or deleted; writes
      nothing.
  diff_mode:
    support: full
    description: Shows this rrset (TTL and records) before and after; records are public DNS data.
"""

EXAMPLES = r"""
- name: The Kubernetes API's address
  turnkey.cluster.pdns_rrset:
    api_url: https://dns.example.com:8081
    ca_path: /etc/ssl/homelab-ca.pem
    api_key: "{{ dns_api_key }}"
    zone: cluster.example.com
    name: api
    type: A
    records: [10.2.0.10]
    ttl: 300

- name: No more wildcard
  turnkey.cluster.pdns_rrset:
    api_url: https://dns.example.com:8081
    api_key: "{{ dns_api_key }}"
    zone: cluster.example.com
    name: "*"
    type: A
    state: absent
"""

RETURN = r"""
name:
  description: The rrset's canonical owner name (trailing dot).
  returned: always
  type: str
  sample: api.cluster.example.com.
type:
  description: The record type, upper case.
  returned: always
  type: str
operation:
  description: C(create), C(update), C(delete) or C(none) (in check mode, what would happen).
  returned: always
  type: str
rrset:
  description: The rrset after the task (in check mode, what it would be) - name, type, ttl, records;
    null when absent.
  returned: always
  type: dict
  sample: {"name": "api.cluster.example.com.", "type": "A", "ttl": 300, "records": ["10.2.0.10"]}
serial:
  description: The zone's SOA serial after the task (before it, in check mode or when nothing changed).
  returned: always
  type: int
"""

from ansible_collections.turnkey.cluster.plugins.module_utils import pdns as pdns_lib


def wanted_rrset(params, name, rtype, current):
    if params["state"] == "absent":
        return None
    contents = [pdns_lib.canonical_content(rtype, content) for content in params["records"]]
    if rtype == "SOA":
        # SOA-EDIT-API owns the serial: keep the zone's, whatever the task says.
        serial = (current or {}).get("records", [{}])[0].get("content", "").split()[2:3]
        contents = [" ".join(c.split()[:2] + (serial or c.split()[2:3]) + c.split()[3:]) for c in contents]
    return {"name": name, "type": rtype, "ttl": params["ttl"],
            "records": [{"content": content, "disabled": False} for content in sorted(set(contents))]}


def comparable(rrset):
    view = pdns_lib.rrset_view(rrset)
    if view and view["type"] == "SOA":
        view["records"] = [pdns_lib.soa_without_serial(record) for record in view["records"]]
    return view


def ensure(module):
    params = module.params
    zone = pdns_lib.canonical_name(params["zone"])
    name = pdns_lib.canonical_name(params["name"], zone)
    rtype = params["type"].strip().upper()
    client = pdns_lib.PdnsClient(params)
    data = client.zone(zone)
    if data is None and module.check_mode:
        # A check run of a play that also creates the zone: the rrset would be created with it.
        data = {"rrsets": [], "serial": None}
    elif data is None:
        raise pdns_lib.PdnsError("zone %s does not exist on %s: create it first (turnkey.cluster.pdns_zone)"
                                 % (zone, client.url))
    current = pdns_lib.find_rrset(data, name, rtype)
    wanted = wanted_rrset(params, name, rtype, current)
    action = pdns_lib.action_of(comparable(current), comparable(wanted))
    serial = data.get("serial")
    if action != "none" and not module.check_mode:
        change = dict(wanted or {"name": name, "type": rtype, "records": []},
                      changetype="DELETE" if wanted is None else "REPLACE")
        client.patch_rrsets(zone, [change])
        data = client.zone(zone)
        serial = data.get("serial")
        wanted = pdns_lib.find_rrset(data, name, rtype)
    before, after = pdns_lib.rrset_view(current), pdns_lib.rrset_view(wanted)
    result = {"changed": action != "none", "name": name, "type": rtype, "operation": action, "rrset": after,
              "serial": serial}
    if module._diff:
        result["diff"] = pdns_lib.diff_of(before, after, "%s %s" % (name, rtype))
    return result


def main():
    module = pdns_lib.present_or_absent_module(dict(
        zone=dict(type="str", required=True),
        name=dict(type="str", required=True),
        type=dict(type="str", required=True),
        records=dict(type="list", elements="str"),
        ttl=dict(type="int", default=3600),
    ), "records", "give at least one record, or state=absent to remove the rrset")
    pdns_lib.run(module, ensure)


if __name__ == "__main__":
    main()
