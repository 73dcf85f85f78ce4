# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan of turnkey.cluster.hcloud_server: the server as it is and as it is wanted -> the actions, in order.

Pure (no API, no Ansible), so every decision is unit-tested (tests/unit/plugins/module_utils/
test_hcloud_server_plan.py); the module reads what the plan needs (`Facts`), shows the plan in check mode
and diff, and applies it. The actions, named as the module's `changes` return them:

  delete          the server goes (state=absent)
  recreate        the server goes to be created again (a destructive difference, allow_destructive)
  create          a new server (created stopped when it joins a network: its fixed IP comes first)
  attach_network  the private network with the fixed IP
  labels          the labels, replaced as a whole
  firewalls       firewalls applied directly, added and removed
  power_off       ACPI shutdown, then a hard power-off
  change_type     another server type (the server is off)
  power_on        started

Ownership: a server is the module's to change or delete only when it carries every owner label; one
with the configured name but without them is someone else's and the plan is an error, whatever is asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

USER_DATA_MAX = 32 * 1024  # bytes: Hetzner refuses more
RUNNING = ("running", "starting", "initializing")
CREATE_FIELDS = ("server_type", "location", "placement_group", "network", "ip")


@dataclass
class Facts:
    """What the plan needs beyond the server's view; the module reads it from the API."""

    image_matches: bool = True  # the existing server's image is the one asked (or it is not compared)
    network_id: int | None = None  # the asked network's id; None when not asked or missing (check mode)
    firewalls: list = field(default_factory=list)  # [(name, id or None when missing)] when firewalls are asked
    direct_firewalls: set = field(default_factory=set)  # ids applied to the server directly (removable)


@dataclass
class Plan:
    actions: list = field(default_factory=list)
    error: str | None = None
    differences: list = field(default_factory=list)  # what an error is about (server_type, image, ...)
    warnings: list = field(default_factory=list)
    labels: dict | None = None  # the labels to set (create, labels)
    firewalls_add: list = field(default_factory=list)  # ids, or names of firewalls still missing (check mode)
    firewalls_remove: list = field(default_factory=list)
    create: dict = field(default_factory=dict)  # server_type, location, placement_group, network, ip to create with
    before: dict | None = None
    after: dict | None = None


def owned(labels, owner_labels):
    """Whether a server's labels carry every owner label (with its value)."""
    labels = labels or {}
    return all(labels.get(key) == value for key, value in (owner_labels or {}).items())


def wanted_labels(params):
    """The labels asked, with the owner labels always among them (None: labels are left alone)."""
    if params.get("labels") is None:
        return None
    return dict(params["labels"], **(params.get("owner_labels") or {}))


def _selector(labels):
    return ",".join("%s=%s" % item for item in sorted((labels or {}).items()))


def _create_steps(params, network):
    steps = ["create"]
    if network:
        steps.append("attach_network")  # created stopped: the fixed IP is attached before the first boot
        if params["state"] != "stopped":
            steps.append("power_on")
    return steps


def destructive_differences(params, current, facts):
    found = []
    if not facts.image_matches:
        found.append("image")
    if params.get("location") and params["location"] != current["location"]:
        found.append("location")
    if params.get("placement_group") is not None and params["placement_group"] != current["placement_group"]:
        found.append("placement_group")
    if params.get("network") and params.get("ip") and facts.network_id is not None:
        mine = [p["ip"] for p in current["private_ips"] if p["network"] == facts.network_id]
        if mine and mine[0] != params["ip"]:
            found.append("private IP (%s, asked %s)" % (mine[0], params["ip"]))
    return found


def desired(params, current, facts):
    """The view the server should have, for the diff (fields the module leaves alone keep their value)."""
    after = dict(current or {"name": params["name"], "status": None, "ipv4": None, "ipv6": None,
                             "private_ips": [], "firewalls": [], "labels": {}, "image": None,
                             "placement_group": None, "server_type": None, "location": None})
    after.pop("id", None)
    for key in ("server_type", "location", "placement_group"):
        if params.get(key) is not None:
            after[key] = params[key]
    labels = wanted_labels(params)
    if labels is not None:
        after["labels"] = labels
    elif current is None:
        after["labels"] = dict(params.get("owner_labels") or {})
    if (params.get("image") or params.get("image_selector")) and not (current and facts.image_matches):
        after["image"] = params.get("image") or "<newest snapshot matching %s>" % params["image_selector"]
    if params.get("network"):
        others = [p for p in after["private_ips"] if facts.network_id is None or p["network"] != facts.network_id]
        mine = {"network": facts.network_id if facts.network_id is not None else params["network"],
                "ip": params.get("ip") or "<auto>"}
        after["private_ips"] = others + [mine]
    if params.get("firewalls") is not None:
        wanted = [ident if ident is not None else name for name, ident in facts.firewalls]
        # firewalls that reach the server through a label selector stay
        kept = [ident for ident in after["firewalls"] if ident not in wanted and ident not in facts.direct_firewalls]
        after["firewalls"] = sorted(kept + wanted, key=str)
    state = params["state"]
    if state == "started" or (state == "present" and current is None):
        after["status"] = "running"
    elif state == "stopped":
        after["status"] = "off"
    return after


