# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

# Documented in dns_records.yml beside this file.

INGRESS_POOL = "ingress"


def _first_address(addresses):
    """The first address of a pool: one address, a range first-last, or a CIDR (its first address)."""
    first = re.sub(r"[-/].*$", "", str(addresses).strip())
    try:
        return str(ipaddress.ip_address(first))
    except ValueError:
        raise AnsibleFilterError("lb pool address %r is not an address, a range first-last or a CIDR"
                                 % addresses) from None


def _record_type(address):
    return "AAAA" if ipaddress.ip_address(address).version == 6 else "A"


def _host(url):
    return (urlsplit(url).hostname or "").lower().rstrip(".")


def _in_zone(host, zone):
    return host == zone or host.endswith("." + zone)


def dns_records(dns, cluster_network, authentik=None, sso_apps=None, zone=None):
    """The zone's records from the spec: api -> the API VIP, the auth host and every enabled app's host -> the
    ingress pool's first address (those inside the zone), then the spec's own dns.records."""
    dns, authentik = dns or {}, authentik or {}
    zone = (zone or dns.get("zone") or "").lower().rstrip(".")
    if not zone:
        raise AnsibleFilterError("dns_records needs the zone (dns.zone or cluster_domain)")
    derived = []
    api_vip = (cluster_network or {}).get("api_vip")
    if api_vip:
        derived.append(("api." + zone, api_vip))
    hosts = [_host(authentik["url"])] if authentik.get("url") else []
    for app in sso_apps or []:
        if app.get("enabled", True) and app.get("redirect_uris"):
            hosts.append(_host(app["redirect_uris"][0]))
    hosts = [host for host in dict.fromkeys(hosts) if host and _in_zone(host, zone)]
    if hosts:
        pools = [pool for pool in (cluster_network or {}).get("lb_pools") or [] if pool.get("name") == INGRESS_POOL]
        if not pools:
            raise AnsibleFilterError("the hosts %s need the ingress pool's address: add an lb pool named %r to "
                                     "cluster_network.lb_pools" % (", ".join(hosts), INGRESS_POOL))
        ingress = _first_address(pools[0]["addresses"])
        derived.extend((host, ingress) for host in hosts)
    records = [{"name": name + ".", "type": _record_type(address), "content": str(address)}
               for name, address in derived]
    return records + list(dns.get("records") or [])


class FilterModule:
    def filters(self):
        return {"dns_records": dns_records}
