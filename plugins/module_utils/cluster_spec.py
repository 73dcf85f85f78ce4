# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cross-field rules of the cluster spec.

Types are checked earlier (role argument_specs for the cluster-wide variables, the module's
argument_spec for the nodes); this file holds the rules that need more than one field at a time.
Every error names the field and how to fix it, so an operator never has to read this code.
"""

from __future__ import annotations

import ipaddress
import os
import re

# Versions this collection is built and tested with. A pair outside these ranges is refused up
# front rather than discovered as a half-built cluster (Talos support matrix, Cilium k8s matrix).
TALOS_KUBERNETES = {
    (1, 11): ((1, 29), (1, 34)),
    (1, 12): ((1, 30), (1, 35)),
    (1, 13): ((1, 31), (1, 36)),
    (1, 14): ((1, 32), (1, 37)),
}
CILIUM_KUBERNETES = {
    (1, 18): ((1, 30), (1, 33)),
    (1, 19): ((1, 31), (1, 35)),
    (1, 20): ((1, 32), (1, 36)),
}
FLUX_KUBERNETES = {
    (2, 7): ((1, 32), (1, 34)),
    (2, 8): ((1, 33), (1, 35)),
    (2, 9): ((1, 33), (1, 36)),
}

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# A Kubernetes label value (the topology labels a spec setting becomes).
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")
VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
GIT_URL = re.compile(r"^(ssh://[^\s]+|https://[^\s]+|git@[^\s:]+:[^\s]+)$")
LAYERS = ("persistent_auth", "infrastructure", "services", "configuration")
PROXMOX_VMID_MIN, PROXMOX_VMID_MAX = 100, 999999999


class SpecErrors(list):
    """Errors collected in order; each is 'field: problem. Fix: remedy.'"""

    def add(self, field, problem, fix):
        self.append("%s: %s. Fix: %s." % (field, problem, fix))


def _network(value):
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        return None


def _address(value):
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def parse_pool(text):
    """A pool is a CIDR ('10.2.3.0/28'), a range ('10.2.3.4-10.2.3.20') or one address."""
    text = str(text).strip()
    if "-" in text:
        first, last = (_address(part.strip()) for part in text.split("-", 1))
        if first is None or last is None or first.version != last.version or first > last:
            return None
        return (first, last)
    if "/" in text:
        net = _network(text)
        return None if net is None else (net[0], net[-1])
    one = _address(text)
    return None if one is None else (one, one)


def _in_pool(address, pool):
    return pool[0] <= address <= pool[1]


def _version(value):
    match = VERSION.match(str(value or ""))
    return None if match is None else tuple(int(part) for part in match.groups())


def _check_range(errors, table, name, field, minor, k8s_minor, k8s_field):
    supported = table.get(minor)
    if supported is None:
        known = ", ".join("%d.%d" % key for key in sorted(table))
        errors.add(field, "%s %d.%d is not in the tested matrix (%s)" % (name, minor[0], minor[1], known),
                   "pick one of the tested %s minors" % name)
        return
    low, high = supported
    if not low <= k8s_minor <= high:
        errors.add(k8s_field, "Kubernetes %d.%d is not supported by %s %d.%d (supported: %d.%d to %d.%d)"
                   % (k8s_minor + (name,) + minor + low + high),
                   "choose a Kubernetes version in that range or another %s version" % name)


def check_versions(errors, versions):
    parsed = {}
    for key in ("talos", "kubernetes", "cilium", "flux"):
        value = versions.get(key)
        number = _version(value)
        if number is None:
            example = {"talos": "v1.13.9", "kubernetes": "1.36.3", "cilium": "1.20.0", "flux": "v2.9.0"}[key]
            errors.add("cluster_versions.%s" % key, "%r is not a version like 1.2.3" % (value,),
                       "write a full release version such as %s" % example)
        parsed[key] = number
    for key in ("talos", "flux"):
        if parsed.get(key) and not str(versions[key]).startswith("v"):
            errors.add("cluster_versions.%s" % key,
                       "%r lacks the leading 'v' of %s release tags" % (versions[key], key),
                       "write v%s" % versions[key])
    k8s = parsed.get("kubernetes")
    if k8s is None:
        return
    for key, table in (("talos", TALOS_KUBERNETES), ("cilium", CILIUM_KUBERNETES), ("flux", FLUX_KUBERNETES)):
        if parsed.get(key):
            _check_range(errors, table, key.capitalize(), "cluster_versions.%s" % key, parsed[key][:2], k8s[:2],
                         "cluster_versions.kubernetes")


def check_network(errors, network):
    """Returns the parsed node network, or None when it is unusable."""
    cidr = _network(network.get("cidr"))
    if cidr is None:
        errors.add("cluster_network.cidr", "%r is not a network in CIDR form with no host bits" % network.get("cidr"),
                   "write the node network like 10.2.0.0/16")
        return None
    gateway = _address(network.get("gateway"))
    if gateway is None or gateway not in cidr:
        errors.add("cluster_network.gateway", "%r is not an address inside %s" % (network.get("gateway"), cidr),
                   "set the router's address on the node network")
    elif cidr.num_addresses > 2 and gateway in (cidr.network_address, cidr.broadcast_address):
        errors.add("cluster_network.gateway", "%s is the network or broadcast address of %s" % (gateway, cidr),
                   "use a usable host address")
    for index, server in enumerate(network.get("dns_servers") or []):
        if _address(server) is None:
            errors.add("cluster_network.dns_servers[%d]" % index, "%r is not an IP address" % server,
                       "list resolvers by address")
    vip = _address(network.get("api_vip"))
    if vip is None or vip not in cidr:
        errors.add("cluster_network.api_vip", "%r is not an address inside %s" % (network.get("api_vip"), cidr),
                   "pick a free address on the node network for the Kubernetes API")
    elif vip == gateway:
        errors.add("cluster_network.api_vip", "%s is the gateway's address" % vip,
                   "pick a free address for the API VIP")
    for key in ("pod_cidr", "service_cidr"):
        other = _network(network.get(key))
        if other is None:
            errors.add("cluster_network.%s" % key, "%r is not a network in CIDR form" % network.get(key),
                       "write it like %s" % ("10.244.0.0/16" if key == "pod_cidr" else "10.96.0.0/12"))
        elif other.overlaps(cidr):
            errors.add("cluster_network.%s" % key, "%s overlaps the node network %s" % (other, cidr),
                       "choose a range that no node, VIP or pool uses")
    pod, service = _network(network.get("pod_cidr")), _network(network.get("service_cidr"))
    if pod is not None and service is not None and pod.overlaps(service):
        errors.add("cluster_network.service_cidr", "%s overlaps pod_cidr %s" % (service, pod),
                   "give pods and services separate ranges")
    return cidr


def check_pools(errors, network, cidr, node_ips):
    gateway, vip = _address(network.get("gateway")), _address(network.get("api_vip"))
    seen_names, parsed = set(), []
    for index, pool in enumerate(network.get("lb_pools") or []):
        field = "cluster_network.lb_pools[%d]" % index
        name = pool.get("name")
        if name in seen_names:
            errors.add(field + ".name", "pool name %r is used twice" % name, "give every pool its own name")
        seen_names.add(name)
        bounds = parse_pool(pool.get("addresses"))
        if bounds is None:
            errors.add(field + ".addresses", "%r is not a CIDR, an address or a range first-last"
                       % pool.get("addresses"), "write e.g. 10.2.3.4-10.2.3.20")
            continue
        if bounds[0] not in cidr or bounds[1] not in cidr:
            errors.add(field + ".addresses", "%s is not inside the node network %s" % (pool.get("addresses"), cidr),
                       "take load-balancer addresses from the node network")
        for label, address in (("the gateway", gateway), ("the API VIP", vip)):
            if address is not None and _in_pool(address, bounds):
                errors.add(field + ".addresses", "%s contains %s %s" % (pool.get("addresses"), label, address),
                           "leave %s out of every pool" % label)
        for node, address in node_ips:
            if _in_pool(address, bounds):
                errors.add(field + ".addresses", "%s contains %s, the address of node %s"
                           % (pool.get("addresses"), address, node), "move the pool or the node")
        for other_name, other in parsed:
            if bounds[0] <= other[1] and other[0] <= bounds[1]:
                errors.add(field + ".addresses", "pool %r overlaps pool %r" % (name, other_name),
                           "make the pools disjoint")
        parsed.append((name, bounds))


NODE_INTEGERS = ("cores", "memory_mb", "disk_gb", "balloon_mb", "vmid")
NODE_REQUIRED = ("ip", "cores", "memory_mb", "disk_gb")


def _node_types_ok(errors, field, node):
    """Host variables come from hand-written YAML: name the host and variable of a wrong one."""
    ok = True
    for key in NODE_REQUIRED:
        if node.get(key) in (None, ""):
            errors.add(field + ".node_" + key, "is not set", "set node_%s in the host's variables" % key)
            ok = False
    for key in NODE_INTEGERS:
        value = node.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            errors.add(field + ".node_" + key, "%r is not a whole number" % (value,),
                       "write node_%s as a number without quotes or units" % key)
            ok = False
    return ok


def check_nodes(errors, nodes, cidr, network, hetzner):
    """Returns [(name, address)] of the nodes whose address parsed."""
    node_ips, seen_ip, seen_vmid = [], {}, {}
    hetzner_subnet = _network((hetzner or {}).get("network", {}).get("subnet")) if hetzner else None
    gateway, vip = _address(network.get("gateway")), _address(network.get("api_vip"))
    controlplanes = 0
    for node in nodes:
        name = str(node.get("name"))
        field = "nodes[%s]" % name
        types_ok = _node_types_ok(errors, field, node)
        if not DNS_LABEL.match(name):
            errors.add(field, "the inventory name %r is not a DNS label (lower-case letters, digits, '-', at most 63)"
                       % name, "rename the host; it becomes the Kubernetes node name")
        roles = node.get("roles") or []
        if len(roles) != 1:
            errors.add(field, "is in %s of the role groups controlplane/worker" % ("none" if not roles else "both"),
                       "put the host in exactly one of the groups controlplane or worker")
        elif roles[0] == "controlplane":
            controlplanes += 1
        providers = node.get("providers") or []
        if len(providers) != 1:
            errors.add(field, "is in %s of the provider groups proxmox_nodes/hetzner_nodes"
                       % ("none" if not providers else "both"),
                       "put the host in exactly one of the groups proxmox_nodes or hetzner_nodes")
        provider = providers[0] if len(providers) == 1 else None
        if not types_ok:
            continue
        address = _address(node.get("ip"))
        if address is None:
            errors.add(field + ".node_ip", "%r is not an IP address" % node.get("ip"),
                       "set node_ip to the node's address")
        else:
            if address in seen_ip:
                errors.add(field + ".node_ip", "%s is already used by node %s" % (address, seen_ip[address]),
                           "give every node its own address")
            seen_ip.setdefault(address, name)
            node_ips.append((name, address))
            if provider == "proxmox" and cidr is not None:
                if address not in cidr:
                    errors.add(field + ".node_ip", "%s is outside the node network %s" % (address, cidr),
                               "pick an address inside cluster_network.cidr")
                elif cidr.num_addresses > 2 and address in (cidr.network_address, cidr.broadcast_address):
                    errors.add(field + ".node_ip", "%s is the network or broadcast address" % address,
                               "pick a usable host address")
            if provider == "hetzner" and hetzner_subnet is not None and address not in hetzner_subnet:
                errors.add(field + ".node_ip", "%s is outside the Hetzner subnet %s" % (address, hetzner_subnet),
                           "pick an address inside hetzner.network.subnet")
            if address == gateway:
                errors.add(field + ".node_ip", "%s is the gateway's address" % address, "pick a free address")
            if address == vip:
                errors.add(field + ".node_ip", "%s is the API VIP" % address,
                           "the VIP floats between control planes; give the node its own address")
        if provider == "proxmox":
            vmid = node.get("vmid")
            if vmid is None:
                errors.add(field + ".node_vmid", "a Proxmox node needs a pre-assigned VM id",
                           "set node_vmid (%d-%d)" % (PROXMOX_VMID_MIN, PROXMOX_VMID_MAX))
            elif not PROXMOX_VMID_MIN <= vmid <= PROXMOX_VMID_MAX:
                errors.add(field + ".node_vmid", "%d is outside Proxmox's range %d-%d"
                           % (vmid, PROXMOX_VMID_MIN, PROXMOX_VMID_MAX), "pick an id in that range")
            elif vmid in seen_vmid:
                errors.add(field + ".node_vmid", "VM id %d is already used by node %s" % (vmid, seen_vmid[vmid]),
                           "give every Proxmox node its own VM id")
            else:
                seen_vmid[vmid] = name
        if node.get("balloon_mb") and node["balloon_mb"] > node["memory_mb"]:
            errors.add(field + ".node_balloon_mb", "the balloon floor %d MiB is above the memory %d MiB"
                       % (node["balloon_mb"], node["memory_mb"]), "lower node_balloon_mb or raise node_memory_mb")
        for key, low in (("cores", 1), ("memory_mb", 1024), ("disk_gb", 10)):
            if node.get(key) is not None and node[key] < low:
                errors.add(field + ".node_" + key, "%d is below the minimum %d for a Talos node" % (node[key], low),
                           "raise node_%s" % key)
    if not nodes:
        errors.add("nodes", "the inventory has no host in the group 'cluster'",
                   "add the cluster's nodes to the inventory")
    elif controlplanes == 0:
        errors.add("nodes", "no node is in the group controlplane", "put 1, 3 or 5 nodes in the group controlplane")
    elif controlplanes % 2 == 0:
        errors.add("nodes", "%d control planes cannot keep an etcd quorum through a failure better than %d"
                   % (controlplanes, controlplanes - 1), "use an odd number of control planes (1, 3 or 5)")
    return node_ips


def check_providers(errors, spec, nodes):
    providers = {p for node in nodes for p in node.get("providers") or []}
    if "proxmox" in providers:
        proxmox = spec.get("proxmox") or {}
        if not proxmox:
            errors.add("proxmox", "nodes are in proxmox_nodes but the proxmox settings are missing",
                       "define proxmox.api_url, node, storage and bridge")
        elif not str(proxmox.get("api_url", "")).startswith("https://"):
            errors.add("proxmox.api_url", "%r is not an https URL" % proxmox.get("api_url"),
                       "write it like https://pve.example.com:8006")
        template = proxmox.get("template_vmid", 9000) if proxmox else None
        if template is not None and proxmox.get("linked_clones", True):
            users = [n.get("name") for n in nodes if n.get("vmid") == template]
            if not PROXMOX_VMID_MIN <= template <= PROXMOX_VMID_MAX:
                errors.add("proxmox.template_vmid", "%d is outside Proxmox's range %d-%d"
                           % (template, PROXMOX_VMID_MIN, PROXMOX_VMID_MAX), "pick an id in that range")
            elif users:
                errors.add("proxmox.template_vmid", "VM id %d is the template's and node %s's" % (template, users[0]),
                           "give the template (proxmox.template_vmid, default 9000) an id no node uses")
        region = proxmox.get("region") if proxmox else None
        if region is not None and not LABEL_VALUE.match(str(region)):
            errors.add("proxmox.region", "%r is not a Kubernetes label value (it becomes topology.kubernetes.io/region "
                       "and part of the provider ID proxmox://<region>/<vmid>)" % (region,),
                       "use up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
    if "hetzner" in providers:
        hetzner = spec.get("hetzner") or {}
        if not hetzner:
            errors.add("hetzner", "nodes are in hetzner_nodes but the hetzner settings are missing",
                       "define hetzner.location, server_type and network")
        else:
            net = _network(hetzner.get("network", {}).get("ip_range"))
            subnet = _network(hetzner.get("network", {}).get("subnet"))
            if net is None:
                errors.add("hetzner.network.ip_range", "%r is not a network in CIDR form"
                           % hetzner.get("network", {}).get("ip_range"), "write it like 10.3.0.0/16")
            if subnet is None:
                errors.add("hetzner.network.subnet", "%r is not a network in CIDR form"
                           % hetzner.get("network", {}).get("subnet"), "write it like 10.3.0.0/24")
            if net is not None and subnet is not None and not subnet.subnet_of(net):
                errors.add("hetzner.network.subnet", "%s is not inside ip_range %s" % (subnet, net),
                           "take the subnet from the network's ip_range")
            home = _network((spec.get("cluster_network") or {}).get("cidr"))
            if net is not None and home is not None and net.overlaps(home):
                errors.add("hetzner.network.ip_range", "%s overlaps the home node network %s" % (net, home),
                           "the two sites are routed, not bridged: give Hetzner its own range")


def check_cluster(errors, spec):
    name, domain = spec.get("cluster_name"), spec.get("cluster_domain")
    if not DNS_LABEL.match(str(name or "")):
        errors.add("cluster_name", "%r is not a DNS label" % (name,), "use lower-case letters, digits and '-'")
    if not DNS_NAME.match(str(domain or "")):
        errors.add("cluster_domain", "%r is not a DNS name with at least two labels" % (domain,),
                   "write it like cluster.example.com")
    gitops = spec.get("gitops") or {}
    if not GIT_URL.match(str(gitops.get("url", ""))):
        errors.add("gitops.url", "%r is not an ssh:// or https:// git URL" % gitops.get("url"),
                   "write it like ssh://git@github.com/owner/cluster.git")
    path = str(gitops.get("path", ""))
    if path.startswith("/") or ".." in path.split("/"):
        errors.add("gitops.path", "%r must be relative to the repository root" % path, "write it like k8s")
    mirror = str((spec.get("charts") or {}).get("repository_url") or "")
    if mirror and not re.match(r"^(https://|oci://)[^\s/]+", mirror):
        errors.add("charts.repository_url", "%r is not an https:// Helm repository or an oci:// registry" % mirror,
                   "write it like https://charts.example.com or oci://registry.example.com/charts")


EXTENSION = re.compile(r"^[a-z0-9-]+/[a-z0-9.-]+$")


def check_talos_image(errors, image):
    url = str(image.get("factory_url", "https://factory.talos.dev"))
    if not url.startswith("https://"):
        errors.add("talos_image.factory_url", "%r is not an https URL" % url, "write it like https://factory.talos.dev")
    for index, name in enumerate(image.get("extensions") or []):
        if not EXTENSION.match(str(name)):
            errors.add("talos_image.extensions[%d]" % index, "%r is not an official extension name" % (name,),
                       "write it like siderolabs/qemu-guest-agent")
    seen = set()
    for index, item in enumerate(image.get("meta") or []):
        key = item.get("key") if isinstance(item, dict) else None
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key <= 255:
            errors.add("talos_image.meta[%d].key" % index, "%r is not a META key 0-255" % (key,),
                       "write each entry as {key: <0-255>, value: <text>}")
        elif key in seen:
            errors.add("talos_image.meta[%d].key" % index, "META key %d is set twice" % key, "set each key once")
        seen.add(key)


def _have_proxmox_credentials(proxmox, environ):
    if proxmox.get("token_id") and proxmox.get("token_secret"):
        return True
    if environ.get("PROXMOX_TOKEN_ID") and environ.get("PROXMOX_TOKEN_SECRET"):
        return True
    return bool(environ.get("PROXMOX_USER") and environ.get("PROXMOX_PASSWORD"))


def check_api_credentials(errors, spec, providers, environ):
    """The cloud APIs of the providers in use (layers 00 and 01 speak to them)."""
    if "proxmox" in providers and spec.get("proxmox") and not _have_proxmox_credentials(spec["proxmox"], environ):
        errors.add("proxmox.token_secret", "no Proxmox VE API credentials: proxmox.token_id/token_secret are empty "
                   "and neither PROXMOX_TOKEN_ID/PROXMOX_TOKEN_SECRET nor PROXMOX_USER/PROXMOX_PASSWORD is set",
                   "create an API token (pveum user token add) and put its secret in the inventory's vault "
                   "or export PROXMOX_TOKEN_SECRET")
    hetzner_token = (spec.get("hetzner") or {}).get("token") or environ.get("HCLOUD_TOKEN")
    if "hetzner" in providers and spec.get("hetzner") and not hetzner_token:
        errors.add("hetzner.token", "no Hetzner Cloud API token: hetzner.token is empty and HCLOUD_TOKEN is not set",
                   "create a read/write token in the Hetzner console and put it in the inventory's vault "
                   "or export HCLOUD_TOKEN")


def check_credentials(errors, spec, layer, environ, providers=()):
    """Credentials the given layer needs; a layer asks only for what it uses."""
    if layer == "infrastructure":
        check_api_credentials(errors, spec, providers, environ)
    if layer == "persistent_auth":
        # Layer 00 makes the Proxmox CSI token; Hetzner is not spoken to before layer 01.
        check_api_credentials(errors, spec, set(providers) & {"proxmox"}, environ)
        store = spec.get("secrets_store") or {}
        env_name = store.get("vault_password_env")
        password_file = store.get("vault_password_file")
        if env_name and environ.get(env_name):
            return
        if password_file and os.path.isfile(os.path.expanduser(password_file)):
            return
        errors.add("secrets_store", "no vault password for the persistent store: %s does not exist and %s is not set"
                   % (password_file or "vault_password_file (unset)", env_name or "vault_password_env (unset)"),
                   "create the password file (mode 0600) or export the variable; keep the password safe, "
                   "the store cannot be read without it")


# The ports a Hetzner firewall opens to a list of networks of the spec (docs/hybrid.md); the last two
# follow admin_cidrs unless set.
CLOUD_PORTS = (("admin_cidrs", "the Talos API (50000/tcp)"),
               ("kubernetes_api_cidrs", "the Kubernetes API (6443/tcp)"),
               ("trustd_cidrs", "trustd (50001/tcp)"))
# Broader than any one organisation's networks: a regional registry gets an IPv4 /8 or an IPv6 /12.
WORLD_PREFIX = {4: 8, 6: 12}


def _world_open(networks):
    """The networks of a list that open a port to (a large part of) the whole internet."""
    return [str(net) for net in networks if net.prefixlen < WORLD_PREFIX[net.version]]


def _cidr_list(errors, hybrid, key):
    """The networks of hybrid.<key>, each one checked; None when the key is not set."""
    cidrs = hybrid.get(key)
    if cidrs is None:
        return None
    if not cidrs:
        errors.add("hybrid." + key, "the list is empty, so nobody could reach %s of a cloud node"
                   % dict(CLOUD_PORTS)[key], "list the networks that need it, like 203.0.113.7/32")
    networks = []
    for index, cidr in enumerate(cidrs):
        try:
            networks.append(ipaddress.ip_network(str(cidr), strict=True))
        except ValueError:
            errors.add("hybrid.%s[%d]" % (key, index), "%r is not a network in CIDR form" % (cidr,),
                       "write it like 203.0.113.0/24 or 2001:db8::/48")
    return networks


def check_cloud_exposure(errors, hybrid, providers):
    """With Hetzner nodes the firewalls open 50000, 6443 and 50001 to these lists on public addresses: never
    to the whole internet unless the operator says so (hybrid.allow_world_open)."""
    lists = {key: _cidr_list(errors, hybrid, key) for key, _what in CLOUD_PORTS}
    if "hetzner" not in providers or hybrid.get("allow_world_open"):
        return
    fix = ("list only the networks that need it (your public address, like 203.0.113.7/32), or set "
           "hybrid.allow_world_open: true to accept it")
    if lists["admin_cidrs"] is None:
        errors.add("hybrid.admin_cidrs", "not set, so %s of the Hetzner nodes would be open to the whole "
                   "internet (and 6443 and 50001 on control planes, which follow it)" % CLOUD_PORTS[0][1], fix)
    for key, what in CLOUD_PORTS:
        world = _world_open(lists[key] or [])
        if world:
            errors.add("hybrid." + key, "%s open%s %s of the Hetzner nodes to the whole internet"
                       % (" and ".join(world), "s" if len(world) == 1 else "", what), fix)


def check_hybrid(errors, spec, nodes):
    """Nodes at home and on Hetzner form one cluster only through KubeSpan, whose peers find each other
    through the discovery service; the cloud nodes' ports are not open to the world (docs/hybrid.md)."""
    hybrid = spec.get("hybrid") or {}
    providers = {p for node in nodes for p in node.get("providers") or []}
    if {"proxmox", "hetzner"} <= providers and not hybrid.get("kubespan"):
        errors.add("hybrid.kubespan", "nodes are in both proxmox_nodes and hetzner_nodes but KubeSpan is off, so "
                   "the two sites cannot reach each other's private addresses",
                   "set hybrid.kubespan: true and hybrid.discovery: true (WireGuard between the sites, 51820/udp)")
    if hybrid.get("kubespan") and not hybrid.get("discovery"):
        errors.add("hybrid.discovery", "KubeSpan is on but cluster discovery is off; KubeSpan peers find each other "
                   "through discovery", "set hybrid.discovery: true")
    check_cloud_exposure(errors, hybrid, providers)


