#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pdns_wait_transfer
short_description: Waits until a PowerDNS secondary has transferred a zone's current serial from its primary
version_added: 0.1.0
description:
  - Reads the zone's served SOA serial from the primary's API (O(primary_api_url)) and waits until the
    secondary's API (O(api_url)) reports the same serial for its copy of the zone.
  - When the secondary is behind, it is asked once to transfer the zone at once (C(axfr-retrieve)), in case
    a NOTIFY was lost; then the module polls until O(wait_timeout).
  - Changes nothing on either server (a transfer request only hurries what the secondary does anyway), so
    it always reports C(changed=false).
  - Fails naming both serials and the usual causes (the primary's C(allow-axfr-ips), the secondary's
    C(masters)) when the serials do not meet in time.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.pdns
options:
  zone:
    description: The zone, e.g. C(example.com).
    type: str
    required: true
  primary_api_url:
    description: The primary's HTTP API. The other connection options (O(ca_path), O(validate_certs),
      O(server_id), O(timeout)) apply to both servers.
    type: str
    required: true
  primary_api_key:
    description: The primary's API key.
    type: str
    required: true
  wait_timeout:
    description: Seconds to wait for the secondary to reach the primary's serial.
    type: int
    default: 60
  retrieve:
    description: Ask a secondary that is behind to transfer the zone at once (once per run).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reads both serials once and reports whether they match; neither waits nor asks for a
      transfer, and a zone the primary or the secondary does not have yet (it would be created) is not an
      error.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
"""

EXAMPLES = r"""
- name: The secondary serves what the primary serves
  turnkey.cluster.pdns_wait_transfer:
    api_url: https://ns2.example.com:8081
    api_key: "{{ dns_secondary_api_key }}"
    primary_api_url: https://dns.example.com:8081
    primary_api_key: "{{ dns_api_key }}"
    zone: cluster.example.com
"""

RETURN = r"""
zone:
  description: The zone's canonical name.
  returned: always
  type: str
primary_serial:
  description: The SOA serial the primary serves (null when it has no such zone, in check mode).
  returned: always
  type: int
secondary_serial:
  description: The serial of the secondary's copy (null when it has no such zone, in check mode).
  returned: always
  type: int
in_sync:
  description: Whether the serials are equal.
  returned: always
  type: bool
retrieved:
  description: Whether the secondary was asked to transfer the zone.
  returned: always
  type: bool
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import pdns as pdns_lib

POLL_INTERVAL = 0.5


def served_serial(data):
    return data.get("edited_serial") or data.get("serial")


def wait(module):
    params = module.params
    zone = pdns_lib.canonical_name(params["zone"])
    primary = pdns_lib.PdnsClient(params, url=params["primary_api_url"], api_key=params["primary_api_key"])
    secondary = pdns_lib.PdnsClient(params)
    primary_zone = primary.zone(zone)
    if primary_zone is None and module.check_mode:
        # A check run of a play that also creates the zone: nothing to compare yet.
        return {"changed": False, "zone": zone, "primary_serial": None, "secondary_serial": None,
                "in_sync": False, "retrieved": False}
    if primary_zone is None:
        raise pdns_lib.PdnsError("zone %s does not exist on the primary %s" % (zone, primary.url))
    wanted = served_serial(primary_zone)
    result = {"changed": False, "zone": zone, "primary_serial": wanted, "secondary_serial": None,
              "in_sync": False, "retrieved": False}
    deadline = time.monotonic() + params["wait_timeout"]
    while True:
        copy = secondary.zone(zone)
        result["secondary_serial"] = copy.get("serial") if copy else None
        result["in_sync"] = result["secondary_serial"] == wanted
        if result["in_sync"] or module.check_mode:
            return result
        if copy is None:
            raise pdns_lib.PdnsError("zone %s does not exist on the secondary %s: create it there with "
                                     "turnkey.cluster.pdns_zone kind=Slave" % (zone, secondary.url))
        if params["retrieve"] and not result["retrieved"]:
            secondary.axfr_retrieve(zone)
            result["retrieved"] = True
        if time.monotonic() > deadline:
            raise pdns_lib.PdnsError(
                "the secondary %s still has serial %s of zone %s after %s s, the primary %s serves %s: check "
                "that the secondary's masters name the primary and that the primary's allow-axfr-ips lets "
                "the secondary transfer (the secondary's log says why a transfer failed)"
                % (secondary.url, result["secondary_serial"], zone, params["wait_timeout"], primary.url, wanted))
        time.sleep(POLL_INTERVAL)


def main():
    argument_spec = pdns_lib.connection_args()
    argument_spec.update(
        zone=dict(type="str", required=True),
        primary_api_url=dict(type="str", required=True),
        primary_api_key=dict(type="str", required=True, no_log=True),
        wait_timeout=dict(type="int", default=60),
        retrieve=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    pdns_lib.run(module, wait)


if __name__ == "__main__":
    main()
