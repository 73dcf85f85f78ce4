"""The Hetzner Cloud twin through the REAL lab (CLI, supervisor, HTTPS with the lab CA), no mocks.

Spoken to two ways: plain HTTPS (requests) and the official `hcloud` library. Every answer either way is
recorded and, at the end, checked against the response schemas of Hetzner's own OpenAPI document.
ONE test of steps (like test_lab_openbao.py), so `pytest -n 2` can't split the lab across workers.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from hcloud import Client
from hcloud._exceptions import APIException
from hcloud.actions import ActionFailedException
from hcloud.firewalls import FirewallRule
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.networks import NetworkSubnet
from hcloud.server_types import ServerType

from tests.schemas import official_schema
from tests.tools import built_tools

from .conftest import wait_for

pytestmark = pytest.mark.lab

NET = "127.83"
BASE = f"https://{NET}.0.4:8443"
API = f"{BASE}/v1"
UP = ("up", "--profile", "fast", "--components", "hetzner")


class Recorder:
    """Every (method, path, status, body) the twin answered, for the contract check at the end."""

    def __init__(self):
        self.seen: list[tuple[str, str, int, object]] = []

    def __call__(self, response, *args, **kwargs):
        path = urlsplit(response.url).path
        if path.startswith("/v1/"):
            body = response.json() if response.content else None
            self.seen.append((response.request.method, path[3:], response.status_code, body))
        return response


class Plain:
    """The API over plain HTTPS (requests, verified against the lab CA)."""

    def __init__(self, lab, recorder: Recorder, token: str | None = None):
        self.session = requests.Session()  # verifies with $REQUESTS_CA_BUNDLE: the lab CA (set by the test)
        self.session.hooks["response"].append(recorder)
        self.token = token or lab.json("credentials.json")["hetzner"]["token"]

    def __call__(self, method: str, path: str, body: object = None, token: str | None = "default", **params):
        headers = {} if token is None else {"Authorization": f"Bearer {self.token if token == 'default' else token}"}
        return self.session.request(method, API + path, json=body, headers=headers, params=params, timeout=10)


def hcloud_client(lab, recorder: Recorder) -> Client:
    client = Client(token=lab.json("credentials.json")["hetzner"]["token"], api_endpoint=API, poll_interval=0.05)
    client._client._session.hooks["response"].append(recorder)  # the library's own requests.Session
    return client


def lab_call(plain: Plain, method: str, path: str, body: object = None):
    return plain.session.request(method, BASE + path, json=body, timeout=10)


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    assert "details" in error
    return error


# -- the steps ---------------------------------------------------------------------------------------
def up_writes_endpoints_and_token(lab):
    result = lab.run(*UP)
    assert f"hetzner healthy at {BASE}" in result.stdout
    entry = lab.json("endpoints.json")["components"]["hetzner"]
    assert entry["api_url"] == API and entry["schema_validation"] is True and entry["healthy"] is True
    token = lab.json("credentials.json")["hetzner"]["token"]
    assert len(token) >= 32
    assert oct((lab.root / "credentials.json").stat().st_mode & 0o777) == "0o600"
    status = lab.status()["components"]["hetzner"]
    assert status["healthy"] and "schema validation on" in status["detail"]
    return token


def auth_errors_and_rate_headers(plain: Plain):
    answer = plain("GET", "/servers", token=None)
    error_of(answer, 401, "unauthorized")
    error_of(plain("GET", "/servers", token="wrong"), 401, "unauthorized")
    first = plain("GET", "/locations")
    second = plain("GET", "/locations")
    for response in (answer, first, second):
        assert response.headers["RateLimit-Limit"] == "3600"
        assert int(response.headers["RateLimit-Reset"]) >= int(time.time())
    assert int(second.headers["RateLimit-Remaining"]) < int(first.headers["RateLimit-Remaining"])
    assert [loc["name"] for loc in first.json()["locations"]] == ["fsn1", "nbg1", "hel1"]
    error_of(plain("GET", "/servers/999"), 404, "not_found")
    error_of(plain("GET", "/nothing-here"), 404, "not_found")
    error_of(plain("POST", "/servers", token="default", body=None), 422, "invalid_input")


def schema_rejects_are_recorded(plain: Plain):
    lab_call(plain, "DELETE", "/_lab/requests")
    bad = plain("POST", "/servers", {"name": "x", "server_type": "cx22", "image": "debian-12", "labels": "nope",
                                     "start_after_create": "yes"})
    error = error_of(bad, 422, "invalid_input")
    fields = {f["name"]: f["messages"] for f in error["details"]["fields"]}
    assert set(fields) == {"labels", "start_after_create"}, fields
    missing = error_of(plain("POST", "/networks", {"name": "n"}), 422, "invalid_input")
    assert missing["details"]["fields"] == [{"name": "ip_range", "messages": ["is required"]}]
    error_of(plain("GET", "/servers", page="first"), 422, "invalid_input")
    rejects = lab_call(plain, "GET", "/_lab/rejects").json()
    assert [r["path"] for r in rejects] == ["/servers", "/networks", "/servers"]
    assert "labels" in rejects[0]["reasons"]
    json_error = plain.session.post(API + "/servers", data=b"{not json", timeout=10,
                                    headers={"Authorization": f"Bearer {plain.token}"})
    error_of(json_error, 400, "json_error")


def builds_a_talos_node_from_a_labelled_snapshot(client: Client, lab) -> dict:
    network = client.networks.create(name="lab", ip_range="127.3.0.0/16", subnets=[
        NetworkSubnet(type="cloud", ip_range="127.3.0.0/24", network_zone="eu-central")])
    assert network.subnets[0].gateway == "127.3.0.1"
    made = client.firewalls.create(name="talos", rules=[
        FirewallRule(direction="in", protocol="tcp", port="50000", source_ips=["0.0.0.0/0", "::/0"])])
    for action in made.actions:
        action.wait_until_finished()
    group = client.placement_groups.create(name="spread", type="spread").placement_group

    # The snapshot: a builder server, then create_image with labels (creating -> available).
    builder = client.servers.create(name="builder", server_type=ServerType(name="cx22"),
                                    image=Image(name="debian-12"), location=Location(name="fsn1"))
    assert builder.server.status == "initializing" and builder.root_password
    assert [a.command for a in builder.next_actions] == ["start_server"]
    builder.action.wait_until_finished()
    for action in builder.next_actions:
        action.wait_until_finished()
    assert client.servers.get_by_id(builder.server.id).status == "running"
    snap = client.servers.get_by_id(builder.server.id).create_image(
        description="talos v1.13.9", labels={"os": "talos", "talos_version": "v1.13.9"})
    assert snap.image.status == "creating" and snap.image.type == "snapshot"
    snap.action.wait_until_finished()
    image = client.images.get_by_id(snap.image.id)
    assert image.status == "available" and image.created_from.id == builder.server.id
    found = client.images.get_all(type="snapshot", label_selector="os=talos,talos_version in (v1.13.9)")
    assert [i.id for i in found] == [image.id]
    assert client.images.get_all(type="snapshot", label_selector="os!=talos") == []

    node = client.servers.create(name="hcloud-worker1", server_type=ServerType(name="cx22"), image=image,
                                 networks=[network], firewalls=[made.firewall], placement_group=group,
                                 labels={"role": "worker", "cluster": "lab"}, user_data="#talos config (lab)")
    node.action.wait_until_finished()
    for action in node.next_actions:
        action.wait_until_finished()
    server = client.servers.get_by_id(node.server.id)
    assert server.status == "running" and server.image.id == image.id
    assert server.private_net[0].ip == "127.3.0.2" and server.private_net[0].network.id == network.id
    assert [f.firewall.id for f in server.public_net.firewalls] == [made.firewall.id]
    assert server.placement_group.id == group.id
    # The hook a Talos node twin will read: this server, its private IP.
    nodes = json.loads((lab.root / "components/hetzner/talos-nodes.json").read_text())["nodes"]
    assert [(n["name"], n["private_ips"][0]["ip"], n["status"]) for n in nodes] == [
        ("hcloud-worker1", "127.3.0.2", "running")]
    return {"server": server, "image": image, "network": network}


def server_actions_and_change_type(client: Client, made: dict):
    server = made["server"]
    with pytest.raises(APIException) as refused:
        server.change_type(ServerType(name="cx32"), upgrade_disk=False)
    assert refused.value.code == "server_not_stopped"
    server.power_off().wait_until_finished()
    assert client.servers.get_by_id(server.id).status == "off"
    server.change_type(ServerType(name="cx32"), upgrade_disk=True).wait_until_finished()
    changed = client.servers.get_by_id(server.id)
    assert changed.server_type.name == "cx32" and changed.primary_disk_size == 80
    rescue = changed.enable_rescue()
    assert rescue.root_password
    rescue.action.wait_until_finished()
    assert client.servers.get_by_id(server.id).rescue_enabled is True
    changed.power_on().wait_until_finished()
    changed.update(labels={"role": "worker", "cluster": "lab", "pool": "hel"})
    commands = [a.command for a in client.servers.get_by_id(server.id).get_actions()]
    assert {"create_server", "start_server", "stop_server", "change_server_type", "enable_rescue"} <= set(commands)


def locked_while_an_action_runs(plain: Plain, made: dict):
    # A long-running snapshot (slow fault) keeps the server locked: a second action is refused with 423.
    lab_call(plain, "POST", "/_lab/faults", {"kind": "slow", "factor": 6})
    try:
        started = plain("POST", f"/servers/{made['server'].id}/actions/create_image", {"labels": {"tmp": "1"}})
        assert started.status_code == 201
        assert plain("GET", f"/servers/{made['server'].id}").json()["server"]["locked"] is True
        error_of(plain("POST", f"/servers/{made['server'].id}/actions/reboot"), 423, "locked")
    finally:
        lab_call(plain, "DELETE", "/_lab/faults")
    action = started.json()["action"]
    wait_for(lambda: plain("GET", f"/actions/{action['id']}").json()["action"]["status"] == "success", 10)
    done = plain("GET", f"/actions/{action['id']}").json()["action"]
    assert done["progress"] == 100 and done["finished"] and done["error"] is None


def label_selectors_and_pagination(client: Client, plain: Plain):
    for n, labels in enumerate([{"env": "prod", "tier": "db"}, {"env": "staging"}, {"env": "prod"}, {}]):
        client.servers.create(name=f"sel{n}", server_type=ServerType(name="cx22"), image=Image(name="debian-12"),
                              labels=labels, start_after_create=False)

    def names(selector: str) -> list[str]:
        return sorted(s.name for s in client.servers.get_all(label_selector=selector) if s.name.startswith("sel"))

    assert names("env=prod") == ["sel0", "sel2"]
    assert names("env==prod,tier!=db") == ["sel2"]
    assert names("tier") == ["sel0"]
    assert names("!env") == ["sel3"]
    assert names("env in (staging,prod),!tier") == ["sel1", "sel2"]
    assert names("env notin (prod)") == ["sel1", "sel3"]
    assert [s.name for s in client.servers.get_all(name="sel1")] == ["sel1"]
    error_of(plain("GET", "/servers", label_selector="env=(oops"), 422, "invalid_input")

    for n in range(55):
        client.placement_groups.create(name=f"pg{n:02}", type="spread", labels={"batch": "pages"})
    page1 = plain("GET", "/placement_groups", per_page=50, label_selector="batch=pages").json()
    assert len(page1["placement_groups"]) == 50
    assert page1["meta"]["pagination"] == {"page": 1, "per_page": 50, "previous_page": None, "next_page": 2,
                                           "last_page": 2, "total_entries": 55}
    page2 = plain("GET", "/placement_groups", page=2, per_page=50, label_selector="batch=pages")
    assert len(page2.json()["placement_groups"]) == 5 and page2.json()["meta"]["pagination"]["next_page"] is None
    assert 'rel="prev"' in page2.headers["Link"]
    capped = plain("GET", "/placement_groups", per_page=500).json()
    assert capped["meta"]["pagination"]["per_page"] == 50
    everything = client.placement_groups.get_all(label_selector="batch=pages")  # the library pages through
    assert sorted(g.name for g in everything) == [f"pg{n:02}" for n in range(55)]


def deletes_and_conflicts(client: Client, plain: Plain, made: dict):
    error_of(plain("POST", "/networks", {"name": "lab", "ip_range": "10.0.0.0/16"}), 409, "uniqueness_error")
    error_of(plain("DELETE", f"/networks/{made['network'].id}"), 422, "resource_in_use")
    firewall = made["server"].public_net.firewalls[0].firewall
    error_of(plain("DELETE", f"/firewalls/{firewall.id}"), 422, "resource_in_use")
    group = client.placement_groups.get_by_name("pg54")
    assert plain("DELETE", f"/placement_groups/{group.id}").status_code == 204
    error_of(plain("GET", f"/placement_groups/{group.id}"), 404, "not_found")
    doomed = client.servers.get_by_name("sel3")
    deleting = plain("DELETE", f"/servers/{doomed.id}")
    assert deleting.status_code == 200 and deleting.json()["action"]["command"] == "delete_server"
    wait_for(lambda: plain("GET", f"/servers/{doomed.id}").status_code == 404, 5)
    spare = client.servers.get_by_name("sel2").create_image(description="spare", labels={"spare": "yes"})
    spare.action.wait_until_finished()
    assert plain("DELETE", f"/images/{spare.image.id}").status_code == 204
    assert client.images.get_all(label_selector="spare") == []


def faults(client: Client, plain: Plain):
    # 429 storm: the hcloud library retries rate_limit_exceeded with exponential backoff (1 s, then up to 2 s).
    lab_call(plain, "POST", "/_lab/faults", {"kind": "rate_limit_storm", "count": 2})
    started = time.monotonic()
    assert [loc.name for loc in client.locations.get_all()] == ["fsn1", "nbg1", "hel1"]
    assert time.monotonic() - started >= 1.0  # it waited: at least the first backoff

    lab_call(plain, "POST", "/_lab/faults", {"kind": "http_5xx", "status": 503, "count": 1})
    with pytest.raises(APIException) as unavailable:
        client.server_types.get_all()
    assert unavailable.value.code == "unavailable"  # 503 is not retried by the library
    lab_call(plain, "POST", "/_lab/faults", {"kind": "http_5xx", "status": 502, "count": 1})
    assert len(client.server_types.get_all()) == 3  # 502 bad_gateway is

    lab_call(plain, "POST", "/_lab/faults", {"kind": "action_error", "match": "create_image",
                                             "code": "image_failed", "message": "disk read error (lab)"})
    server = client.servers.get_by_name("sel0")
    failing = server.create_image(description="doomed")
    with pytest.raises(ActionFailedException) as failed:
        failing.action.wait_until_finished()
    assert failed.value.action.error == {"code": "image_failed", "message": "disk read error (lab)"}

    lab_call(plain, "POST", "/_lab/faults", {"kind": "stuck_initializing", "match": "stuck"})
    stuck = client.servers.create(name="stuck1", server_type=ServerType(name="cx22"), image=Image(name="debian-12"))
    time.sleep(0.5)  # longer than create_server takes on the fast profile
    assert client.servers.get_by_id(stuck.server.id).status == "initializing"
    action = client.actions.get_by_id(stuck.action.id)
    assert action.status == "running" and action.progress == 0
    assert lab_call(plain, "GET", "/_lab/faults").json() == []


def rate_limited(lab, plain: Plain):
    for _attempt in range(5):
        last = plain("GET", "/locations")
        if last.status_code == 429:
            break
    assert last.headers["RateLimit-Limit"] == "5"
    while last.status_code != 429:
        last = plain("GET", "/locations")
    error_of(last, 429, "rate_limit_exceeded")
    assert last.headers["RateLimit-Remaining"] == "0"
    assert int(last.headers["RateLimit-Reset"]) > time.time()


def contract(recorder: Recorder):
    """Every answer of this test against the document's response schema for its operation and status."""
    from turnkey_lab.twins.hetzner import spec, validate

    document = spec.Spec(spec.find())
    templates = sorted({operation[1] for operation in document.operations}, key=lambda t: t.count("{"))
    patterns = [(t, re.compile("^" + re.sub(r"\{[a-z_]+\}", "[^/]+", t) + "$")) for t in templates]
    checked, problems = 0, []
    for method, path, status, body in recorder.seen:
        template = next((t for t, p in patterns if p.match(path) and document.operation(method, t)), None)
        if template is None:
            continue  # a path the document doesn't have (the 404 probe)
        errors = validate.response(document, method, template, status, body)
        checked += 1
        if errors:
            problems.append((method, path, status, errors))
    assert not problems, problems[:5]
    assert checked > 150, checked