KV_PATH = re.compile(r"^[a-z0-9][a-z0-9-]*(/[a-z0-9][a-z0-9_.-]*)+$")


def check_vault(errors, spec, layer):
    """The cluster's Vault (layer 02, docs/vault.md): reachable over verified TLS, a sane unseal threshold, and
    each application secret it holds taken from the store and placed under one app's path."""
    vault = spec.get("vault") or {}
    if not vault:
        if layer in ("services", "configuration"):
            errors.add("vault", "not set, and layer 02 configures the cluster's Vault",
                       "add a vault section with deploy (in_cluster or external) and address (docs/spec.md)")
        return
    if not str(vault.get("address") or "").startswith("https://"):
        errors.add("vault.address", "%r is not an https URL" % (vault.get("address"),),
                   "write it like https://vault.example.com:8200; Vault's tokens and unseal keys never travel in clear")
    shares, threshold = vault.get("key_shares", 5), vault.get("key_threshold", 3)
    if isinstance(shares, int) and isinstance(threshold, int) and not 1 <= threshold <= shares <= 20:
        errors.add("vault.key_threshold", "%s of %s key shares: need 1 <= key_threshold <= key_shares <= 20"
                   % (threshold, shares), "for example key_shares: 5 and key_threshold: 3")
    tokens = {str(token.get("name")) for token in (spec.get("secrets_store") or {}).get("tokens") or []}
    derived = sso_store_secrets(spec.get("sso_apps"), spec.get("sso_users"), spec.get("authentik"), spec.get("dns"))
    tokens |= {entry["name"] for entry in derived}
    seen = set()
    for index, secret in enumerate(vault.get("kv_secrets") or []):
        field = "vault.kv_secrets[%d]" % index
        path = str(secret.get("path", ""))
        if not KV_PATH.match(path) or ".." in path.split("/"):
            errors.add(field + ".path", "%r is not <app>/<name>" % path,
                       "write it like authentik/bootstrap: External Secrets may read kv/data/<app>/*")
        if path in seen:
            errors.add(field + ".path", "kv/%s is listed twice" % path, "give every secret its own path")
        seen.add(path)
        if secret.get("name") not in tokens:
            errors.add(field + ".name",
                       "%r is not a secret of the store (secrets_store.tokens)" % (secret.get("name"),),
                       "add it to secrets_store.tokens so layer 00 generates it once, or fix the name")


