"""The Hetzner nodes of a hybrid cluster through REAL ansible-playbook runs against the lab's Hetzner twin.

Modules (triplets: check -> changed, apply -> changed, rerun -> unchanged): hcloud_network, hcloud_firewall,
hcloud_placement_group, hcloud_server (create, in-place labels/firewalls, change_type only with
allow_restart, destructive changes refused, power states, absent, Hetzner's errors, a server stuck in
`initializing`). Then the role hetzner_nodes on the lab inventory (two Hetzner workers): check mode sends no
write, the nodes come up, a rerun is changed=0, the snapshot is built once and reused, a failed snapshot
build leaves no temporary server, a 429 storm is ridden through, teardown. Finally the twin's contract:
no request refused as invalid, and the token never printed.

One class of ordered steps on one lab (net 127.87): incremental (a failed step fails the rest), kept on
one `pytest -n` worker by --dist loadscope.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType

from tests.integration.hetzner.nodes_lab import NodesLab, hetzner_lab, throttled, waited

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]

NET = "127.87"
USER_DATA = "machine:\n  token: user-data-secret-4711\n"
ANYWHERE = ["0.0.0.0/0", "::/0"]


def network_task(**extra):
    options = {"name": "modnet", "ip_range": "10.40.0.0/16", "subnets": [{"ip_range": "10.40.1.0/24"}],
               "labels": {"test": "modules"}}
    options.update(extra)
    return {"name": "Network", "turnkey.cluster.hcloud_network": options}


def firewall_task(**extra):
    options = {"name": "modfw", "labels": {"test": "modules"}, "rules": [
        {"description": "Talos API", "protocol": "tcp", "port": "50000", "source_ips": ["198.51.100.0/24"]},
        {"description": "KubeSpan", "protocol": "udp", "port": "51820", "source_ips": ANYWHERE}],
        "apply_to": [{"label_selector": "test=modules,role=edge"}]}
    options.update(extra)
    return {"name": "Firewall", "turnkey.cluster.hcloud_firewall": options}


def direct_firewall_task():
    return {"name": "Direct firewall", "turnkey.cluster.hcloud_firewall": {
        "name": "modfw-direct", "rules": [{"protocol": "icmp", "source_ips": ANYWHERE}]}}


def group_task(**extra):
    return {"name": "Placement group", "turnkey.cluster.hcloud_placement_group": {
        "name": "modgroup", "labels": {"test": "modules"}, **extra}}


def server_task(task="Server", **extra):
    options = {"name": "mod-server1", "image": "debian-12", "server_type": "cx22", "location": "fsn1",
               "placement_group": "modgroup", "network": "modnet", "ip": "10.40.1.5",
               "labels": {"test": "modules", "role": "edge"}, "firewalls": ["modfw-direct"],
               "user_data": USER_DATA, "state": "started", "timeout": 60}
    options.update(extra)
    return {"name": task, "turnkey.cluster.hcloud_server": options}


# -- modules ------------------------------------------------------------------------------------------
def resource_triplets(lab: NodesLab):
    def nothing_written(checked):
        assert lab.writes() == []  # check mode only reads, also with nothing there yet
        diff = checked["Network"]["diff"]
        assert diff["before"] is None and diff["after"]["subnets"][0]["ip_range"] == "10.40.1.0/24"

    lab.clear_requests()
    lab.triplet([network_task(), firewall_task(), direct_firewall_task(), group_task()], after_check=nothing_written)
    network = lab.client.networks.get_by_name("modnet")
    assert [(s.type, s.ip_range, s.network_zone) for s in network.subnets] == [("cloud", "10.40.1.0/24",
                                                                                "eu-central")]
    firewall = lab.client.firewalls.get_by_name("modfw")
    assert sorted((r.protocol, r.port) for r in firewall.rules) == [("tcp", "50000"), ("udp", "51820")]
    assert [(a.type, a.label_selector.selector) for a in firewall.applied_to] == [
        ("label_selector", "test=modules,role=edge")]
    # In place: a second subnet and new labels; other rules; checked with a diff first.
    changed = [network_task(subnets=[{"ip_range": "10.40.1.0/24"}, {"ip_range": "10.40.2.0/24"}],
                            labels={"test": "modules", "v": "2"}),
               firewall_task(rules=[{"description": "Talos API", "protocol": "tcp", "port": "50000",
                                     "source_ips": ANYWHERE}])]
    checked, _applied, _again = lab.triplet(changed)
    assert checked["Network"]["changes"] == ["labels", "add_subnet 10.40.2.0/24"]
    assert checked["Firewall"]["diff"]["after"]["rules"][0]["source_ips"] == sorted(ANYWHERE)
    subnets = lab.client.networks.get_by_name("modnet").subnets
    assert [s.ip_range for s in subnets] == ["10.40.1.0/24", "10.40.2.0/24"]
    assert [r.port for r in lab.client.firewalls.get_by_name("modfw").rules] == ["50000"]


def server_triplet(lab: NodesLab):
    def nothing_written(checked):
        assert lab.writes() == []
        # check mode shows the plan the apply follows
        assert checked["Server"]["changes"] == ["create", "attach_network", "power_on"]
        assert checked["Server"]["diff"]["before"] is None

    lab.clear_requests()
    _checked, applied, again = lab.triplet([server_task()], after_check=nothing_written)
    made = applied["Server"]
    assert made["changes"] == ["create", "attach_network", "power_on"], made["changes"]
    server = lab.client.servers.get_by_name("mod-server1")
    assert server.status == "running" and server.server_type.name == "cx22"
    assert [p.ip for p in server.private_net] == ["10.40.1.5"]
    assert server.placement_group.name == "modgroup"
    walls = {lab.client.firewalls.get_by_id(f.firewall.id).name for f in server.public_net.firewalls}
    assert walls == {"modfw-direct", "modfw"}  # directly, and through the label selector
    assert made["server"]["private_ips"][0]["ip"] == "10.40.1.5" and "user-data-secret-4711" not in json.dumps(made)
    assert server.labels == {"test": "modules", "role": "edge", "managed-by": "turnkey.cluster"}  # owner label
    # The network was attached before the first boot: the server was created stopped.
    posts = [r["path"] for r in lab.requests_log() if r["method"] == "POST"]
    assert posts.index("/v1/servers") < posts.index(f"/v1/servers/{server.id}/actions/attach_to_network") \
        < posts.index(f"/v1/servers/{server.id}/actions/poweron")
    assert again["Server"]["changes"] == [] and again["Server"]["server"]["id"] == server.id


def server_in_place(lab: NodesLab):
    server_id = lab.client.servers.get_by_name("mod-server1").id
    # Labels and firewalls change in place.
    relabelled = server_task(labels={"test": "modules", "role": "edge", "v": "2"}, firewalls=[])
    checked, _applied, _again = lab.triplet([relabelled])
    assert checked["Server"]["changes"] == ["labels", "firewalls"]
    assert checked["Server"]["diff"]["after"]["labels"]["v"] == "2"
    server = lab.client.servers.get_by_name("mod-server1")
    assert server.id == server_id and server.labels["v"] == "2"
    assert {lab.client.firewalls.get_by_id(f.firewall.id).name for f in server.public_net.firewalls} == {"modfw"}
    # A server type change needs a power-off: refused, then done with allow_restart.
    refused = lab.play([server_task(server_type="cx32")], expect_failure=True)["Server"]
    assert refused["differences"] == ["server_type"] and "allow_restart" in refused["msg"]
    _checked, applied, _again = lab.triplet([server_task(server_type="cx32", allow_restart=True, firewalls=[],
                                                         labels={"test": "modules", "role": "edge", "v": "2"})])
    assert applied["Server"]["changes"] == ["power_off", "change_type", "power_on"], applied["Server"]["changes"]
    server = lab.client.servers.get_by_name("mod-server1")
    assert (server.id, server.server_type.name, server.status) == (server_id, "cx32", "running")
    # Image, location and private IP only by recreating: refused without allow_destructive.
    for extra, what in (({"image": "ubuntu-24.04"}, "image"), ({"location": "nbg1"}, "location"),
                        ({"ip": "10.40.1.6"}, "private IP")):
        refused = lab.play([server_task(server_type="cx32", **extra)], expect_failure=True)["Server"]
        assert refused["differences"][0].startswith(what) and "allow_destructive" in refused["msg"], refused
    assert lab.client.servers.get_by_name("mod-server1").id == server_id  # untouched
    # Power states.
    lab.triplet([server_task(server_type="cx32", state="stopped")])
    assert lab.client.servers.get_by_name("mod-server1").status == "off"
    lab.triplet([server_task(server_type="cx32", state="started")])
    # allow_destructive: recreated with the new address, everything else kept.
    _checked, applied, _again = lab.triplet([server_task(server_type="cx32", ip="10.40.1.6",
                                                         allow_destructive=True)])
    server = lab.client.servers.get_by_name("mod-server1")
    assert server.id != server_id and [p.ip for p in server.private_net] == ["10.40.1.6"]
    assert server.server_type.name == "cx32" and applied["Server"]["changes"][0] == "recreate"


def server_errors(lab: NodesLab):
    # Hetzner's error comes back structured.
    bad = server_task(task="Bad type", name="mod-server2", server_type="cx99", ip="10.40.1.7")
    failed = lab.play([bad], expect_failure=True)["Bad type"]
    assert failed["hcloud_error"]["code"] == "invalid_input", failed
    assert failed["hcloud_error"]["details"]["fields"][0]["name"] == "server_type"
    # A server that never leaves `initializing`: the action poll gives up at the timeout.
    lab.lab("POST", "/_lab/faults", {"kind": "stuck_initializing", "match": "mod-stuck"})
    failed = lab.play([server_task(task="Stuck", name="mod-stuck", ip="10.40.1.8", timeout=3)],
                      expect_failure=True)["Stuck"]
    assert failed["hcloud_error"]["code"] == "timeout"
    assert failed["hcloud_error"]["details"]["action"]["command"] == "create_server"


def server_ownership(lab: NodesLab):
    """A server with the configured name but without the owner labels is someone else's: an error for every
    state asked, and it is left exactly as it was."""
    made = lab.client.servers.create(name="mod-foreign", server_type=ServerType(name="cx22"),
                                     image=Image(name="debian-12"), location=Location(name="fsn1"),
                                     labels={"team": "web"})
    made.action.wait_until_finished()
    lab.clear_requests()
    for task in (server_task(task="Foreign", name="mod-foreign", ip="10.40.1.20"),
                 server_task(task="Foreign", name="mod-foreign", state="absent"),
                 server_task(task="Foreign", name="mod-foreign", location="nbg1", ip="10.40.1.20",
                             allow_destructive=True)):
        failed = lab.play([task], expect_failure=True)["Foreign"]
        assert failed["differences"] == ["owner_labels"], failed
        assert failed["msg"].startswith("A server named mod-foreign exists but is not managed here: its labels "
                                        "(team=web) lack managed-by=turnkey.cluster"), failed["msg"]
    assert lab.writes() == []
    server = lab.client.servers.get_by_name("mod-foreign")
    assert (server.id, server.labels, server.private_net) == (made.server.id, {"team": "web"}, [])
    lab.client.servers.delete(server).wait_until_finished()


def server_answer_lost(lab: NodesLab):
    """The create is done but its answer is a 504: the module reads the server again and carries on from what
    it finds, instead of sending the create again (the hcloud library would: a second server, or here a
    uniqueness error)."""
    lab.clear_requests()
    lab.lab("POST", "/_lab/faults", {"kind": "answer_lost", "match": "POST /servers"})
    result = lab.play([server_task(task="Lost", name="mod-lost", ip="10.40.1.9")])["Lost"]
    assert result["changes"] == ["create", "attach_network", "power_on"], result
    creates = [r["status"] for r in lab.requests_log() if (r["method"], r["path"]) == ("POST", "/v1/servers")]
    assert creates == [504], creates  # sent once
    server = lab.client.servers.get_by_name("mod-lost")
    assert server.status == "running" and [p.ip for p in server.private_net] == ["10.40.1.9"]
    assert lab.lab("GET", "/_lab/faults").json() == []


def absent_triplets(lab: NodesLab):
    servers = [server_task(task="Server %s" % n, name=n, state="absent")
               for n in ("mod-server1", "mod-stuck", "mod-lost")]
    lab.triplet(servers)
    assert lab.client.servers.get_all(label_selector="test=modules") == []
    lab.triplet([
        {"name": "Firewall", "turnkey.cluster.hcloud_firewall": {"name": "modfw", "state": "absent"}},
        {"name": "Direct firewall", "turnkey.cluster.hcloud_firewall": {"name": "modfw-direct", "state": "absent"}},
        {"name": "Placement group",
         "turnkey.cluster.hcloud_placement_group": {"name": "modgroup", "state": "absent"}},
        {"name": "Network", "turnkey.cluster.hcloud_network": {"name": "modnet", "state": "absent"}}])
    assert lab.client.networks.get_all() == [] and lab.client.firewalls.get_all() == []


# -- the role -----------------------------------------------------------------------------------------
NODES = {"hcloud-worker1": "127.3.0.10", "hcloud-worker2": "127.3.0.11"}


def snapshots(lab):
    return lab.client.images.get_all(type=["snapshot"], label_selector="os=talos,managed-by=turnkey.cluster")


def builders(lab):
    return lab.client.servers.get_all(label_selector="turnkey-temporary=talos-snapshot-builder")


def machine_config(lab: NodesLab, host: str):
    """Where the role finds the node's machine config: the state folder talos_config renders it to."""
    return lab.tmp / "state" / "talos" / f"{host}.yaml"