def test_hetzner_twin(make_lab, tmp_path, monkeypatch):
    from turnkey_lab.twins.hetzner import spec

    official_schema(spec.RELATIVE)  # the contract check below needs Hetzner's document
    lab = make_lab(NET)
    recorder = Recorder()
    token = up_writes_endpoints_and_token(lab)
    # How a user points hcloud (requests) at the lab: the CA bundle variable. A session's own `verify`
    # loses to this variable when it is set (requests #3829), so set the variable.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(lab.root / "pki" / "ca.pem"))
    plain = Plain(lab, recorder)
    client = hcloud_client(lab, recorder)

    auth_errors_and_rate_headers(plain)
    schema_rejects_are_recorded(plain)
    made = builds_a_talos_node_from_a_labelled_snapshot(client, lab)
    server_actions_and_change_type(client, made)
    locked_while_an_action_runs(plain, made)
    label_selectors_and_pagination(client, plain)
    deletes_and_conflicts(client, plain, made)
    faults(client, plain)
    contract(recorder)

    # State survives down/up; this time with a budget of 5 requests an hour.
    before = plain("GET", "/servers", per_page=50).json()
    lab.run("down")
    lab.run(*UP, extra_env={"TURNKEY_LAB_HETZNER_RATE_LIMIT": "5"})
    assert lab.json("credentials.json")["hetzner"]["token"] == token
    after = plain("GET", "/servers", per_page=50).json()
    assert [s["id"] for s in after["servers"]] == [s["id"] for s in before["servers"]]
    assert after["meta"]["pagination"]["total_entries"] == before["meta"]["pagination"]["total_entries"] > 5
    rate_limited(lab, plain)

    # Without the document (a clone with no shared/ folder) the twin still works, unvalidated, and says so.
    lab.run("down")
    lab.run(*UP, extra_env={"TURNKEY_SCHEMAS_DIR": str(tmp_path)})
    assert lab.json("endpoints.json")["components"]["hetzner"]["schema_validation"] is False
    assert "schema validation OFF" in lab.status()["components"]["hetzner"]["detail"]
    assert plain("GET", "/servers/" + str(made["server"].id)).status_code == 200
    error_of(plain("POST", "/networks", {"name": "n"}), 422, "invalid_input")  # the twin's own check

    lab.run("down")
    assert lab.processes() == []
    logs = "".join(p.read_text() for p in (lab.root / "logs").glob("*.log"))
    for text in (*lab.outputs, logs):
        assert token not in text
    assert not list(Path(lab.root).glob("components/hetzner/.*"))  # no temp file left by an atomic write