# Single sign-on (layer 03, docs/sso.md): the generate-once secrets the spec implies and the rules of its fields.
# The names are fixed: layer 00 generates them, layer 02 puts them into Vault and the cluster, layer 03 uses them.
SSO_NAME = re.compile(r"^[a-z0-9-]+$")
# (store name, length, kv path, kv key) of Authentik's own secrets; the bootstrap token is the playbook's API token.
AUTHENTIK_SECRETS = (("authentik_bootstrap_token", 64, "authentik/bootstrap", "token"),
                     ("authentik_bootstrap_password", 32, "authentik/bootstrap-password", "password"),
                     ("authentik_secret_key", 64, "authentik/secret-key", "secret_key"),
                     ("authentik_postgres_password", 32, "authentik/postgres-password", "password"))
SSO_CLIENT_SECRET_LENGTH, SSO_PASSWORD_LENGTH, PDNS_API_KEY_LENGTH = 64, 32, 32
# The TSIG key cert-manager signs its ACME DNS-01 updates with (k8s/platform/cert-manager-acme): a store token of
# 64 letters and digits is valid base64, so it is the key's secret as it is; Vault holds it for External Secrets.
ACME_DNS01_TSIG = {"name": "acme_dns01_tsig", "length": 64, "path": "cert-manager/acme-dns01-tsig", "key": "secret"}
# The PowerDNS the tree deploys with dns.deploy in_cluster reads its API key from Vault (docs/dns.md).
PDNS_API_KEY_KV = {"name": "pdns_api_key", "path": "dns/powerdns", "key": "api_key"}
DNS_DEPLOYS = ("external", "in_cluster")
# Domains that are never public (RFC 2606, RFC 6761, RFC 8375 and the usual private suffixes): no ACME for them.
PRIVATE_DOMAINS = (r"(^|\.)(test|example|invalid|localhost|local|internal|lan|home|corp|home\.arpa"
                   r"|example\.(com|net|org))$")


