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
  - The API server answers C(ok) on C(/readyz), through the kubeconfig, with the Kubernetes Python client
    (TLS verified against the kubeconfig's CA).
  - Every name in O(nodes) is a registered Node - matched by name, not by counting - and, with
    O(ready=true), its C(Ready) condition is C(True).
  - "On timeout it fails with what is missing, by name - for example
    C(etcd members missing: cp3; nodes not registered: worker2; nodes not Ready: worker1 (KubeletNotReady))."
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
    description: Only reads; in check mode a missing kubeconfig (a cluster not built yet) is reported, not an error.
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

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.turnkey.cluster.plugins.module_utils.talosctl import (
    find_talosctl,
    node_args,
    talos_argument_spec,
)

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.rest import ApiException
    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()


def etcd_members(module, talosctl, controlplane):
    """(member hostnames, problem or None) from `talosctl etcd members` on the first control plane."""
    first = controlplane[0]
    args = [talosctl, "etcd", "members"] + node_args(module.params["talosconfig"], first["ip"])
    rc, out, err = module.run_command(args, environ_update={"LC_ALL": "C"})
    if rc != 0:
        last = ((err or out).strip().splitlines() or ["no answer"])[-1]
        return [], "etcd on %s: %s" % (first["name"], last)
    lines = [line for line in out.splitlines() if line.strip()]
    header = next((line for line in lines if "HOSTNAME" in line), None)
    if header is None:
        return [], "etcd on %s lists no members" % first["name"]
    column = header.index("HOSTNAME")
    return [line[column:].split()[0] for line in lines if line is not header and len(line) > column], None


def why(condition):
    """The reason (and the start of the message) of a Ready condition, for the failure message."""
    if condition is None:
        return "no Ready condition"
    message = (condition.message or "").strip()
    if len(message) > 100:
        message = message[:100] + "..."
    return "%s: %s" % (condition.reason, message) if message else str(condition.reason)


def kubernetes_state(kubeconfig):
    """(API problem or None, {node name: (ready, reason)})."""
    try:
        api = k8s_config.new_client_from_config(config_file=kubeconfig)
        # /readyz through the client's own connection pool: the kubeconfig's CA and client certificate
        answer = api.rest_client.pool_manager.request("GET", api.configuration.host.rstrip("/") + "/readyz",
                                                      timeout=10, retries=False)
        if answer.status != 200:
            failed = [line.strip() for line in answer.data.decode(errors="replace").splitlines() if "failed" in line]
            return "API server not ready (/readyz HTTP %s)%s" % (
                answer.status, ": " + ", ".join(failed) if failed else ""), {}
        items = k8s_client.CoreV1Api(api).list_node(_request_timeout=10).items
    except ApiException as exc:
        return "API server: HTTP %s %s" % (exc.status, exc.reason), {}
    except (OSError, ValueError) as exc:
        return "API server: %s" % str(exc).strip().splitlines()[0], {}
    except Exception as exc:  # urllib3's connection errors (refused, TLS) while the API server starts
        return "API server: %s: %s" % (type(exc).__name__, (str(exc).strip().splitlines() or [""])[0][:200]), {}
    nodes = {}
    for item in items:
        ready = next((c for c in item.status.conditions or [] if c.type == "Ready"), None)
        nodes[item.metadata.name] = (ready is not None and ready.status == "True",
                                     why(ready))
    return None, nodes


def problems_of(module, talosctl):
    p = module.params
    problems = []
    members, trouble = etcd_members(module, talosctl, p["controlplane_nodes"])
    if trouble:
        problems.append(trouble)
    else:
        missing = [cp["name"] for cp in p["controlplane_nodes"] if cp["name"] not in members]
        if missing:
            problems.append("etcd members missing: %s" % ", ".join(missing))
    api_problem, nodes = kubernetes_state(p["kubeconfig"])
    if api_problem:
        problems.append(api_problem)
    else:
        unregistered = [name for name in p["nodes"] if name not in nodes]
        if unregistered:
            problems.append("nodes not registered: %s" % ", ".join(unregistered))
        if p["ready"]:
            not_ready = ["%s (%s)" % (name, nodes[name][1]) for name in p["nodes"]
                         if name in nodes and not nodes[name][0]]
            if not_ready:
                problems.append("nodes not Ready: %s" % ", ".join(not_ready))
    return problems, members, {name: ready for name, (ready, _reason) in nodes.items()}


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
        if waited >= p["timeout"]:
            module.fail_json(msg="the cluster is not healthy after %d s: %s" % (p["timeout"], "; ".join(problems)),
                             etcd_members=members, nodes=nodes, waited=waited)
        time.sleep(min(p["interval"], max(p["timeout"] - waited, 0.1)))


if __name__ == "__main__":
    main()
