"""A stand-in for cilium-operator (lab component `cilium-operator`, <net>.0.17): what the real operator does that the
product depends on, done by a small Python process as the operator's identity, since the real one cannot run here.

The real operator needs Cilium's datapath and agents, and its module is huge; the lab runs no Cilium at all (KWOK
plays the agents' and the operator's pods Ready). Without an operator nothing registers Cilium's CRDs (the chart
ships none), so layer 02's CiliumLoadBalancerIPPools and CiliumL2AnnouncementPolicy would fail with "no matches for
kind", and no LoadBalancer Service would get an address. This stand-in does those two things, as Cilium v1.20's
operator does them:

- How it comes to run: a DeploymentProcess (deployment_process.py). Until the cluster holds Deployment
  kube-system/cilium-operator it waits; then it runs with a token of the Deployment's ServiceAccount (TokenRequest),
  so the chart's RBAC for the operator is all it may do. The ConfigMap `cilium-config` the pod mounts at
  --config-dir is written to the component's folder by reconcile() (the kubelet's part, with the lab's identity); a
  changed ConfigMap restarts the process, as the chart's rollOutPods does the pods. Health: /healthz on :9234, as
  the pod's probes ask, 200 once the CRDs are registered.
- CRDs (pkg/k8s/apis/cilium.io/client/register.go, crdhelpers.CreateUpdateCRD): the set of
  synced.AllCiliumCRDResourceNames() for the config (CRDS below), from the YAML files the operator embeds, which
  tools/build cilium-crds copies out of github.com/cilium/cilium at the chart's version together with the schema
  version. Each is created when missing, and updated (labels and spec replaced) when its label
  io.cilium.k8s.crd.schema.version is missing or older than ours, then waited on until Established. Create and
  update (POST/PUT, field manager cilium-operator), not server-side apply: the chart's ClusterRole grants the
  operator create and update on CRDs, not patch.
- LB IPAM (operator/pkg/lbipam): every second it lists the pools and Services and works out the allocations
  afresh from the Services' status (as the operator imports them after a restart), oldest Service first: a Service
  of type LoadBalancer (no loadBalancerClass when default-lb-service-ipam is lbipam, or io.cilium/l2-announcer /
  io.cilium/bgp-control-plane when enabled) keeps the ingress IPs it holds that a pool selecting it still covers,
  and gets what is missing: the IPs it requests (annotation lbipam.cilium.io/ips or io.cilium/lb-ipam-ips, comma
  separated, and spec.loadBalancerIP), else one address per requested family, the lowest free one of the first
  matching enabled pool (by name). status.loadBalancer.ingress and the condition cilium.io/IPAMRequestSatisfied
  (True `satisfied`, or False `no_pool`, `pool_selector_mismatch`, `already_allocated`, `out_of_ips` with the
  operator's messages) are written with a JSON patch of /status (field manager cilium-operator-lb-ipam). Pools get
  cilium.io/PoolConflict (False `resolved`, or True `cidr_overlap` for the newer of two overlapping pools, which
  then hands out nothing) and cilium.io/IPsTotal, IPsAvailable, IPsUsed (Unknown, `noreason`, the count as message;
  allowFirstLastIPs: No reserves a CIDR's first and last address, counted as used).
- Not done: L2 announcements and BGP (no datapath: nothing answers ARP for the addresses), sharing keys
  (lbipam.cilium.io/sharing-key: such a Service gets an address of its own), the ingress and Gateway controllers,
  node IPAM, identity and endpoint garbage collection, metrics. A disabled pool keeps its allocations (as the
  operator's documentation says) and hands out no new ones.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import ipaddress
import json
import os
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from .. import procs
from ..state import write_file
from .base import Health
from .deployment_process import DeploymentProcess, cluster_admin, tool_path

HEALTH_PORT = 9234
SCHEMA_LABEL = "io.cilium.k8s.crd.schema.version"
CRD_MANAGER, LB_IPAM_MANAGER = "cilium-operator", "cilium-operator-lb-ipam"
SATISFIED, CONFLICT = "cilium.io/IPAMRequestSatisfied", "cilium.io/PoolConflict"
REQUESTED_IPS = ("lbipam.cilium.io/ips", "io.cilium/lb-ipam-ips")
POOLS = "/apis/cilium.io/v2/ciliumloadbalancerippools"
# The CRDs the operator registers (synced.AllCiliumCRDResourceNames): file, and the cilium-config key and default
# that switch it on (None: always).
CRDS = (
    ("v2/ciliumidentities.yaml", None, True), ("v2alpha1/ciliumpodippools.yaml", None, True),
    ("v2/ciliumendpoints.yaml", "cep", True),
    ("v2alpha1/ciliumendpointslices.yaml", "enable-cilium-endpoint-slice", False),
    ("v2/ciliumnodes.yaml", "enable-ciliumnode-crd", True),
    ("v2/ciliumnetworkpolicies.yaml", "enable-cilium-network-policy", True),
    ("v2/ciliumclusterwidenetworkpolicies.yaml", "enable-cilium-clusterwide-network-policy", True),
    ("v2/ciliumcidrgroups.yaml", "policy", True),
    ("v2/ciliumegressgatewaypolicies.yaml", "enable-egress-gateway", False),
    ("v2/ciliumlocalredirectpolicies.yaml", "enable-local-redirect-policy", False),
    ("v2/ciliumclusterwideenvoyconfigs.yaml", "enable-envoy-config", False),
    ("v2/ciliumenvoyconfigs.yaml", "enable-envoy-config", False),
    *((f"v2/ciliumbgp{kind}.yaml", "enable-bgp-control-plane", False) for kind in (
        "clusterconfigs", "advertisements", "peerconfigs", "nodeconfigs", "nodeconfigoverrides")),
    ("v2alpha1/ciliumdatapathplugins.yaml", "enable-datapath-plugins", False),
    ("v2/ciliumloadbalancerippools.yaml", None, True), ("v2alpha1/ciliuml2announcementpolicies.yaml", None, True),
    ("v2alpha1/ciliumgatewayclassconfigs.yaml", "enable-gateway-api", False),
    ("v2/ciliumnodeconfigs.yaml", None, True),
)


class CiliumOperator(DeploymentProcess):
    """The component: runs main() below as the Deployment's ServiceAccount once the Deployment exists."""

    name = controller = deployment = "cilium-operator"
    namespace = "kube-system"
    host = "0.17"
    port = HEALTH_PORT
    ready_path = "/healthz"
    lab_flags = ("config-dir", "operator-api-serve-addr")

    @property
    def config_dir(self) -> Path:
        return self.data_dir / "config-map"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        tool_path("cilium-crds")  # fail in `lab up` when `make tools` has not copied the CRDs
        # the "binary": a script the waiting process execs (argv[1] of the process then names the state folder)
        lab_src = Path(__file__).resolve().parents[2]
        write_file(self.binary_link, f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(lab_src)!r})\n"
                   "from turnkey_lab.components.cilium_operator import main\nsys.exit(main())\n", mode=0o700)
        self.launch_file.unlink(missing_ok=True)

    def pod_env(self) -> dict[str, str]:
        return {"CILIUM_K8S_NAMESPACE": self.namespace}

    def lab_args(self, seen: set[str]) -> list[str]:
        """The mounted config and the probe's address; the CRDs' folder (the stand-in's own flag): a new Cilium
        pin is a new command line, so the stand-in restarts and updates the CRDs, as the operator's new pods do."""
        return [f"--config-dir={self.config_dir}", f"--operator-api-serve-addr={self.ip}:{HEALTH_PORT}",
                f"--crds={tool_path('cilium-crds')}"]

    def reconcile(self) -> Health:
        admin = cluster_admin(self.lab)
        try:  # the kubelet's part: the pod's volume from ConfigMap cilium-config
            found = admin and admin.request("GET", f"/api/v1/namespaces/{self.namespace}/configmaps/cilium-config")
        except (OSError, urllib.error.URLError, ValueError):
            found = None
        if found and self._mount((found or {}).get("data") or {}) and self._running():
            self._stop_controller()  # started with another config: the supervisor starts it again
        return super().reconcile()

    def _mount(self, data: dict[str, str]) -> bool:
        """Write the ConfigMap's keys as files; True when that changed them."""
        current = {p.name: p.read_text() for p in self.config_dir.glob("*")} if self.config_dir.is_dir() else {}
        if current == data:
            return False
        self.config_dir.mkdir(mode=0o700, exist_ok=True)
        for stale in set(current) - set(data):
            (self.config_dir / stale).unlink()
        for key, value in data.items():
            write_file(self.config_dir / key, value, mode=0o600)
        return True

    def _controller_pid(self) -> int | None:
        pid = procs.read_pid(self.pid_file)
        argv = procs.cmdline(pid) if pid else None
        return pid if argv and str(self.binary_link) in argv[:2] else None  # a script: its interpreter is argv[0]