def acme_enabled(cluster_domain, setting="auto", private_domains=""):
    """Whether the cluster gets the ACME issuer: setting true/false, or auto - when cluster_domain is public."""
    if str(setting).lower() != "auto":
        return str(setting).lower() in ("true", "yes", "on", "1")
    return re.search(private_domains or PRIVATE_DOMAINS, str(cluster_domain or "").rstrip(".")) is None


def sso_store_name(prefix, name):
    """sso_client_secret_<app> / sso_password_<user>: the name with '-' as '_'."""
    return prefix + str(name).replace("-", "_")


SSO_APP_DEFAULTS = {"enabled": True, "type": "oidc", "groups": []}


# The sso_apps entry that is Vault's own UI: Vault's OIDC auth method is its client, and only it maps groups to Vault
# policies (vault_policies). Layer 03's role vault_oidc and verify's Vault login go by this name (docs/sso.md).
VAULT_SSO_APP = "vault"

# The sso_apps entry whose shipped release maps groups to the app's own roles (roles), and the roles Grafana knows;
# the strongest role a user's groups give wins (role platform_tree's sso-release-grafana.yaml.j2, docs/sso.md).
GRAFANA_SSO_APP = "grafana"
GRAFANA_ROLES = ("GrafanaAdmin", "Admin", "Editor", "Viewer")

