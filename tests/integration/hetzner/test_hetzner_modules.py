"""The Hetzner side of a hybrid cluster through REAL ansible-playbook runs against the lab's Hetzner twin.

Covers turnkey.cluster.hcloud_talos_snapshot and the hetzner.hcloud modules the collection relies on
(network, subnetwork, firewall, placement_group, server, server_network): each as a triplet (check ->
changed, apply -> changed, rerun -> unchanged), plus the snapshot reused, a failed build leaving nothing
behind, stale temporary servers removed, a 429 storm ridden through, and the twin's contract (no request
refused as invalid). Credentials reach ansible through the environment only, never argv.

One class of ordered steps on one lab (net 127.85): incremental (a failed step fails the rest), kept on
one `pytest -n` worker by --dist loadscope. The storm's wall time is measured in benchmarks/, not here.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType

from tests.integration.hetzner.nodes_lab import NodesLab, hetzner_lab

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]

NET = "127.85"
SCHEMATIC = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
VERSION = "v1.13.9"
OTHER_VERSION = "v1.11.6"  # the failed-build case (both are versions the Image Factory twin knows)
FACTORY = f"https://{NET}.0.6:8443"
SNAPSHOT_SELECTOR = f"os=talos,talos-schematic={SCHEMATIC[:63]},talos-version={VERSION},managed-by=turnkey.cluster"
BUILDERS = "turnkey-temporary=talos-snapshot-builder"
# The lab's write step: it runs while the server is in rescue, with its address and root password, and
# downloads the image from the Image Factory twin. The twin server has no disk, so it is written nowhere.
WRITE = ["sh", "-c", 'test -n "$RESCUE_IPV4" && test -n "$SSHPASS" && test -n "$HCLOUD_SERVER_ID" '
         '&& case "$TALOS_IMAGE_URL" in */hcloud-amd64.raw.xz) ;; *) exit 3 ;; esac '
         '&& curl -fsS --cacert "$REQUESTS_CA_BUNDLE" -o /dev/null "$TALOS_IMAGE_URL"']
ANYWHERE = ["0.0.0.0/0", "::/0"]
FIREWALL_RULES = [
    {"description": "Talos API (talosctl, machine config)", "direction": "in", "protocol": "tcp",
     "port": "50000", "source_ips": ANYWHERE},
    {"description": "Kubernetes API", "direction": "in", "protocol": "tcp", "port": "6443",
     "source_ips": ANYWHERE},
    {"description": "KubeSpan WireGuard", "direction": "in", "protocol": "udp", "port": "51820",
     "source_ips": ANYWHERE},
]


class Lab(NodesLab):
    """The nodes helper's lab, on this test's own net, plus what the snapshot steps look at."""

    def __init__(self, handle, tmp_path):
        super().__init__(handle, tmp_path, net=NET)
        self.image_id = None  # the snapshot built by the first step, reused by the later ones

    def triplet(self, tasks, after_check=None, diff=False):
        _checked, applied, again = super().triplet(tasks, after_check, diff=diff)
        return applied, again

    def builders(self):
        return self.client.servers.get_all(label_selector=BUILDERS)

    def snapshots(self):
        return self.client.images.get_all(type=["snapshot"], label_selector=SNAPSHOT_SELECTOR)


def snapshot_task(name="Talos snapshot", **extra):
    options = {"schematic_id": SCHEMATIC, "talos_version": VERSION, "write_command": WRITE, "timeout": 60}
    options.update(extra)
    options["image_url"] = f"{FACTORY}/image/{SCHEMATIC}/{options['talos_version']}/hcloud-amd64.raw.xz"
    return {"name": name, "turnkey.cluster.hcloud_talos_snapshot": options, "register": "snapshot"}


BASE_TASKS = [
    snapshot_task(),
    {"name": "Network", "hetzner.hcloud.network": {"name": "turnkey", "ip_range": "127.3.0.0/16",
                                                   "labels": {"cluster": "lab"}, "state": "present"}},
    {"name": "Firewall", "hetzner.hcloud.firewall": {"name": "talos-nodes", "labels": {"cluster": "lab"},
                                                     "rules": FIREWALL_RULES, "state": "present"}},
    {"name": "Placement group", "hetzner.hcloud.placement_group": {"name": "hcloud-workers", "type": "spread",
                                                                   "labels": {"cluster": "lab"},
                                                                   "state": "present"}},
]
SUBNET_TASK = {"name": "Subnetwork", "hetzner.hcloud.subnetwork": {
    "network": "turnkey", "type": "cloud", "ip_range": "127.3.0.0/24", "network_zone": "eu-central",
    "state": "present"}}


def server_task(image_id):
    return {"name": "Server", "hetzner.hcloud.server": {
        "name": "hcloud-worker1", "server_type": "cx22", "image": str(image_id), "location": "fsn1",
        "labels": {"cluster": "lab", "role": "worker"}, "firewalls": ["talos-nodes"],
        "placement_group": "hcloud-workers", "state": "present"}}


SERVER_NETWORK_TASK = {"name": "Server network", "hetzner.hcloud.server_network": {
    "network": "turnkey", "server": "hcloud-worker1", "ip": "127.3.0.10", "state": "present"}}


# -- the steps ---------------------------------------------------------------------------------------
def base_triplet(lab: Lab) -> int:
    def nothing_made(checked):
        assert checked["Talos snapshot"]["would_build"] is True and checked["Talos snapshot"]["image_id"] is None
        writes = [r for r in lab.lab("GET", "/_lab/requests").json() if r["method"] != "GET"]
        assert writes == [], writes  # check mode only read
        assert lab.client.servers.get_all() == [] and lab.snapshots() == []

    applied, again = lab.triplet(BASE_TASKS, after_check=nothing_made)
    built = applied["Talos snapshot"]
    assert built["built"] is True and built["image"]["status"] == "available"
    assert built["labels"] == {"os": "talos", "talos-schematic": SCHEMATIC[:63], "talos-version": VERSION,
                               "managed-by": "turnkey.cluster"}
    assert built["builder"].startswith("talos-builder-37656798-v1-13-9-")
    assert again["Talos snapshot"]["image_id"] == built["image_id"] and again["Talos snapshot"]["built"] is False
    image = lab.client.images.get_by_id(built["image_id"])
    assert image.labels == built["labels"] and image.type == "snapshot"
    assert lab.builders() == []  # the temporary server is gone
    firewall = lab.client.firewalls.get_by_name("talos-nodes")
    rules = sorted((r.direction, r.protocol, r.port, tuple(r.source_ips)) for r in firewall.rules)
    assert rules == [("in", "tcp", "50000", tuple(ANYWHERE)), ("in", "tcp", "6443", tuple(ANYWHERE)),
                     ("in", "udp", "51820", tuple(ANYWHERE))]  # inbound: all else is closed
    return built["image_id"]


def snapshot_reused(lab: Lab, image_id: int):
    servers_before = {s.id for s in lab.client.servers.get_all()}
    lab.lab("DELETE", "/_lab/requests")
    result = lab.play([snapshot_task()])["Talos snapshot"]
    assert (result["changed"], result["built"], result["image_id"]) == (False, False, image_id)
    assert [i.id for i in lab.snapshots()] == [image_id]
    assert {s.id for s in lab.client.servers.get_all()} == servers_before
    posts = [r for r in lab.lab("GET", "/_lab/requests").json() if r["method"] != "GET"]
    assert posts == [], posts  # read only


def subnetwork_triplet(lab: Lab):
    lab.triplet([SUBNET_TASK])
    network = lab.client.networks.get_by_name("turnkey")
    assert [(s.type, s.ip_range) for s in network.subnets] == [("cloud", "127.3.0.0/24")]


def server_module_check_mode_on_the_twin(lab: Lab, image_id: int):
    """hetzner.hcloud.server plans the creation (it looks the image up with include_deprecated=True, which
    the hcloud library sends as 'True' and the API parses like Go's ParseBool) and sends no write."""
    assert lab.play([server_task(image_id)], "--check")["Server"]["changed"] is True
    assert lab.lab("GET", "/_lab/rejects").json() == []


def server_from_snapshot(lab: Lab, image_id: int):
    """The server made with the library (the module can't create it on the twin, see above). KNOWN GAP
    (hetzner.hcloud 5.4.0): on an existing server the module reads `server.datacenter.location`, a field the
    Servers API no longer has (removed 2026-07-01, Hetzner changelog "removing datacenters"; the twin follows
    the current document), and crashes. server_network, which attaches the fixed IP, works (triplet)."""
    made = lab.client.servers.create(
        name="hcloud-worker1", server_type=ServerType(name="cx22"), image=Image(id=image_id),
        location=Location(name="fsn1"), labels={"cluster": "lab", "role": "worker"},
        firewalls=[lab.client.firewalls.get_by_name("talos-nodes")],
        placement_group=lab.client.placement_groups.get_by_name("hcloud-workers"))
    made.action.wait_until_finished()
    for action in made.next_actions:
        action.wait_until_finished()
    crashed = lab.play([server_task(image_id)], "--check", expect_failure=True)["Server"]
    assert "'NoneType' object has no attribute 'location'" in crashed["msg"], crashed["msg"]
    lab.triplet([SERVER_NETWORK_TASK])
    server = lab.client.servers.get_by_name("hcloud-worker1")
    network = lab.client.networks.get_by_name("turnkey")
    assert [(p.network.id, p.ip) for p in server.private_net] == [(network.id, "127.3.0.10")]
    assert server.image.id == image_id and server.labels == {"cluster": "lab", "role": "worker"}
    assert [f.firewall.id for f in server.public_net.firewalls] == [lab.client.firewalls.get_by_name(
        "talos-nodes").id]
    assert server.placement_group.name == "hcloud-workers"
    nodes = json.loads((lab.handle.root / "components/hetzner/talos-nodes.json").read_text())["nodes"]
    assert [(n["name"], n["private_ips"][0]["ip"]) for n in nodes] == [("hcloud-worker1", "127.3.0.10")]


def failed_build_leaves_nothing(lab: Lab):
    lab.lab("POST", "/_lab/faults", {"kind": "action_error", "match": "create_image", "code": "image_failed",
                                     "message": "disk read error (lab)"})
    other = snapshot_task(talos_version=OTHER_VERSION)
    failed = lab.play([other], expect_failure=True)["Talos snapshot"]
    assert failed["hcloud_error"]["code"] == "image_failed", failed
    assert failed["hcloud_error"]["message"] == "disk read error (lab)"
    assert failed["hcloud_error"]["details"]["action"]["command"] == "create_image"
    assert lab.builders() == []  # the temporary server was deleted
    assert lab.client.images.get_all(type=["snapshot"], label_selector=f"talos-version={OTHER_VERSION}") == []
    # A failing write step: the same promise.
    failed = lab.play([snapshot_task(talos_version=OTHER_VERSION, write_command=["sh", "-c", "exit 7"])],
                      expect_failure=True)["Talos snapshot"]
    assert failed["hcloud_error"]["code"] == "write_failed" and failed["hcloud_error"]["details"]["rc"] == 7
    assert lab.builders() == []
    converged = lab.play([other])["Talos snapshot"]
    assert converged["built"] is True and converged["changed"] is True
    assert lab.builders() == [] and lab.lab("GET", "/_lab/faults").json() == []


def stale_builder_removed(lab: Lab):
    """A temporary server left by a killed run is deleted by the next run (check mode only reports it)."""
    leftover = lab.client.servers.create(
        name="talos-builder-killed", server_type=ServerType(name="cx22"), image=Image(name="debian-12"),
        labels={"turnkey-temporary": "talos-snapshot-builder", "managed-by": "turnkey.cluster",
                "talos-schematic": SCHEMATIC[:63], "talos-version": VERSION})
    leftover.action.wait_until_finished()
    checked = lab.play([snapshot_task()], "--check")["Talos snapshot"]
    assert checked["changed"] is True and checked["removed_servers"] == ["talos-builder-killed"]
    assert [s.name for s in lab.builders()] == ["talos-builder-killed"]
    removed = lab.play([snapshot_task()])["Talos snapshot"]
    assert removed["changed"] is True and removed["built"] is False
    assert lab.builders() == []


def storm_ridden_through(lab: Lab, image_id: int):
    lab.lab("POST", "/_lab/faults", {"kind": "rate_limit_storm", "count": 4})
    result = lab.play([snapshot_task()])["Talos snapshot"]
    assert result["image_id"] == image_id and result["changed"] is False
    # Paced at the refill interval (1 s at 3600/h), 1.25x longer per 429 in a row: about 5.8 s for 4.
    assert result["hcloud_rate_limit"]["throttled"] == 4 and result["hcloud_rate_limit"]["waited"] >= 4
    # hetzner.hcloud rides a short storm with the library's own retries (5, exponential backoff).
    lab.lab("POST", "/_lab/faults", {"kind": "rate_limit_storm", "count": 2})
    started = time.monotonic()
    assert lab.play([BASE_TASKS[1]])["Network"]["changed"] is False
    assert time.monotonic() - started >= 1.0
    assert lab.lab("GET", "/_lab/faults").json() == []


def contract(lab: Lab):
    rejects = lab.lab("GET", "/_lab/rejects").json()
    assert rejects == [], rejects
    factory = requests.get(FACTORY + "/_lab/requests", verify=lab.ca, timeout=10).json()
    fetched = {r["path"] for r in factory if r["method"] == "GET" and r["status"] == 200}
    assert {f"/image/{SCHEMATIC}/{v}/hcloud-amd64.raw.xz" for v in (VERSION, OTHER_VERSION)} <= fetched, factory
    assert requests.get(FACTORY + "/_lab/rejects", verify=lab.ca, timeout=10).json() == []
    for text in lab.outputs:
        assert lab.token not in text


@pytest.fixture(scope="class")
def lab(make_class_lab, tmp_path_factory):
    with hetzner_lab(make_class_lab, NET) as handle:
        yield Lab(handle, tmp_path_factory.mktemp("modules"))


@pytest.mark.incremental
class TestHetznerModules:
    def test_base_triplet(self, lab):
        lab.image_id = base_triplet(lab)  # the snapshot the later steps build on

    def test_snapshot_reused(self, lab):
        snapshot_reused(lab, lab.image_id)

    def test_subnetwork_triplet(self, lab):
        subnetwork_triplet(lab)

    def test_server_module_check_mode_on_the_twin(self, lab):
        server_module_check_mode_on_the_twin(lab, lab.image_id)

    def test_server_from_snapshot(self, lab):
        server_from_snapshot(lab, lab.image_id)

    def test_failed_build_leaves_nothing(self, lab):
        failed_build_leaves_nothing(lab)

    def test_stale_builder_removed(self, lab):
        stale_builder_removed(lab)

    def test_storm_ridden_through(self, lab):
        storm_ridden_through(lab, lab.image_id)

    def test_contract(self, lab):
        contract(lab)
