"""The plan of hcloud_server: (the server as Hetzner has it, the server as asked) -> ordered actions, or a refusal."""

from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

server_plan = importlib.import_module("ansible_collections.turnkey.cluster.plugins.module_utils.hcloud_server_plan")
Facts, plan = server_plan.Facts, server_plan.plan

OWNER = {"cluster": "lab", "managed-by": "turnkey.cluster"}
NET = 4000001


def params(**options):
    base = dict(name="hcloud-worker1", state="started", image=None, image_selector="os=talos", compare_image=False,
                server_type="cx22", location="fsn1", placement_group="lab-talos", labels={**OWNER, "role": "worker"},
                owner_labels=OWNER, firewalls=None, network="lab", ip="10.3.0.10", enable_ipv4=True,
                enable_ipv6=True, user_data="machine: {}\n", allow_restart=False, allow_destructive=False)
    base.update(options)
    return base


def server(**changes):
    """The server as the module leaves it: running, on the network at its address, with the cluster's labels."""
    current = {"id": 10000001, "name": "hcloud-worker1", "status": "running", "server_type": "cx22",
               "location": "fsn1", "image": 300000001, "labels": {**OWNER, "role": "worker"},
               "ipv4": "203.0.113.2", "ipv6": "2001:db8:1::/64", "private_ips": [{"network": NET, "ip": "10.3.0.10"}],
               "firewalls": [5000001], "placement_group": "lab-talos"}
    current.update(changes)
    return current


def facts(**options):
    return Facts(**{"network_id": NET, **options})


def test_a_missing_server_is_created_stopped_attached_then_started():
    steps = plan(params(), None, facts(network_id=None))
    assert steps.error is None and steps.actions == ["create", "attach_network", "power_on"]
    assert steps.labels == {**OWNER, "role": "worker"}
    assert steps.create == {"server_type": "cx22", "location": "fsn1", "placement_group": "lab-talos",
                            "network": "lab", "ip": "10.3.0.10"}
    assert steps.before is None and steps.after["status"] == "running"
    assert steps.after["private_ips"] == [{"network": "lab", "ip": "10.3.0.10"}]
    # without a network it starts by itself; stopped, it is not started at all
    assert plan(params(network=None, ip=None), None, facts(network_id=None)).actions == ["create"]
    assert plan(params(state="stopped"), None, facts()).actions == ["create", "attach_network"]


def test_owner_labels_are_always_among_the_labels():
    steps = plan(params(labels={"role": "edge"}), None, facts())
    assert steps.labels == {"role": "edge", **OWNER}
    steps = plan(params(labels=None), None, facts())
    assert steps.labels == OWNER


def test_creating_needs_type_location_and_image():
    steps = plan(params(server_type=None, image_selector=None), None, facts())
    assert steps.actions == [] and steps.error == (
        "Server hcloud-worker1 does not exist; creating it needs server_type, image or image_selector")


def test_user_data_over_32_kib_is_refused_before_anything():
    steps = plan(params(user_data="x" * (32 * 1024 + 1)), None, facts())
    assert steps.actions == [] and "32769 bytes; Hetzner takes at most 32768" in steps.error
    assert plan(params(user_data="x" * 32 * 1024), None, facts()).error is None
    # bytes, not characters
    assert "bytes" in plan(params(user_data="ä" * (16 * 1024 + 1)), None, facts()).error


def test_a_server_as_asked_needs_nothing():
    steps = plan(params(), server(), facts())
    assert steps.error is None and steps.actions == [] and steps.warnings == []
    assert steps.after == {key: value for key, value in server().items() if key != "id"}


def test_a_foreign_server_with_the_name_is_never_touched():
    foreign = server(labels={"team": "web"})
    for asked in (params(), params(state="absent"), params(allow_destructive=True, location="nbg1")):
        steps = plan(asked, foreign, facts())
        assert steps.actions == [] and steps.differences == ["owner_labels"]
        assert steps.error.startswith("A server named hcloud-worker1 exists but is not managed here: its labels "
                                      "(team=web) lack cluster=lab,managed-by=turnkey.cluster")
    # another cluster's node of the same name: the cluster label differs
    other = server(labels={"cluster": "prod", "managed-by": "turnkey.cluster"})
    assert plan(params(), other, facts()).differences == ["owner_labels"]