def node_record(lab: NodesLab, host: str):
    return lab.tmp / "state" / "hetzner" / f"{host}.json"


def role_check_mode(lab: NodesLab):
    # check mode on a cluster whose configs are not rendered yet (layer 00 not run): reads only, no error
    lab.clear_requests()
    stats, _results, _took = lab.role("--check", "--diff")
    assert stats["hcloud-worker1"]["changed"] >= 5 and stats["hcloud-worker2"]["changed"] == 1, stats
    assert lab.writes() == []
    assert lab.client.servers.get_all() == [] and snapshots(lab) == []


def role_refuses_a_server_without_its_config(lab: NodesLab):
    """A server without its config would boot into maintenance mode and wait for anyone's apply-config: the
    role stops before anything is touched."""
    lab.clear_requests()
    _stats, results, _took = lab.role(expect_failure=True)
    failed = {(name, host): outcome["msg"] for name, host, outcome in results if outcome.get("failed")}
    assert sorted(host for _name, host in failed) == sorted(NODES), failed
    assert all("is missing: a Hetzner server gets its Talos machine config as user data" in msg
               for msg in failed.values()), failed
    assert lab.writes() == []


def role_up(lab: NodesLab):
    # what talos_config renders before the Hetzner play (a stand-in: the twin takes any user data)
    for host in NODES:
        machine_config(lab, host).parent.mkdir(parents=True, exist_ok=True)
        machine_config(lab, host).write_text(f"machine:\n  type: worker\n  token: user-data-secret-4711-{host}\n")
    lab.clear_requests()
    stats, results, took = lab.role()
    # worker2: its server and its node record (the record folder is made once)
    assert stats["hcloud-worker1"]["changed"] >= 5 and stats["hcloud-worker2"]["changed"] == 2, stats
    servers = {s.name: s for s in lab.client.servers.get_all(label_selector="cluster=lab")}
    assert sorted(servers) == sorted(NODES)
    (image,) = snapshots(lab)
    network = lab.client.networks.get_by_name("lab")
    for name, ip in NODES.items():
        server = servers[name]
        assert server.status == "running" and server.image.id == image.id
        assert [(p.network.id, p.ip) for p in server.private_net] == [(network.id, ip)]
        assert server.labels == {"cluster": "lab", "managed-by": "turnkey.cluster", "role": "worker"}
        assert server.placement_group.name == "lab-talos"
        walls = {lab.client.firewalls.get_by_id(f.firewall.id).name for f in server.public_net.firewalls}
        assert walls == {"lab-talos"}  # workers: not the control-plane firewall
    rules = sorted((r.protocol, r.port, tuple(r.source_ips))
                   for r in lab.client.firewalls.get_by_name("lab-talos").rules)
    assert rules == [("tcp", "50000", ("127.0.0.0/8",)), ("udp", "51820", tuple(ANYWHERE))]
    # 6443 and 50001 follow admin_cidrs: nothing is open to the world but WireGuard
    cp_rules = sorted((r.protocol, r.port, tuple(r.source_ips))
                      for r in lab.client.firewalls.get_by_name("lab-talos-controlplane").rules)
    assert cp_rules == [("tcp", "50001", ("127.0.0.0/8",)), ("tcp", "6443", ("127.0.0.0/8",))]
    assert [s.ip_range for s in network.subnets] == ["127.3.0.0/24"]
    assert builders(lab) == []
    nodes = json.loads((lab.handle.root / "components/hetzner/talos-nodes.json").read_text())["nodes"]
    assert sorted((n["name"], n["private_ips"][0]["ip"]) for n in nodes) == sorted(NODES.items())
    # each server got its machine config as user data at creation: it boots configured, no maintenance mode
    for node in nodes:
        assert node["has_user_data"], node
        user_data = Path(node["user_data_file"])
        assert user_data.read_text() == machine_config(lab, node["name"]).read_text().rstrip("\n")
        assert user_data.stat().st_mode & 0o777 == 0o600
    # and where the Talos plays reach it, in a file (0600), not a fact of this run
    for host, ip in NODES.items():
        record = json.loads(node_record(lab, host).read_text())
        assert record["talos_address"] == ip and record["server_id"] == servers[host].id
        assert node_record(lab, host).stat().st_mode & 0o777 == 0o600
    print("role up: %.1f s, %d requests" % (took, len(lab.requests_log())))