# -- pure parts, no lab ------------------------------------------------------------------------------
def test_label_selector_language():
    from turnkey_lab.twins.hetzner import labels

    item = {"env": "prod", "example.com/tier": "db", "empty": ""}
    assert labels.selector("env=prod,example.com/tier==db")(item)
    assert labels.selector("env in (prod, staging),!gone,empty")(item)
    assert not labels.selector("env notin (prod)")(item)
    assert labels.selector("")(item)
    for bad in ("env=(x", "=v", "env in prod", "-bad-"):
        with pytest.raises(ValueError):
            labels.selector(bad)
    assert labels.problems({"ok": "v", "hetzner.cloud/x": "v", "k": "bad value"}) == [
        "label key 'hetzner.cloud/x' uses the reserved prefix hetzner.cloud/",
        "label value 'bad value' of 'k' is invalid"]


def test_rate_limit_refills_one_per_second_at_3600_an_hour():
    from turnkey_lab.twins.hetzner.ratelimit import RateLimit

    now = [1000.0]
    bucket = RateLimit(3600, clock=lambda: now[0])
    assert all(bucket.take() for _request in range(3600)) and not bucket.take()
    assert bucket.headers()["RateLimit-Remaining"] == "0"
    assert bucket.headers()["RateLimit-Reset"] == "4600"  # an hour to be full again
    now[0] += 2.5
    assert bucket.take() and bucket.take() and not bucket.take()