# -- the process ------------------------------------------------------------------------------------------------
class Api:
    """The API server as the kubeconfig's user (its tokenFile re-read on every request, as client-go does)."""

    def __init__(self, kubeconfig: Path):
        config = yaml.safe_load(kubeconfig.read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        self.server = cluster["server"].rstrip("/")
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        self.context = ssl.create_default_context(cadata=ca)
        self.token_file = Path(user["tokenFile"])

    def __call__(self, method: str, path: str, body=None, content_type: str = "application/json"):
        headers = {"Authorization": "Bearer " + self.token_file.read_text().strip(), "Accept": "application/json",
                   "Content-Type": content_type, "User-Agent": "cilium-operator-generic (turnkey lab stand-in)"}
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and method == "GET":
                return None
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')[:300]}") from exc


def flag(config: dict[str, str], key: str, default: bool) -> bool:
    value = config.get(key)
    return default if value is None else value.strip().lower() in ("1", "t", "true")


def wanted_crds(config: dict[str, str]) -> list[str]:
    switches = {"policy": flag(config, "enable-cilium-network-policy", True)
                or flag(config, "enable-cilium-clusterwide-network-policy", True),
                # the agent config keeps the endpoint CRD while policy needs it without endpoint slices
                "cep": not (flag(config, "disable-endpoint-crd", False)
                            and (flag(config, "enable-cilium-endpoint-slice", False)
                                 or config.get("enable-policy") == "never"))}
    return [file for file, key, default in CRDS
            if key is None or (switches[key] if key in switches else flag(config, key, default))]


def older(current: str | None, ours: str) -> bool:
    try:
        return current is None or tuple(map(int, current.split("."))) < tuple(map(int, ours.split(".")))
    except ValueError:
        return True


def register_crds(api: Api, config: dict[str, str], folder: Path, log) -> list[str]:
    """CreateUpdateCRD for each CRD the config asks for; their names."""
    schema = (folder / "schema-version").read_text().strip()
    names = []
    for file in wanted_crds(config):
        source = yaml.safe_load((folder / file).read_text())
        spec = source["spec"]
        names_ = {k: spec["names"][k] for k in ("kind", "plural", "shortNames", "singular", "categories")
                  if k in spec["names"]}  # constructV1CRD: listKind is left to the API server
        target = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                  "metadata": {"name": source["metadata"]["name"], "labels": {SCHEMA_LABEL: schema}},
                  "spec": {"group": "cilium.io", "names": names_, "scope": spec["scope"],
                           "versions": spec["versions"], **({"conversion": spec["conversion"]}
                                                            if "conversion" in spec else {})}}
        name, path = target["metadata"]["name"], "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        current = api("GET", f"{path}/{name}")
        if current is None:
            log(f"Creating CRD {name}")
            api("POST", f"{path}?fieldManager={CRD_MANAGER}", target)
        elif older((current["metadata"].get("labels") or {}).get(SCHEMA_LABEL), schema):
            log(f"Updating CRD {name} (schema {schema})")
            current["metadata"]["labels"] = target["metadata"]["labels"]
            current["spec"] = {**target["spec"], "preserveUnknownFields": False}
            api("PUT", f"{path}/{name}?fieldManager={CRD_MANAGER}", current)
        names.append(name)
    for name in names:  # waitForV1CRD
        for _attempt in range(120):
            conditions = {c["type"]: c for c in (api("GET", f"{path}/{name}").get("status") or {}).get("conditions")
                          or []}
            if conditions.get("NamesAccepted", {}).get("status") == "False":
                raise RuntimeError(f"CRD {name}: {conditions['NamesAccepted'].get('reason')}")
            if conditions.get("Established", {}).get("status") == "True":
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"CRD {name} not established after 60 s")
    return names