def creates_of_images(lab):
    return [r for r in lab.requests_log() if r["method"] == "POST" and r["path"].endswith("/actions/create_image")]


def role_rerun(lab: NodesLab):
    image_ids = [i.id for i in snapshots(lab)]
    stats, _results, _took = lab.role()
    assert {host: s["changed"] for host, s in stats.items()} == {"hcloud-worker1": 0, "hcloud-worker2": 0}, stats
    assert [i.id for i in snapshots(lab)] == image_ids  # reused
    assert len(creates_of_images(lab)) == 1  # built once, by the first run


def talos_plays_read_the_recorded_address(lab: NodesLab):
    """The Talos play finds a Hetzner node's address in its node record, also in a run that does not include
    the Hetzner play (--tags talos_cluster, --limit): here a separate ansible-playbook run asks the filter the
    Talos plays use. With public_ipv4 the record holds the server's public address."""
    stats, _results, _took = lab.role("-e", "hetzner_nodes_talos_address=public_ipv4")
    assert {host: s["changed"] for host, s in stats.items()} == {"hcloud-worker1": 1, "hcloud-worker2": 1}, stats
    public = {s.name: s.public_net.ipv4.ip for s in lab.client.servers.get_all(label_selector="cluster=lab")}
    assert {host: json.loads(node_record(lab, host).read_text())["talos_address"] for host in NODES} == public
    _stats, results, _took = lab.role(playbook="talos_addresses.yml")
    (shown,) = [outcome["addresses"] for name, _host, outcome in results if "addresses" in outcome]
    assert {host: shown[host] for host in NODES} == public
    assert shown["cp1"] == "127.2.1.1"  # a Proxmox node: its node_ip
    # back to the lab's private addresses
    stats, _results, _took = lab.role()
    assert {host: s["changed"] for host, s in stats.items()} == {"hcloud-worker1": 1, "hcloud-worker2": 1}, stats
    assert {host: json.loads(node_record(lab, host).read_text())["talos_address"] for host in NODES} == NODES