def test_absent():
    assert plan(params(state="absent"), server(), facts()).actions == ["delete"]
    steps = plan(params(state="absent"), None, facts())
    assert steps.actions == [] and steps.error is None


def test_labels_and_firewalls_change_in_place():
    steps = plan(params(labels={**OWNER, "role": "worker", "v": "2"}), server(), facts())
    assert steps.actions == ["labels"] and steps.labels["v"] == "2"
    # 5000001 reaches the server through a label selector: not removable; 5000002 is applied directly
    steps = plan(params(firewalls=["fw-a"]), server(firewalls=[5000001, 5000002, 5000003]),
                 facts(firewalls=[("fw-a", 5000004)], direct_firewalls={5000002}))
    assert steps.actions == ["firewalls"]
    assert (steps.firewalls_add, steps.firewalls_remove) == ([5000004], [5000002])
    # in check mode a firewall an earlier task would create is added by name
    steps = plan(params(firewalls=["fw-new"]), server(), facts(firewalls=[("fw-new", None)]))
    assert steps.firewalls_add == ["fw-new"] and steps.after["firewalls"] == [5000001, "fw-new"]


def test_a_server_not_on_the_network_is_attached():
    steps = plan(params(), server(private_ips=[]), facts())
    assert steps.actions == ["attach_network"]


def test_a_new_server_type_needs_allow_restart():
    steps = plan(params(server_type="cx32"), server(), facts())
    assert steps.actions == [] and steps.differences == ["server_type"] and "allow_restart" in steps.error
    steps = plan(params(server_type="cx32", allow_restart=True), server(), facts())
    assert steps.actions == ["power_off", "change_type", "power_on"]
    # an off server stays off when asked stopped, and is not powered off again
    assert plan(params(server_type="cx32", allow_restart=True, state="stopped"), server(status="off"),
                facts()).actions == ["change_type"]
    assert plan(params(server_type="cx32", allow_restart=True, state="started"), server(status="off"),
                facts()).actions == ["change_type", "power_on"]


@pytest.mark.parametrize(("asked", "found", "difference"), [
    ({"location": "nbg1"}, {}, "location"),
    ({"placement_group": "other"}, {}, "placement_group"),
    ({"ip": "10.3.0.11"}, {}, "private IP (10.3.0.10, asked 10.3.0.11)"),
    ({}, {"image_matches": False}, "image"),
])
def test_destructive_differences_need_allow_destructive(asked, found, difference):
    steps = plan(params(**asked), server(), facts(**found))
    assert steps.actions == [] and steps.differences == [difference] and "allow_destructive" in steps.error
    steps = plan(params(allow_destructive=True, **asked), server(), facts(**found))
    assert steps.error is None and steps.actions == ["recreate", "create", "attach_network", "power_on"]


def test_recreate_keeps_what_is_not_asked():
    steps = plan(params(allow_destructive=True, location="nbg1", server_type=None, placement_group=None,
                        labels=None, network=None, ip=None), server(), facts(network_id=None))
    assert steps.actions == ["recreate", "create", "attach_network", "power_on"]
    assert steps.create == {"server_type": "cx22", "location": "nbg1", "placement_group": "lab-talos",
                            "network": str(NET), "ip": "10.3.0.10"}
    assert steps.labels == server()["labels"]


def test_power_states():
    assert plan(params(state="stopped"), server(), facts()).actions == ["power_off"]
    assert plan(params(state="stopped"), server(status="off"), facts()).actions == []
    assert plan(params(state="started"), server(status="off"), facts()).actions == ["power_on"]
    assert plan(params(state="present"), server(status="off"), facts()).actions == []


def test_public_network_toggles_are_warned_not_applied():
    steps = plan(params(enable_ipv4=False), server(), facts())
    assert steps.actions == [] and "enable_ipv4/enable_ipv6 apply at creation" in steps.warnings[0]


def test_user_data_is_never_a_difference():
    # Hetzner does not return it: another config on an existing server changes nothing here
    assert plan(params(user_data="machine: {other: true}\n"), server(), facts()).actions == []
