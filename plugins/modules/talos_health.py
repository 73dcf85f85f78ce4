#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: talos_health
short_description: Wait until etcd, the API server and every expected node are there, by name
version_added: 0.1.0
description:
  - Polls until every check passes or O(timeout) runs out.
  - etcd - C(talosctl etcd members) on the first control plane lists every control plane of
    O(controlplane_nodes) by hostname. (C(talosctl) prints that list only as a table; the module reads
    its C(HOSTNAME) column by the header's position.)
  - The API server answers C(ok) on C(/readyz), with the kubeconfig's credentials and the Kubernetes Python
    client (TLS verified against the kubeconfig's CA) - first on the control planes' own addresses (port of
    the kubeconfig's server; the first ready one is enough), then on the kubeconfig's server (the VIP).
    A VIP that does not answer while a control plane's API server does is reported as C(VIP unreachable)
    (Nodes are then read through that control plane), apart from C(API server not ready).
  - Every name in O(nodes) is a registered Node - matched by name, not by counting - and, with
    O(ready=true), its C(Ready) condition is C(True).
  - "On timeout it fails with what is missing, by name - for example
    C(etcd members missing: cp3; nodes not registered: worker2; nodes not Ready: worker1 (KubeletNotReady))."
  - The control planes' own API addresses only help to tell the failures apart; one not answering while the
    VIP does is not a failure.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.talos
options:
  kubeconfig:
    description: The admin kubeconfig.
    type: path
    required: true
  talosconfig:
    description: The talosconfig.
    type: path
    required: true
  controlplane_nodes:
    description: The control planes, each C(name) (its hostname) and C(ip) (its Talos API address).
    type: list
    elements: dict
    required: true
  nodes:
    description: Every node that must be registered, by name.
    type: list
    elements: str
    required: true
  ready:
    description: Whether every node must also be Ready (after the CNI runs).
    type: bool
    default: true
  timeout:
    description: Seconds to wait for all checks to pass.
    type: int
    default: 600
  interval:
    description: Seconds between two rounds of checks.
    type: int
    default: 5
requirements:
  - kubernetes (the Python client)
attributes:
  check_mode:
    support: full
    description:
      - Only reads. In check mode it does not wait - the changes the run would apply did not happen - and
        reports what is not healthy now as a warning; a missing kubeconfig (a cluster not built yet) is
        reported too, not an error.
  diff_mode:
    support: none
    description: A check changes nothing.
"""

EXAMPLES = r"""
- name: Wait for every node to be Ready
  turnkey.cluster.talos_health:
    kubeconfig: "{{ inventory_dir }}/.state/kubeconfig"
    talosconfig: "{{ inventory_dir }}/.state/talos/talosconfig"
    controlplane_nodes:
      - {name: cp1, ip: 192.168.1.11}
      - {name: cp2, ip: 192.168.1.12}
    nodes: [cp1, cp2, worker1]
    timeout: 300
"""

RETURN = r"""
etcd_members:
  description: The etcd members' names seen last.
  returned: always
  type: list
  elements: str
nodes:
  description: Each registered node's name and whether it is Ready, seen last.
  returned: always
  type: dict
  sample: {cp1: true, worker1: false}
waited:
  description: Seconds spent waiting.
  returned: always
  type: float
"""

import os
import time
import traceback
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.turnkey.cluster.plugins.module_utils.talos_etcd import etcd_members
from ansible_collections.turnkey.cluster.plugins.module_utils.talosctl import (
    find_talosctl,
    talos_argument_spec,
)

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.rest import ApiException
    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()


def first_etcd_members(module, talosctl, controlplane):
    """(member hostnames, problem or None) from `talosctl etcd members` on the first control plane."""
    first = controlplane[0]
    members, trouble = etcd_members(module, talosctl, module.params["talosconfig"], first["ip"])
    return members, ("etcd on %s: %s" % (first["name"], trouble) if trouble else None)


def why(condition):
    """The reason (and the start of the message) of a Ready condition, for the failure message."""
    if condition is None:
        return "no Ready condition"
    message = (condition.message or "").strip()
    if len(message) > 100:
        message = message[:100] + "..."
    return "%s: %s" % (condition.reason, message) if message else str(condition.reason)


def error_text(exc):
    return "%s: %s" % (type(exc).__name__, (str(exc).strip().splitlines() or [""])[0][:200])


def readyz(api, base):
    """None when <base>/readyz answers ok; else ('unreachable' or 'not ready', why)."""
    try:
        # through the client's own connection pool: the kubeconfig's CA and client certificate
        answer = api.rest_client.pool_manager.request("GET", base + "/readyz", timeout=10, retries=False)
    except Exception as exc:  # urllib3's connection errors (refused, timeout, TLS) while nothing answers
        return "unreachable", error_text(exc)
    if answer.status != 200:
        failed = [line.strip() for line in answer.data.decode(errors="replace").splitlines() if "failed" in line]
        return "not ready", "/readyz HTTP %s%s" % (answer.status, ": " + ", ".join(failed) if failed else "")
    return None


def own_address(server, ip):
    """The API server on a control plane's own address, at the port of the kubeconfig's server."""
    port = urlsplit(server).port or 443
    return "https://%s:%d" % ("[%s]" % ip if ":" in ip else ip, port)


def api_problem(api, controlplane):
    """(problem or None, base URL to list Nodes through or None).

    A control plane's own address is asked first (the first that is ready is enough), then the server of
    the kubeconfig (the VIP): 'VIP unreachable' while a control plane answers is told apart from 'API
    server not ready'."""
    server = api.configuration.host.rstrip("/")
    own, answering = [], None
    for cp in controlplane:
        base = own_address(server, cp["ip"])
        trouble = readyz(api, base)
        if trouble is None:
            answering = (cp["name"], base)
            break
        own.append("%s: %s" % (cp["name"], trouble[1]))
    vip = readyz(api, server)
    if vip is None:
        return None, server
    if vip[0] == "unreachable" and answering:
        return ("VIP unreachable: %s (%s), while the API server answers on %s (%s)"
                % (server, vip[1], answering[0], answering[1])), answering[1]
    if vip[0] == "unreachable":
        return ("API server not ready: %s unreachable (%s) and on no control plane's own address (%s)"
                % (server, vip[1], "; ".join(own))), None
    return "API server not ready (%s)" % vip[1], None


def kubernetes_state(kubeconfig, controlplane):
    """(API problem or None, {node name: (ready, reason)} or None when the Nodes could not be listed)."""
    try:
        api = k8s_config.new_client_from_config(config_file=kubeconfig)
    except (OSError, ValueError, k8s_config.ConfigException) as exc:
        return "kubeconfig %s: %s" % (kubeconfig, error_text(exc)), None
    problem, base = api_problem(api, controlplane)
    if base is None:
        return problem, None
    api.configuration.host = base  # through a control plane's own address when the VIP does not answer
    try:
        items = k8s_client.CoreV1Api(api).list_node(_request_timeout=10).items
    except ApiException as exc:
        return problem or "API server: HTTP %s %s" % (exc.status, exc.reason), None
    except Exception as exc:  # urllib3's connection errors while the API server restarts
        return problem or "API server: %s" % error_text(exc), None
    nodes = {}
    for item in items:
        ready = next((c for c in item.status.conditions or [] if c.type == "Ready"), None)
        nodes[item.metadata.name] = (ready is not None and ready.status == "True",
                                     why(ready))
    return problem, nodes


def problems_of(module, talosctl):
    p = module.params
    problems = []
    members, trouble = first_etcd_members(module, talosctl, p["controlplane_nodes"])
    if trouble:
        problems.append(trouble)
    else:
        missing = [cp["name"] for cp in p["controlplane_nodes"] if cp["name"] not in members]
        if missing:
            problems.append("etcd members missing: %s" % ", ".join(missing))
    trouble, nodes = kubernetes_state(p["kubeconfig"], p["controlplane_nodes"])
    if trouble:
        problems.append(trouble)
    if nodes is not None:
        unregistered = [name for name in p["nodes"] if name not in nodes]
        if unregistered:
            problems.append("nodes not registered: %s" % ", ".join(unregistered))
        if p["ready"]:
            not_ready = ["%s (%s)" % (name, nodes[name][1]) for name in p["nodes"]
                         if name in nodes and not nodes[name][0]]
            if not_ready:
                problems.append("nodes not Ready: %s" % ", ".join(not_ready))
    return problems, members, {name: ready for name, (ready, _reason) in (nodes or {}).items()}


def main():
    module = AnsibleModule(
        argument_spec=talos_argument_spec(
            kubeconfig=dict(type="path", required=True),
            talosconfig=dict(type="path", required=True),
            controlplane_nodes=dict(type="list", elements="dict", required=True),
            nodes=dict(type="list", elements="str", required=True),
            ready=dict(type="bool", default=True),
            timeout=dict(type="int", default=600),
            interval=dict(type="int", default=5),
        ),
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=IMPORT_ERROR)
    p = module.params
    if not p["controlplane_nodes"] or any(not cp.get("name") or not cp.get("ip") for cp in p["controlplane_nodes"]):
        module.fail_json(msg="controlplane_nodes: each needs a name and an ip, and there must be one at least")
    if module.check_mode and not os.path.exists(p["kubeconfig"]):
        module.exit_json(changed=False, etcd_members=[], nodes={}, waited=0.0,
                         msg="no kubeconfig yet (%s): nothing to check" % p["kubeconfig"])
    talosctl = find_talosctl(module)
    started = time.monotonic()
    while True:
        problems, members, nodes = problems_of(module, talosctl)
        waited = round(time.monotonic() - started, 1)
        if not problems:
            module.exit_json(changed=False, etcd_members=members, nodes=nodes, waited=waited)
        if module.check_mode:
            # the applies this run would make did not happen: what they would bring is not waited for
            module.warn("check mode: the cluster is not healthy now: %s" % "; ".join(problems))
            module.exit_json(changed=False, etcd_members=members, nodes=nodes, waited=waited,
                             msg="not healthy now: %s" % "; ".join(problems))
        if waited >= p["timeout"]:
            module.fail_json(msg="the cluster is not healthy after %d s: %s" % (p["timeout"], "; ".join(problems)),
                             etcd_members=members, nodes=nodes, waited=waited)
        time.sleep(min(p["interval"], max(p["timeout"] - waited, 0.1)))


if __name__ == "__main__":
    main()