def role_failed_snapshot_build(lab: NodesLab):
    """Another Talos version needs another snapshot; its build fails at create_image: no temporary server
    is left, no server is touched, and the next run builds it."""
    other = {"cluster_versions": {"talos": "v1.11.6", "kubernetes": "1.34.1", "cilium": "1.18.0",
                                  "flux": "v2.7.0", "charts": {}}}
    servers_before = {s.id for s in lab.client.servers.get_all(label_selector="cluster=lab")}
    lab.lab("POST", "/_lab/faults", {"kind": "action_error", "match": "create_image", "code": "image_failed",
                                     "message": "disk read error (lab)"})
    _stats, results, _took = lab.role("-e", json.dumps(other), expect_failure=True)
    failed = [outcome for name, _host, outcome in results if outcome.get("failed")]
    assert [f["hcloud_error"]["code"] for f in failed] == ["image_failed"], failed
    assert builders(lab) == []
    assert lab.client.images.get_all(type=["snapshot"], label_selector="talos-version=v1.11.6") == []
    assert {s.id for s in lab.client.servers.get_all(label_selector="cluster=lab")} == servers_before
    assert lab.lab("GET", "/_lab/faults").json() == []


def role_storm(lab: NodesLab, storm=10):
    """A storm of 429s on the rerun: the modules slow down (one refill interval, growing) and finish."""
    lab.lab("POST", "/_lab/faults", {"kind": "rate_limit_storm", "count": storm})
    stats, results, stormy = lab.role()
    assert {host: s["changed"] for host, s in stats.items()} == {"hcloud-worker1": 0, "hcloud-worker2": 0}
    assert throttled(results) == storm, throttled(results)
    # it waited instead of hammering the API (the modules' own account: wall time on a loaded machine is not)
    assert waited(results) >= storm * 0.5, waited(results)
    statuses = [r["status"] for r in lab.requests_log()]
    assert statuses.count(429) >= storm
    print("storm of %d: %.1f s, %.1f s of it waiting" % (storm, stormy, waited(results)))


