# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError

from ansible_collections.turnkey.cluster.plugins.module_utils.cluster_spec import dns_in_cluster, parse_pool

# Documented in powerdns_in_cluster.yml beside this file.

DNS_POOL = "dns"


def powerdns_in_cluster(dns, cluster_network):
    """What the tree's PowerDNS needs from the spec ({} unless dns.deploy is in_cluster): the dns pool's address, the
    secondaries (the nameservers' addresses outside that pool), which may transfer the zone and are notified, and
    the networks that may use the API."""
    if not dns_in_cluster(dns):
        return {}
    network = cluster_network or {}
    pool = next((entry for entry in network.get("lb_pools") or [] if entry.get("name") == DNS_POOL), None)
    bounds = parse_pool(pool["addresses"]) if pool else None
    if bounds is None:
        raise AnsibleFilterError("dns.deploy in_cluster needs cluster_network.lb_pools to have a pool named %s with "
                                 "an address, a range first-last or a CIDR" % DNS_POOL)
    secondaries = []
    for server in dns.get("nameservers") or []:
        try:
            address = ipaddress.ip_address(str(server.get("address") or ""))
        except ValueError:
            continue
        if not bounds[0] <= address <= bounds[1] and str(address) not in secondaries:
            secondaries.append(str(address))
    return {"address": str(bounds[0]), "secondaries": secondaries,
            "api_allow_from": list(dns.get("api_allow_from") or [network.get("cidr")])}


class FilterModule:
    def filters(self):
        return {"powerdns_in_cluster": powerdns_in_cluster}