def test_spec_quirks_are_handled():
    from turnkey_lab.twins.hetzner import spec, validate

    document = spec.Spec(official_schema(spec.RELATIVE))
    assert "4XX" in document.operation("GET", "/servers")["responses"]
    schema = document.request_schema("POST", "/servers")
    assert schema["properties"]["image"]["type"] == ["string", "integer"]  # the hcloud client sends IDs
    assert validate.body(document, "POST", "/servers", {"name": "a", "server_type": 22, "image": 7}, True) == {}
    assert validate.body(document, "POST", "/servers", {}, True) == {
        "name": ["is required"], "server_type": ["is required"], "image": ["is required"]}
    assert spec.find({"TURNKEY_SCHEMAS_DIR": "/nonexistent"}) is None


# -- a Talos server with its machine config as user data (the Hetzner twin and the Talos node twin) -----
TALOS_NET = "127.89"
BUILD_TALOS_TWIN = Path(__file__).resolve().parents[2] / "lab" / "talos-twin" / "build.sh"
TOOLS_BUILD = Path(__file__).resolve().parents[2] / "tools" / "build"


def _talosctl(*args: str) -> subprocess.CompletedProcess:
    path = subprocess.run([str(TOOLS_BUILD), "--print-path", "talosctl"], capture_output=True, text=True,
                          timeout=60, check=False).stdout.strip()
    assert path, "talosctl is not built: run `make tools` first"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=60, check=False)