def role_teardown(lab: NodesLab):
    image_ids = [i.id for i in snapshots(lab)]
    lab.role(playbook="hetzner_nodes_teardown.yml")
    assert lab.client.servers.get_all() == [] and lab.client.placement_groups.get_all() == []
    assert not any(node_record(lab, host).exists() for host in NODES)  # no address of a deleted server
    assert lab.client.networks.get_by_name("lab") is not None  # kept unless asked
    assert {f.name for f in lab.client.firewalls.get_all()} == {"lab-talos", "lab-talos-controlplane"}
    assert [i.id for i in snapshots(lab)] == image_ids
    stats, _results, _took = lab.role(playbook="hetzner_nodes_teardown.yml")
    assert {host: s["changed"] for host, s in stats.items()} == {"hcloud-worker1": 0, "hcloud-worker2": 0}
    lab.role("-e", json.dumps({"hetzner_nodes_teardown_network": True, "hetzner_nodes_teardown_firewalls": True,
                               "hetzner_nodes_teardown_snapshot": True}), playbook="hetzner_nodes_teardown.yml")
    assert lab.client.networks.get_all() == [] and lab.client.firewalls.get_all() == []
    assert snapshots(lab) == []
    # And up again from nothing: the snapshot is built again, the nodes come back.
    stats, _results, _took = lab.role()
    assert len(snapshots(lab)) == 1 and len(lab.client.servers.get_all(label_selector="cluster=lab")) == 2