# What a shipped release (role platform_tree's sso-release-<app>.yaml.j2, docs/sso.md) needs besides the client
# secret, generated once like it: (secret, length) per app name; store name sso_<app>_<secret>, kv path
# sso/<app>/<secret with '-'>, key <secret>. Harbor's secret key is its AES key, exactly 16 characters.
SSO_RELEASE_SECRETS = {"harbor": (("admin_password", 32), ("secret_key", 16)),
                       "synapse": (("postgres_password", 32), ("redis_password", 32))}
# The path a shipped release's app calls back to after the login; the app fixes it, so the provider must allow it.
SSO_RELEASE_CALLBACKS = {"harbor": "/c/oidc/callback", "synapse": "/_synapse/client/oidc/callback"}


def dns_in_cluster(dns):
    """Whether the GitOps tree deploys the cluster's PowerDNS (dns.deploy in_cluster) rather than using one outside."""
    return bool(dns) and dns.get("deploy", "external") == "in_cluster"


def sso_vault_app(apps):
    """The enabled app that is Vault's own UI, its defaults filled in; {} when the spec has none."""
    return next((app for app in sso_enabled_apps(apps) if app["name"] == VAULT_SSO_APP), {})


def sso_enabled_apps(apps, kind=None):
    """The enabled apps of sso_apps with the spec's defaults filled in (enabled, type oidc, no groups); only those
    of type `kind` when given."""
    filled = [{**SSO_APP_DEFAULTS, **app} for app in apps or []]
    return [app for app in filled if app["enabled"] and kind in (None, app["type"])]