def _listening(ip: str) -> bool:
    try:
        with socket.create_connection((ip, 50000), timeout=0.5):
            return True
    except OSError:
        return False


def test_a_talos_server_with_its_config_as_user_data_boots_configured(make_lab, tmp_path, monkeypatch):
    """As Talos on Hetzner: a server whose user data is a machine config boots configured with it (its Talos
    API answers only the config's client certificate, never `--insecure`); one without user data boots into
    maintenance mode; user data that is not a machine config does not come up."""
    built = subprocess.run([str(BUILD_TALOS_TWIN)], capture_output=True, text=True, timeout=1200, check=False)
    assert built.returncode == 0, built.stderr
    gen = tmp_path / "gen"
    made = _talosctl("gen", "config", "lab", "https://127.89.3.100:6443", "-o", str(gen), "--with-docs=false",
                     "--with-examples=false")
    assert made.returncode == 0, made.stderr
    lab = make_lab(TALOS_NET)
    lab.run("up", "--profile", "fast", "--components", "hetzner,talos",
            extra_env=built_tools("TURNKEY_ETCD", "TURNKEY_KUBE_APISERVER"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(lab.root / "pki" / "ca.pem"))
    client = Client(token=lab.json("credentials.json")["hetzner"]["token"], api_endpoint=f"https://{TALOS_NET}.0.4:8443/v1",
                    poll_interval=0.05)
    network = client.networks.create(name="lab", ip_range="127.89.0.0/16", subnets=[
        NetworkSubnet(type="cloud", ip_range="127.89.3.0/24", network_zone="eu-central")])
    builder = client.servers.create(name="builder", server_type=ServerType(name="cx22"), image=Image(name="debian-12"))
    builder.action.wait_until_finished()
    for action in builder.next_actions:  # start_server: the server stays locked until it ran, as on Hetzner
        action.wait_until_finished()
    snap = client.servers.get_by_id(builder.server.id).create_image(labels={"os": "talos"})
    snap.action.wait_until_finished()
    config = (gen / "controlplane.yaml").read_text()
    servers = {}
    for name, user_data in (("configured", config), ("maintenance", None), ("broken", "#cloud-config\n")):
        created = client.servers.create(name=name, server_type=ServerType(name="cx22"), image=snap.image,
                                        networks=[network], user_data=user_data)
        created.action.wait_until_finished()
        for action in created.next_actions:
            action.wait_until_finished()
        servers[name] = client.servers.get_by_id(created.server.id).private_net[0].ip
    assert len(set(servers.values())) == 3 and all(ip.startswith("127.89.3.") for ip in servers.values())

    # the hook hands each server's user data to the node twin in a file of its own, 0600
    nodes = {n["name"]: n for n in json.loads((lab.root / "components/hetzner/talos-nodes.json").read_text())["nodes"]}
    user_data = Path(nodes["configured"]["user_data_file"])
    assert user_data.read_text() == config and user_data.stat().st_mode & 0o777 == 0o600
    assert nodes["maintenance"]["user_data_file"] is None

    wait_for(lambda: _listening(servers["configured"]) and _listening(servers["maintenance"]), timeout=60)
    insecure = _talosctl("version", "--insecure", "-n", servers["configured"], "-e", servers["configured"])
    assert insecure.returncode != 0, insecure.stdout  # no maintenance mode: nothing for a client without a certificate
    with_certificate = _talosctl("--talosconfig", str(gen / "talosconfig"), "version", "-n", servers["configured"],
                                 "-e", servers["configured"])
    assert with_certificate.returncode == 0, with_certificate.stderr
    maintenance = _talosctl("version", "--insecure", "-n", servers["maintenance"], "-e", servers["maintenance"])
    assert maintenance.returncode == 0, maintenance.stderr
    # not a machine config: real Talos fails to load it and opens no maintenance mode either
    assert not _listening(servers["broken"])
    log = (lab.root / "logs" / "talos.log").read_text()
    assert "node configured: configured from its user data at boot" in log
    assert "broken: user data is not a machine config" in log

    # a deleted server's user data goes with it
    client.servers.delete(client.servers.get_by_name("configured")).wait_until_finished()
    wait_for(lambda: not user_data.exists(), timeout=10)
    lab.run("down")