def contract(lab: NodesLab):
    rejects = lab.lab("GET", "/_lab/rejects").json()
    assert rejects == [], rejects
    for text in lab.outputs + lab.handle.outputs:
        assert lab.token not in text
        assert "user-data-secret-4711" not in text


@pytest.fixture(scope="class")
def lab(make_class_lab, tmp_path_factory):
    with hetzner_lab(make_class_lab, NET) as handle:
        yield NodesLab(handle, tmp_path_factory.mktemp("nodes"))


@pytest.mark.incremental
class TestHetznerNodes:
    def test_resource_triplets(self, lab):
        resource_triplets(lab)

    def test_server_triplet(self, lab):
        server_triplet(lab)

    def test_server_in_place(self, lab):
        server_in_place(lab)

    def test_server_errors(self, lab):
        server_errors(lab)

    def test_server_ownership(self, lab):
        server_ownership(lab)

    def test_server_answer_lost(self, lab):
        server_answer_lost(lab)

    def test_absent_triplets(self, lab):
        absent_triplets(lab)

    def test_role_check_mode(self, lab):
        role_check_mode(lab)

    def test_role_refuses_a_server_without_its_config(self, lab):
        role_refuses_a_server_without_its_config(lab)

    def test_role_up(self, lab):
        role_up(lab)

    def test_role_rerun(self, lab):
        role_rerun(lab)

    def test_talos_plays_read_the_recorded_address(self, lab):
        talos_plays_read_the_recorded_address(lab)

    def test_role_failed_snapshot_build(self, lab):
        role_failed_snapshot_build(lab)

    def test_role_storm(self, lab):
        role_storm(lab)

    def test_role_teardown(self, lab):
        role_teardown(lab)

    def test_contract(self, lab):
        contract(lab)