def _missing_for_create(params):
    missing = [key for key in ("server_type", "location") if not params.get(key)]
    if not (params.get("image") or params.get("image_selector")):
        missing.append("image or image_selector")
    return missing


def plan(params, current, facts):
    """The Plan for module params (the module's options), the server's current view (None: no such server)."""
    result = Plan(before=current)
    name = params["name"]
    user_data = params.get("user_data")
    if user_data is not None and len(user_data.encode("utf-8")) > USER_DATA_MAX:
        result.error = ("user_data of server %s is %d bytes; Hetzner takes at most %d (32 KiB). Make the machine "
                        "config smaller (fewer or smaller patches, inline manifests moved to the cluster)"
                        % (name, len(user_data.encode("utf-8")), USER_DATA_MAX))
        return result
    if current is not None and not owned(current["labels"], params.get("owner_labels")):
        result.error = ("A server named %s exists but is not managed here: its labels (%s) lack %s. It is left "
                        "alone, never changed or deleted; rename the node, delete that server yourself, or give "
                        "it these labels if it really is this cluster's"
                        % (name, _selector(current["labels"]) or "none", _selector(params.get("owner_labels"))))
        result.differences = ["owner_labels"]
        return result

    if params["state"] == "absent":
        if current is not None:
            result.actions = ["delete"]
            result.after = None
        else:
            result.after = None
        return result

    result.after = desired(params, current, facts)
    labels = wanted_labels(params)
    if current is None:
        missing = _missing_for_create(params)
        if missing:
            result.error = "Server %s does not exist; creating it needs %s" % (name, ", ".join(missing))
            return result
        result.labels = labels if labels is not None else dict(params.get("owner_labels") or {})
        result.create = {key: params.get(key) for key in CREATE_FIELDS}
        result.actions = _create_steps(params, params.get("network"))
        result.firewalls_add = [ident if ident is not None else fname for fname, ident in facts.firewalls]
        return result

    if params["enable_ipv4"] != (current["ipv4"] is not None) or params["enable_ipv6"] != (current["ipv6"] is not None):
        result.warnings.append("the public network of an existing server is not changed (enable_ipv4/enable_ipv6 "
                               "apply at creation; recreate the server to change it)")
    destructive = destructive_differences(params, current, facts)
    if destructive:
        result.differences = destructive
        if not params.get("allow_destructive"):
            result.error = ("Server %s differs in %s, which only deleting and recreating it can change (its disk "
                            "is lost); set allow_destructive: true to allow that" % (name, ", ".join(destructive)))
            return result
        # what is not asked for is kept from the server being replaced
        create = {key: params.get(key) if params.get(key) is not None else current[key]
                  for key in ("server_type", "location", "placement_group")}
        create["network"], create["ip"] = params.get("network"), params.get("ip")
        if not create["network"] and current["private_ips"]:
            create["network"] = str(current["private_ips"][0]["network"])
            create["ip"] = current["private_ips"][0]["ip"]
        result.create = create
        result.labels = labels if labels is not None else dict(current["labels"])
        result.actions = ["recreate"] + _create_steps(params, create["network"])
        result.firewalls_add = [ident if ident is not None else fname for fname, ident in facts.firewalls]
        return result

    # in place
    if labels is not None and labels != current["labels"]:
        result.actions.append("labels")
        result.labels = labels
    if params.get("firewalls") is not None:
        wanted = {ident for _name, ident in facts.firewalls if ident is not None}
        result.firewalls_add = sorted(wanted - set(current["firewalls"])) + [
            fname for fname, ident in facts.firewalls if ident is None]
        result.firewalls_remove = sorted((set(current["firewalls"]) - wanted) & set(facts.direct_firewalls))
        if result.firewalls_add or result.firewalls_remove:
            result.actions.append("firewalls")
    if params.get("network"):
        attached = facts.network_id is not None and any(p["network"] == facts.network_id
                                                        for p in current["private_ips"])
        if not attached:
            result.actions.append("attach_network")
    status = current["status"]
    if params.get("server_type") and params["server_type"] != current["server_type"]:
        if not (params.get("allow_restart") or params.get("allow_destructive")):
            result.error = ("Server %s is %s, asked %s: changing the type needs a power-off; set allow_restart: "
                            "true to allow it" % (name, current["server_type"], params["server_type"]))
            result.differences = ["server_type"]
            return result
        if status != "off":
            result.actions.append("power_off")
        result.actions.append("change_type")
        if status in RUNNING and params["state"] != "stopped":
            result.actions.append("power_on")
            status = "running"
        else:
            status = "off"
    if params["state"] == "started" and status not in ("running", "starting") and "power_on" not in result.actions:
        result.actions.append("power_on")
    if params["state"] == "stopped" and status != "off":
        result.actions.append("power_off")
    return result