def sso_oidc_apps(apps):
    """The enabled apps that get an OIDC client (type oidc, the default)."""
    return sso_enabled_apps(apps, "oidc")


def sso_release_secrets(apps):
    """(store name, length, kv path, kv key) of the secrets the enabled apps' shipped releases need (not with
    release: false, when the app runs elsewhere)."""
    return [(sso_store_name("sso_%s_" % app["name"], secret), length,
             "sso/%s/%s" % (app["name"], secret.replace("_", "-")), secret)
            for app in sso_oidc_apps(apps) if app.get("release", True)
            for secret, length in SSO_RELEASE_SECRETS.get(app["name"], ())]


def sso_store_secrets(apps, users, authentik, dns=None):
    """The store entries (name, length, type) the spec implies, in a stable order."""
    entries = [(name, length) for name, length, _path, _key in AUTHENTIK_SECRETS] if authentik else []
    if dns:
        entries += [("pdns_api_key", PDNS_API_KEY_LENGTH), (ACME_DNS01_TSIG["name"], ACME_DNS01_TSIG["length"])]
    entries += [(sso_store_name("sso_client_secret_", app.get("name")), SSO_CLIENT_SECRET_LENGTH)
                for app in sso_oidc_apps(apps)]
    entries += [(name, length) for name, length, _path, _key in sso_release_secrets(apps)]
    entries += [(sso_store_name("sso_password_", user.get("name")), SSO_PASSWORD_LENGTH) for user in users or []]
    return [{"name": name, "length": length, "type": "token"} for name, length in entries]