def set_condition(conditions: list, kind: str, status: str, reason: str, message: str, generation) -> bool:
    """meta.SetStatusCondition after the operator's "already so?" check; True when it changed something."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    wanted = {"type": kind, "status": status, "observedGeneration": generation, "reason": reason, "message": message}
    for item in conditions:
        if item["type"] == kind:
            if all(item.get(k) == v for k, v in wanted.items()):
                return False
            item.update(wanted, lastTransitionTime=now if item.get("status") != status else item["lastTransitionTime"])
            return True
    conditions.append({**wanted, "lastTransitionTime": now})
    return True


def matches(selector: dict | None, labels: dict) -> bool:
    """A label selector (no selector: every Service)."""
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if not {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}[operator]:
            return False
    return True


class Range:
    def __init__(self, pool: dict, first, last, reserve: bool):
        self.pool, self.first, self.last = pool, first, last
        self.name, self.used = pool["metadata"]["name"], set()
        self.spec_disabled, self.conflicting = bool(pool["spec"].get("disabled")), False
        if reserve and int(last) - int(first) > 1:  # allowFirstLastIPs: No, on a CIDR of more than two addresses
            self.used |= {first, last}

    def __contains__(self, ip) -> bool:
        return ip.version == self.first.version and self.first <= ip <= self.last

    def text(self) -> str:
        return f"{self.first} - {self.last}"

    def selects(self, labels: dict) -> bool:
        return matches(self.pool["spec"].get("serviceSelector"), labels)

    def free(self):
        return next((ip for ip in map(type(self.first), range(int(self.first), int(self.last) + 1))
                     if ip not in self.used), None)


def pool_ranges(pool: dict) -> list[Range]:
    reserve, ranges = pool["spec"].get("allowFirstLastIPs") == "No", []
    for block in pool["spec"].get("blocks") or []:
        if block.get("cidr"):
            net = ipaddress.ip_network(block["cidr"], strict=False)
            ranges.append(Range(pool, net.network_address, net.broadcast_address, reserve))
        else:
            start = ipaddress.ip_address(block["start"])
            ranges.append(Range(pool, start, ipaddress.ip_address(block.get("stop") or block["start"]), False))
    return ranges


def overlap(ours: list[Range], theirs: list[Range]):
    return next(((a, b) for a in ours for b in theirs if a is not b and a.first.version == b.first.version
                 and a.first <= b.last and b.first <= a.last), None)


def service_path(service: dict) -> str:
    return "/api/v1/namespaces/{namespace}/services/{name}".format(**service["metadata"])


class LBIPAM:
    def __init__(self, api: Api, config: dict[str, str], log):
        self.api, self.log = api, log
        self.enabled = flag(config, "enable-lb-ipam", True)
        self.default = config.get("default-lb-service-ipam", "lbipam") == "lbipam"
        self.classes = ({"io.cilium/l2-announcer"} if flag(config, "enable-l2-announcements", False) else set()) | (
            {"io.cilium/bgp-control-plane"} if flag(config, "enable-bgp-control-plane", False) else set())
        self.families = {4: flag(config, "enable-ipv4", True), 6: flag(config, "enable-ipv6", False)}

    def responsible(self, service: dict) -> bool:
        spec = service["spec"]
        if spec.get("type") != "LoadBalancer":
            return False
        return self.default if spec.get("loadBalancerClass") is None else spec["loadBalancerClass"] in self.classes

    def requested_families(self, spec: dict) -> set[int]:
        """serviceIPFamilyRequest."""
        families = [4 if f == "IPv4" else 6 for f in spec.get("ipFamilies") or []]
        enabled = {f for f, on in self.families.items() if on}
        policy = spec.get("ipFamilyPolicy")
        if policy == "RequireDualStack":
            return enabled
        if policy == "PreferDualStack":
            return set(families) & enabled if families else enabled
        return {families[0]} if families else ({4} if 4 in enabled else enabled & {6})

    def sync(self) -> None:
        if not self.enabled:
            return
        pools = sorted(self.api("GET", POOLS)["items"],
                       key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))
        ranges, messages = [], {}
        for pool in pools:
            try:
                own = pool_ranges(pool)
            except ValueError as exc:
                self.log(f"pool {pool['metadata']['name']}: {exc}")
                continue
            # the newer of two overlapping pools (or a pool overlapping itself) hands out nothing
            found = overlap(own, own) or overlap(own, [r for r in ranges if not r.conflicting])
            if found:
                for item in own:
                    item.conflicting = True
                messages[pool["metadata"]["name"]] = (f"Pool conflicts since range '{found[0].text()}' overlaps range "
                                                      f"'{found[1].text()}' from IP Pool '{found[1].name}'")
            ranges += own
        by_name = sorted(ranges, key=lambda r: r.name)
        services = sorted(self.api("GET", "/api/v1/services")["items"],
                          key=lambda s: (s["metadata"]["creationTimestamp"], s["metadata"]["namespace"],
                                         s["metadata"]["name"]))
        mine = [s for s in services if self.responsible(s)]
        plans = [self.keep(service, ranges) for service in mine]  # first what every Service holds, then the rest
        for service, plan in zip(mine, plans, strict=True):
            self.satisfy(service, plan, by_name)
        for service in services:
            if not self.responsible(service) and any(c["type"] == SATISFIED
                                                     for c in service.get("status", {}).get("conditions") or []):
                status = json.loads(json.dumps(service["status"]))  # no longer ours: clean up for another controller
                status.get("loadBalancer", {}).pop("ingress", None)
                status["conditions"] = [c for c in status["conditions"] if c["type"] != SATISFIED]
                self.patch(service_path(service) + "/status", status)
        for pool in pools:
            self.pool_status(pool, [r for r in ranges if r.pool is pool], messages.get(pool["metadata"]["name"]))

    def keep(self, service: dict, ranges: list[Range]) -> dict:
        """stripOrImportIngresses: the ingress IPs the Service may keep, claimed in their ranges."""
        annotations = service["metadata"].get("annotations") or {}
        listed = next((annotations[key] for key in REQUESTED_IPS if annotations.get(key)), "")
        requested = []
        for item in [service["spec"].get("loadBalancerIP") or "", *listed.split(",")]:
            try:
                ip = ipaddress.ip_address(item.strip())
            except ValueError:
                continue
            requested += [ip] if ip not in requested else []
        meta = service["metadata"]
        labels = {**(meta.get("labels") or {}), "io.kubernetes.service.name": meta["name"],
                  "io.kubernetes.service.namespace": meta["namespace"]}
        plan = {"requested": requested, "labels": labels, "families": self.requested_families(service["spec"]),
                "ingress": [], "ips": []}
        for ingress in (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []:
            try:
                ip = ipaddress.ip_address(ingress.get("ip") or "")
            except ValueError:
                continue
            home = next((r for r in ranges if ip in r and r.selects(labels)), None)
            if (requested and ip not in requested) or ip.version not in plan["families"] or home is None or \
                    ip in home.used or ip in plan["ips"]:
                continue
            home.used.add(ip)
            plan["ingress"].append(ingress)
            plan["ips"].append(ip)
        return plan

    def satisfy(self, service: dict, plan: dict, ranges: list[Range]) -> None:
        failure = None
        usable = [r for r in ranges if not r.spec_disabled and not r.conflicting]
        for ip in [ip for ip in plan["requested"] if ip not in plan["ips"]]:
            covering = [r for r in usable if ip in r]
            home = next((r for r in covering if r.selects(plan["labels"])), None)
            if home is None:
                failure = ("pool_selector_mismatch", f"The pool with the CIDR containing '{ip}', doesn't select this "
                           "service") if covering else ("no_pool", f"No pool exists with a CIDR containing '{ip}'")
            elif ip in home.used:
                failure = ("already_allocated", f"The IP '{ip}' is already allocated to another service")
            else:
                home.used.add(ip)
                plan["ips"].append(ip)
        for family in [] if plan["requested"] else sorted(plan["families"] - {ip.version for ip in plan["ips"]}):
            matching = [r for r in usable if r.first.version == family and r.selects(plan["labels"])]
            ip, home = next(((ip, r) for r in matching if (ip := r.free()) is not None), (None, None))
            if home is None:
                failure = ("out_of_ips", "All enabled CiliumLoadBalancerIPPools that match this service ran out of "
                           "allocatable IPs") if matching else (
                    "no_pool", "There are no enabled CiliumLoadBalancerIPPools that match this service")
                continue
            home.used.add(ip)
            plan["ips"].append(ip)
        status = json.loads(json.dumps(service.get("status") or {}))
        ingress = plan["ingress"] + [{"ip": str(ip)} for ip in plan["ips"][len(plan["ingress"]):]]
        status.setdefault("loadBalancer", {})
        if ingress:
            status["loadBalancer"]["ingress"] = ingress
        else:
            status["loadBalancer"].pop("ingress", None)
        conditions = status.setdefault("conditions", [])
        held = set(plan["ips"])
        satisfied = all(ip in held for ip in plan["requested"]) if plan["requested"] else \
            plan["families"] <= {ip.version for ip in held}
        generation = service["metadata"].get("generation", 0)
        if satisfied:
            set_condition(conditions, SATISFIED, "True", "satisfied", "", generation)
        elif failure:
            set_condition(conditions, SATISFIED, "False", *failure, generation)
        if not conditions:  # the API server leaves an empty list out
            del status["conditions"]
        if status != (service.get("status") or {}):
            for ip in plan["ips"][len(plan["ingress"]):]:
                self.log(f"Assigning Ingress IP {ip} to {service_path(service)}")
            self.patch(service_path(service) + "/status", status)

    def pool_status(self, pool: dict, ranges: list[Range], conflict: str | None) -> None:
        status = json.loads(json.dumps(pool.get("status") or {}))
        conditions, generation = status.setdefault("conditions", []), pool["metadata"].get("generation", 0)
        set_condition(conditions, CONFLICT, *(("True", "cidr_overlap", conflict) if conflict
                                              else ("False", "resolved", "")), generation)
        total = sum(int(r.last) - int(r.first) + 1 for r in ranges)
        used = sum(len(r.used) for r in ranges)
        for kind, count in (("IPsTotal", total), ("IPsAvailable", total - used), ("IPsUsed", used)):
            set_condition(conditions, "cilium.io/" + kind, "Unknown", "noreason", str(count), generation)
        if status != (pool.get("status") or {}):
            self.patch(f"{POOLS}/{pool['metadata']['name']}/status", status)

    def patch(self, path: str, status: dict) -> None:
        self.api("PATCH", f"{path}?fieldManager={LB_IPAM_MANAGER}", [{"op": "add", "path": "/status", "value": status}],
                 content_type="application/json-patch+json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cilium-operator (turnkey lab stand-in)")
    parser.add_argument("--config-dir", required=True)
    parser.add_argument("--operator-api-serve-addr", required=True)
    parser.add_argument("--crds", required=True, help="tools/build cilium-crds' folder")
    args, _rest = parser.parse_known_args(argv)  # --debug and the like: nothing to do here

    def log(message: str) -> None:
        print(time.strftime("%Y-%m-%dT%H:%M:%S"), message, flush=True)

    ready = threading.Event()

    class Probe(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            code = 200 if self.path == "/healthz" and ready.is_set() else 503
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"ok\n" if code == 200 else b"not ready\n")

        def log_message(self, *_args):
            pass

    host, _sep, port = args.operator_api_serve_addr.rpartition(":")
    threading.Thread(target=ThreadingHTTPServer((host, int(port)), Probe).serve_forever, daemon=True).start()
    config_dir = Path(args.config_dir)
    while not config_dir.is_dir():  # the kubelet has not mounted the ConfigMap yet
        time.sleep(1)
    config = {p.name: p.read_text() for p in config_dir.iterdir() if p.is_file()}
    api = Api(Path(os.environ["KUBECONFIG"]))
    names = register_crds(api, config, Path(args.crds), log)
    log(f"{len(names)} CRDs installed and up-to-date: {', '.join(names)}")
    ipam = LBIPAM(api, config, log)
    ready.set()
    while True:
        try:
            ipam.sync()
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            log(f"LB IPAM: {exc}")
        time.sleep(1)