def sso_kv_secrets(apps, authentik, dns=None):
    """The Vault kv entries (name, path, key) of the derived secrets (docs/sso.md, docs/dns.md)."""
    entries = [{"name": name, "path": path, "key": key}
               for name, _length, path, key in AUTHENTIK_SECRETS] if authentik else []
    if dns:
        entries.append({field: ACME_DNS01_TSIG[field] for field in ("name", "path", "key")})
    if dns_in_cluster(dns):
        entries.append(dict(PDNS_API_KEY_KV))
    entries += [{"name": sso_store_name("sso_client_secret_", app.get("name")),
                 "path": "sso/%s" % app.get("name"), "key": "client_secret"} for app in sso_oidc_apps(apps)]
    return entries + [{"name": name, "path": path, "key": key}
                      for name, _length, path, key in sso_release_secrets(apps)]


def merge_by_name(given, derived):
    """The operator's entries as given, then the derived ones whose name they do not already have."""
    names = {entry.get("name") for entry in given or []}
    return list(given or []) + [entry for entry in derived if entry["name"] not in names]


def _host(url):
    match = re.match(r"^https://([^/:?#]+)", str(url or ""))
    return match.group(1).lower() if match else None


def _check_sso_app(errors, field, app, groups):
    name = app.get("name")
    if not SSO_NAME.match(str(name or "")):
        errors.add(field + ".name", "%r is not a slug" % (name,), "use lower-case letters, digits and '-'")
    if app.get("type", "oidc") not in ("oidc", "proxy"):
        errors.add(field + ".type", "%r is not oidc or proxy" % (app.get("type"),),
                   "use oidc (an OIDC client) or proxy (forward auth through the outpost)")
    if not app.get("redirect_uris"):
        errors.add(field + ".redirect_uris", "the list is empty",
                   "list the app's callback URL(s); the first one's host is the app's host name")
    admin = app.get("admin_group")
    if admin is not None and admin not in groups:
        errors.add(field + ".admin_group", "%r is not one of the app's groups %s" % (admin, sorted(groups)),
                   "add it to sso_apps[].groups or name one of them")
    policies = app.get("vault_policies")
    if policies and name != VAULT_SSO_APP:
        errors.add(field + ".vault_policies", "only the app named %s maps groups to Vault policies (this is %r)"
                   % (VAULT_SSO_APP, name), "remove vault_policies here, or put them on the app %s" % VAULT_SSO_APP)
    elif policies:
        for group in sorted(set(policies) - set(groups)):
            errors.add(field + ".vault_policies", "group %r is not one of the app's groups %s"
                       % (group, sorted(groups)), "map only groups listed in sso_apps[].groups")


def _check_app_roles(errors, field, app, groups):
    roles = app.get("roles")
    if not roles:
        return
    if app.get("name") != GRAFANA_SSO_APP:
        errors.add(field + ".roles", "only the app named %s maps groups to its roles (this is %r)"
                   % (GRAFANA_SSO_APP, app.get("name")),
                   "remove roles here; admin_group names the admins of the other apps")
        return
    for group, role in sorted(roles.items()):
        if group not in groups:
            errors.add(field + ".roles", "group %r is not one of the app's groups %s" % (group, sorted(groups)),
                       "map only groups listed in sso_apps[].groups")
        if role not in GRAFANA_ROLES:
            errors.add(field + ".roles", "%r (for group %r) is not a Grafana role" % (role, group),
                       "use one of %s" % ", ".join(GRAFANA_ROLES))


def _check_release_callback(errors, field, app):
    """An enabled app whose release the collection ships lists the callback its app calls (on its host)."""
    path = SSO_RELEASE_CALLBACKS.get(app.get("name"))
    origin = re.match(r"^https://[^/?#]+", str((app.get("redirect_uris") or [""])[0]))
    if not path or not origin or not app.get("enabled", True) or not app.get("release", True):
        return
    wanted = origin.group(0) + path
    if wanted not in app["redirect_uris"]:
        errors.add(field + ".redirect_uris", "%s is not among them, though the collection's %s release returns "
                   "there after the login" % (wanted, app["name"]),
                   "add it, or set release: false when the app runs elsewhere")


def check_sso(errors, spec):
    """The SSO apps, users and groups fit together, and Authentik is reached over https."""
    apps, users = spec.get("sso_apps") or [], spec.get("sso_users") or []
    seen, owners, known_groups = set(), {}, set(spec.get("sso_groups") or [])
    for index, app in enumerate(apps):
        field = "sso_apps[%d]" % index
        if app.get("name") in seen:
            errors.add(field + ".name", "application %r is listed twice" % app.get("name"), "list each app once")
        seen.add(app.get("name"))
        groups = set(app.get("groups") or [])
        known_groups |= groups
        _check_sso_app(errors, field, app, groups)
        _check_app_roles(errors, field, app, groups)
        _check_release_callback(errors, field, app)
        for uri_index, uri in enumerate(app.get("redirect_uris") or []):
            uri_field = "%s.redirect_uris[%d]" % (field, uri_index)
            if not str(uri).startswith("https://"):
                errors.add(uri_field, "%r is not an https URL" % uri, "OIDC redirects must use https")
            elif uri in owners:
                errors.add(uri_field, "%r is already a redirect URI of %s" % (uri, owners[uri]),
                           "give every app its own callback URLs")
            owners.setdefault(uri, "sso_apps[%d] (%s)" % (index, app.get("name")))
    names = set()
    for index, user in enumerate(users):
        field = "sso_users[%d]" % index
        name = user.get("name")
        if not SSO_NAME.match(str(name or "")):
            errors.add(field + ".name", "%r is not a user name of lower-case letters, digits and '-'" % (name,),
                       "rename the user; its password is kept in the store as sso_password_<name>")
        elif name in names:
            errors.add(field + ".name", "user %r is listed twice" % name, "list each user once")
        names.add(name)
        if not str(user.get("email") or "").strip():
            errors.add(field + ".email", "the user %r has no email" % (name,), "set the user's email address")
        for group in user.get("groups") or []:
            if group not in known_groups:
                errors.add(field + ".groups", "group %r is neither an app's group nor in sso_groups" % (group,),
                           "add it to an app's groups or to sso_groups, so layer 03 creates it")
    authentik = spec.get("authentik") or {}
    if (users or any(app.get("enabled", True) for app in apps)) and not authentik:
        errors.add("authentik", "sso_apps or sso_users are set but authentik is not",
                   "add authentik.url (Authentik's https base URL, docs/spec.md)")
    elif authentik and not str(authentik.get("url") or "").startswith("https://"):
        errors.add("authentik.url", "%r is not an https URL" % (authentik.get("url"),),
                   "write it like https://auth.example.com; logins and tokens never travel in clear")


def _check_dns_in_cluster(errors, spec, dns):
    """dns.deploy is known; a PowerDNS the tree deploys takes the `dns` pool's address, and its API answers only
    the networks api_allow_from names."""
    deploy = dns.get("deploy", "external")
    if deploy not in DNS_DEPLOYS:
        errors.add("dns.deploy", "%r is not one of %s" % (deploy, ", ".join(DNS_DEPLOYS)),
                   "use in_cluster (the GitOps tree deploys PowerDNS) or external (an existing PowerDNS)")
        return
    for index, cidr in enumerate(dns.get("api_allow_from") or []):
        if _network(str(cidr)) is None:
            errors.add("dns.api_allow_from[%d]" % index, "%r is not a network" % (cidr,),
                       "write it like 10.2.0.0/16 (host bits zero)")
    pools = (spec.get("cluster_network") or {}).get("lb_pools") or []
    if deploy == "in_cluster" and not any(pool.get("name") == "dns" for pool in pools):
        errors.add("dns.deploy", "in_cluster needs a load-balancer pool named dns for PowerDNS' address, and "
                   "cluster_network.lb_pools has none", "add {name: dns, addresses: <one free address>} to "
                   "cluster_network.lb_pools, or use deploy external")


def check_dns(errors, spec):
    """The zone holds every host the spec names; a secondary is fully described. Its API key must be named; an
    empty value (the lab's, read from a running lab) is refused by role dns_zone when layer 03 uses it."""
    dns = spec.get("dns") or {}
    if not dns:
        return
    zone = str(dns.get("zone") or spec.get("cluster_domain") or "").lower().rstrip(".")
    if not DNS_NAME.match(zone):
        errors.add("dns.zone", "%r is not a DNS name with at least two labels" % (zone,),
                   "write it like example.com (default: cluster_domain)")
        return
    # An app is reached by its host name, which the zone's records make; an Authentik named by an IP address
    # (as in the lab) gets no record, so only a named Authentik must lie in the zone.
    hosts = [("sso_apps[%d].redirect_uris[0]" % index, _host((app.get("redirect_uris") or [""])[0]))
             for index, app in enumerate(spec.get("sso_apps") or []) if app.get("enabled", True)]
    hosts.append(("authentik.url", _host((spec.get("authentik") or {}).get("url"))))
    for field, host in hosts:
        if host and _address(host) is None and host != zone and not host.endswith("." + zone):
            errors.add(field, "the host %s is not inside the zone %s" % (host, zone),
                       "use a host name under %s, or set dns.zone to the domain that holds it" % zone)
    _check_dns_in_cluster(errors, spec, dns)
    secondary = dns.get("secondary") or {}
    if secondary:
        for key in ("api_url", "api_key", "masters"):
            if secondary.get(key) is None if key == "api_key" else not secondary.get(key):
                errors.add("dns.secondary." + key, "is not set, and the secondary needs it",
                           "set dns.secondary.api_url, api_key and masters (the primary's addresses), "
                           "or remove dns.secondary")
        for index, master in enumerate(secondary.get("masters") or []):
            if _address(re.sub(r"^\[(.*)\]:\d+$|^([^:]*):\d+$", r"\1\2", str(master))) is None:
                errors.add("dns.secondary.masters[%d]" % index, "%r is not an IP address" % (master,),
                           "list the primary's addresses (with :port when not 53) the secondary transfers the "
                           "zone from")


def validate(spec, nodes, layer, environ=None):
    """Runs every rule and returns the list of errors (empty when the spec is valid)."""
    errors = SpecErrors()
    environ = os.environ if environ is None else environ
    if layer not in LAYERS:
        errors.add("layer", "%r is not a layer" % layer, "use one of %s" % ", ".join(LAYERS))
    check_cluster(errors, spec)
    check_versions(errors, spec.get("cluster_versions") or {})
    network = spec.get("cluster_network") or {}
    cidr = check_network(errors, network)
    node_ips = check_nodes(errors, nodes, cidr, network, spec.get("hetzner"))
    if cidr is not None:
        check_pools(errors, network, cidr, node_ips)
    check_providers(errors, spec, nodes)
    check_talos_image(errors, spec.get("talos_image") or {})
    check_hybrid(errors, spec, nodes)
    check_vault(errors, spec, layer)
    check_sso(errors, spec)
    check_dns(errors, spec)
    providers = {p for node in nodes for p in node.get("providers") or []}
    check_credentials(errors, spec, layer, environ, providers)
    return list(errors)
