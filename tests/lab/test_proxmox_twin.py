"""The Proxmox VE twin against a real lab (`lab up --components proxmox,image_factory`, fast profile).

Plain HTTPS (requests, the lab CA) and proxmoxer with API-token auth, as the collection's modules will
talk to it. The lab tests are ONE test made of steps, in order (later steps use the template earlier ones made), so
pytest-xdist (`pytest -n 2`) cannot split them across workers onto one net.
"""

from __future__ import annotations

import concurrent.futures
import os

import pytest
import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from tests.schemas import official_schema

from .conftest import LabHandle, wait_for

pytestmark = pytest.mark.lab

NET = "127.81"
HOST = f"{NET}.0.3"
API = f"https://{HOST}:8006/api2/json"
LAB = f"https://{HOST}:8006/_lab"
FACTORY = f"https://{NET}.0.6:8443"
NOT_DEFINED = "property is not defined in schema and the schema does not allow additional properties"
TEMPLATE, SOURCE_VM = 9000, 8000


def ca(lab) -> str:
    return str(lab.root / "pki" / "ca.pem")


def creds(lab) -> dict:
    return lab.json("credentials.json")["proxmox"]


def pve(lab, token_id: str | None = None, secret: str | None = None) -> ProxmoxAPI:
    token_id = token_id or creds(lab)["token_id"]
    user, name = token_id.split("!")
    return ProxmoxAPI(HOST, port=8006, user=user, token_name=name, token_value=secret or creds(lab)["token_secret"],
                      verify_ssl=ca(lab), service="PVE", timeout=30)


def call(lab, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, API + path, verify=ca(lab), timeout=30, **kwargs)


def token_header(lab) -> dict:
    return {"Authorization": f"PVEAPIToken={creds(lab)['api_token']}"}


def wait_task(api: ProxmoxAPI, upid: str, timeout: float = 30) -> dict:
    def stopped():
        status = api.nodes("pve").tasks(upid).status.get()
        return status if status["status"] == "stopped" else None
    return wait_for(stopped, timeout, 0.02)


def add_fault(lab, **fault) -> None:
    requests.post(f"{LAB}/faults", json=fault, verify=ca(lab), timeout=10).raise_for_status()


def clear_faults(lab) -> None:
    requests.delete(f"{LAB}/faults", verify=ca(lab), timeout=10).raise_for_status()


def endpoints_and_credentials(lab):
    entry = lab.json("endpoints.json")["components"]["proxmox"]
    assert entry["url"] == f"https://{HOST}:8006" and entry["node"] == "pve"
    assert entry["schema_validation"] is True
    assert oct((lab.root / "credentials.json").stat().st_mode & 0o777) == "0o600"
    assert set(creds(lab)) >= {"username", "password", "token_id", "token_secret", "api_token"}
    assert pve(lab).version.get()["release"] == "9.1"


def login_ticket_and_csrf(lab):
    bad = call(lab, "POST", "/access/ticket", data={"username": "root@pam", "password": "wrong"})
    assert bad.status_code == 401
    good = call(lab, "POST", "/access/ticket", data={"username": "root@pam", "password": creds(lab)["password"]})
    assert good.status_code == 200
    ticket = good.json()["data"]
    cookies = {"PVEAuthCookie": ticket["ticket"]}
    assert ticket["ticket"].startswith("PVE:root@pam:")
    assert call(lab, "GET", "/nodes", cookies=cookies).status_code == 200
    assert call(lab, "GET", "/nodes").status_code == 401  # no ticket
    no_csrf = call(lab, "POST", "/access/users", cookies=cookies, data={"userid": "csrf@pve"})
    assert no_csrf.status_code == 401 and "csrf" in no_csrf.reason
    with_csrf = call(lab, "POST", "/access/users", cookies=cookies, data={"userid": "csrf@pve"},
                     headers={"CSRFPreventionToken": ticket["CSRFPreventionToken"]})
    assert with_csrf.status_code == 200, with_csrf.text


def token_without_privilege_gets_proxmox_403(lab):
    api = pve(lab)
    api.access.users.post(userid="auditor@pve", comment="read only")
    token = api.access.users("auditor@pve").token("ro").post(privsep=0)
    api.access.acl.put(path="/", roles="PVEAuditor", users="auditor@pve")
    auditor = pve(lab, token["full-tokenid"], token["value"])
    assert auditor.nodes.get()[0]["node"] == "pve"
    with pytest.raises(ResourceException) as denied:
        auditor.nodes("pve").qemu(100).clone.post(newid=555)
    assert denied.value.status_code == 403
    assert "Permission check failed (/vms/100, VM.Clone)" in str(denied.value)
    answer = call(lab, "POST", "/nodes/pve/qemu", data={"vmid": 555},
                  headers={"Authorization": f"PVEAPIToken={token['full-tokenid']}={token['value']}"})
    assert answer.status_code == 403 and answer.reason == "Permission check failed (/vms/555, VM.Allocate)"
    bad_secret = call(lab, "GET", "/nodes", headers={"Authorization": f"PVEAPIToken={token['full-tokenid']}=nope"})
    assert bad_secret.status_code == 401


def access_roles_users_tokens_and_acls(lab):
    """GET/PUT/DELETE of a role, a user and a token, token lists, ACLs naming a token: the PVE 9 answers."""
    api = pve(lab)
    api.access.roles.post(roleid="Lab", privs="VM.Audit")
    assert api.access.roles("Lab").get() == {"VM.Audit": 1}  # Proxmox answers {privilege: 1}
    api.access.roles("Lab").put(privs="Datastore.Audit", append=1)
    assert api.access.roles("Lab").get() == {"Datastore.Audit": 1, "VM.Audit": 1}
    api.access.roles("Lab").put(privs="Sys.Audit")  # without append the list replaces
    assert api.access.roles("Lab").get() == {"Sys.Audit": 1}
    with pytest.raises(ResourceException) as builtin:
        api.access.roles("PVEAuditor").put(privs="VM.Audit")
    assert "auto-generated role 'PVEAuditor' cannot be modified" in str(builtin.value)
    with pytest.raises(ResourceException) as missing:
        api.access.roles("Nope").get()
    assert missing.value.status_code == 500 and "role 'Nope' does not exist" in str(missing.value)

    api.access.users.post(userid="acl@pve", comment="first")
    api.access.users("acl@pve").put(comment="second", enable=0)
    assert api.access.users("acl@pve").get() == {"enable": 0, "expire": 0, "comment": "second", "groups": []}
    token = api.access.users("acl@pve").token("tk").post(privsep=1, comment="c")
    assert api.access.users("acl@pve").token.get() == [{"tokenid": "tk", "privsep": 1, "expire": 0, "comment": "c"}]
    assert api.access.users("acl@pve").token("tk").put(comment="d", privsep=0) == {"privsep": 0, "expire": 0,
                                                                                   "comment": "d"}
    assert api.access.users("acl@pve").get()["tokens"] == {"tk": {"privsep": 0, "expire": 0, "comment": "d"}}
    api.access.acl.put(path="/", roles="Lab", tokens=token["full-tokenid"])  # the full id: pve-tokenid allows it
    assert {(e["ugid"], e["type"]) for e in api.access.acl.get()} >= {("acl@pve!tk", "token")}
    api.access.roles("Lab").delete()
    assert "acl@pve!tk" not in {e["ugid"] for e in api.access.acl.get()}  # a deleted role leaves no entries
    api.access.users("acl@pve").delete()
    with pytest.raises(ResourceException) as gone:
        api.access.users("acl@pve").token.get()
    assert "no such user ('acl@pve')" in str(gone.value)
    assert call(lab, "GET", "/version", headers={"Authorization": f"PVEAPIToken=acl@pve!tk={token['value']}"}
                ).status_code == 401


def download_url_imports_a_factory_image(lab):
    api = pve(lab)
    schematic = requests.post(f"{FACTORY}/schematics", verify=ca(lab), timeout=10, json={"customization": {
        "systemExtensions": {"officialExtensions": ["siderolabs/qemu-guest-agent"]}}}).json()["id"]
    url = f"{FACTORY}/image/{schematic}/v1.13.9/nocloud-amd64.qcow2"
    upid = api.nodes("pve").storage("local")("download-url").post(url=url, content="import", filename="talos.qcow2")
    assert upid.startswith("UPID:pve:") and ":download:talos.qcow2:root@pam!lab:" in upid
    assert wait_task(api, upid)["exitstatus"] == "OK"
    log = [line["t"] for line in api.nodes("pve").tasks(upid).log.get()]
    assert log[0].startswith(f"downloading {url}") and log[-1] == "TASK OK"
    content = api.nodes("pve").storage("local").content.get(content="import")
    image = requests.get(url, verify=ca(lab), timeout=10).content
    assert [(c["volid"], c["size"]) for c in content] == [("local:import/talos.qcow2", len(image))]
    again = call(lab, "POST", "/nodes/pve/storage/local/download-url", headers=token_header(lab),
                 data={"url": url, "content": "import", "filename": "talos.qcow2"})
    assert again.status_code == 500 and "refusing to override existing file" in again.reason


def create_config_and_template(lab):
    api = pve(lab)
    upid = api.nodes("pve").qemu.post(
        vmid=TEMPLATE, name="talos-template", memory=2048, cores=2, bios="ovmf", agent="enabled=1",
        scsi0="local-zfs:0,import-from=local:import/talos.qcow2,iothread=1",
        efidisk0="local-zfs:1,efitype=4m", net0="virtio,bridge=vmbr0")
    assert wait_task(api, upid)["exitstatus"] == "OK"
    config = api.nodes("pve").qemu(TEMPLATE).config.get()
    assert config["cores"] == 2 and config["name"] == "talos-template"
    assert config["scsi0"].startswith("local-zfs:vm-9000-disk-0,") and config["net0"].startswith("virtio=BC:24:11:")
    # digest: a change based on a stale read is refused.
    api.nodes("pve").qemu(TEMPLATE).config.put(description="lab", digest=config["digest"])
    with pytest.raises(ResourceException, match="detected modified configuration"):
        api.nodes("pve").qemu(TEMPLATE).config.put(description="again", digest=config["digest"])
    api.nodes("pve").qemu(TEMPLATE).config.put(delete="description")
    assert "description" not in api.nodes("pve").qemu(TEMPLATE).config.get()
    assert wait_task(api, api.nodes("pve").qemu(TEMPLATE).template.post())["exitstatus"] == "OK"
    config = api.nodes("pve").qemu(TEMPLATE).config.get()
    assert config["template"] == 1 and config["scsi0"].startswith("local-zfs:base-9000-disk-0,")
    start = wait_task(api, api.nodes("pve").qemu(TEMPLATE).status.start.post())
    assert start["exitstatus"] == "you can't start a vm if it's a template"


def eight_linked_clones_race_on_one_storage(lab):
    api = pve(lab)
    newids = list(range(100, 108))

    def clone(newid):
        upid = pve(lab).nodes("pve").qemu(TEMPLATE).clone.post(newid=newid, name=f"talos-{newid}")
        return newid, wait_task(api, upid)["exitstatus"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = dict(pool.map(clone, newids))
    lock_error = "can't lock file '/var/lock/pve-manager/pve-storage-local-zfs' - got timeout"
    assert all(status in ("OK", f"clone failed: {lock_error}") for status in results.values()), results
    cloned = [n for n, status in results.items() if status == "OK"]
    assert cloned, results
    vms = {vm["vmid"]: vm for vm in api.nodes("pve").qemu.get()}
    volumes = {v["volid"] for v in api.nodes("pve").storage("local-zfs").content.get()}
    for newid in newids:
        if newid not in cloned:
            assert newid not in vms  # a failed clone leaves nothing behind
            continue
        config = api.nodes("pve").qemu(newid).config.get()
        assert "lock" not in config and "template" not in config
        assert config["scsi0"].startswith(f"local-zfs:base-9000-disk-0/vm-{newid}-disk-0,")
        assert f"local-zfs:base-9000-disk-0/vm-{newid}-disk-0" in volumes
    assert len({api.nodes("pve").qemu(n).config.get()["net0"] for n in cloned}) == len(cloned)  # fresh MACs


def lock_timeout_and_vm_lock(lab):
    api = pve(lab)
    add_fault(lab, kind="lock_timeout", match="pve-storage-local-zfs")
    try:
        status = wait_task(api, api.nodes("pve").qemu(TEMPLATE).clone.post(newid=150))
    finally:
        clear_faults(lab)
    assert status["exitstatus"] == ("clone failed: can't lock file '/var/lock/pve-manager/pve-storage-local-zfs' - "
                                    "got timeout")
    assert 150 not in {vm["vmid"] for vm in api.nodes("pve").qemu.get()}
    # A full clone of a VM (not a template) locks the source while it copies.
    assert wait_task(api, api.nodes("pve").qemu(100).clone.post(newid=SOURCE_VM, full=1))["exitstatus"] == "OK"
    add_fault(lab, kind="slow", factor=50)
    try:
        upid = api.nodes("pve").qemu(SOURCE_VM).clone.post(newid=151, full=1)
        wait_for(lambda: api.nodes("pve").qemu(SOURCE_VM).config.get().get("lock") == "clone", 5, 0.02)
        with pytest.raises(ResourceException, match=r"VM is locked \(clone\)"):
            api.nodes("pve").qemu(SOURCE_VM).config.put(cores=4)
        assert api.nodes("pve").qemu(151).config.get()["lock"] == "create"
    finally:
        clear_faults(lab)
    assert wait_task(api, upid)["exitstatus"] == "OK"
    assert "lock" not in api.nodes("pve").qemu(SOURCE_VM).config.get()


def start_records_the_network_identity(lab):
    api = pve(lab)
    api.nodes("pve").qemu(101).config.put(ipconfig0="ip=127.2.1.1/16,gw=127.2.0.1", nameserver="127.2.0.53",
                                          searchdomain="lab.turnkey.test")
    assert wait_task(api, api.nodes("pve").qemu(101).status.start.post())["exitstatus"] == "OK"
    assert api.nodes("pve").qemu(101).status.current.get()["status"] == "running"
    interfaces = api.nodes("pve").qemu(101).agent("network-get-interfaces").get()["result"]
    assert {"ip-address": "127.2.1.1", "ip-address-type": "ipv4", "prefix": 16} in interfaces[1]["ip-addresses"]
    network = requests.get(f"{LAB}/vms", verify=ca(lab), timeout=10).json()["101"]["network"]
    assert network["ip"] == "127.2.1.1" and network["hostname"] == "talos-101"
    assert network["nameserver"] == "127.2.0.53" and network["images"] == ["local:import/talos.qcow2"]
    again = wait_task(api, api.nodes("pve").qemu(101).status.start.post())
    assert again["exitstatus"] == "VM 101 already running"
    assert wait_task(api, api.nodes("pve").qemu(101).status.reboot.post())["exitstatus"] == "OK"
    assert wait_task(api, api.nodes("pve").qemu(101).resize.put(disk="scsi0", size="40G"))["exitstatus"] == "OK"
    assert ",size=40G" in api.nodes("pve").qemu(101).config.get()["scsi0"]
    shrink = wait_task(api, api.nodes("pve").qemu(101).resize.put(disk="scsi0", size="10G"))
    assert shrink["exitstatus"] == "shrinking disks is not supported"
    with pytest.raises(ResourceException, match="VM 101 is running - destroy failed"):
        api.nodes("pve").qemu(101).delete()
    resources = {r["vmid"]: r for r in api.cluster.resources.get(type="vm")}
    assert resources[101]["status"] == "running" and resources[TEMPLATE]["template"] == 1
    assert int(api.cluster.nextid.get()) == 102 or int(api.cluster.nextid.get()) not in resources


def template_in_use_cannot_be_destroyed_but_a_clone_can(lab):
    api = pve(lab)
    status = wait_task(api, api.nodes("pve").qemu(TEMPLATE).delete(purge=1))
    assert status["exitstatus"].startswith("base volume 'local-zfs:base-9000-disk-0' is still in use")
    assert wait_task(api, api.nodes("pve").qemu(102).delete(purge=1))["exitstatus"] == "OK"
    assert 102 not in {vm["vmid"] for vm in api.nodes("pve").qemu.get()}


def schema_rejects_are_400_and_recorded(lab):
    answer = call(lab, "PUT", "/nodes/pve/qemu/103/config", headers=token_header(lab), data={"foo": "1"})
    assert answer.status_code == 400 and answer.reason == "Parameter verification failed."
    assert answer.json() == {"data": None, "errors": {"foo": NOT_DEFINED}}
    typed = call(lab, "PUT", "/nodes/pve/qemu/103/config", headers=token_header(lab),
                 data={"cores": "many", "net0": "virtio,bridge=vmbr0,speed=fast"})
    errors = typed.json()["errors"]
    assert errors["cores"] == "type check ('integer') failed - got 'many'"
    assert f"net0.speed: {NOT_DEFINED}" in errors["net0"]
    with pytest.raises(ResourceException) as missing:
        pve(lab).nodes("pve").qemu(TEMPLATE).clone.post(name="no-newid")
    assert missing.value.status_code == 400
    rejects = requests.get(f"{LAB}/rejects", verify=ca(lab), timeout=10).json()
    assert {"foo": NOT_DEFINED} in [r["reasons"] for r in rejects]
    assert any("newid" in r["reasons"] for r in rejects)


def http_5xx_burst_then_recovery_and_failing_task(lab):
    api = pve(lab)
    add_fault(lab, kind="http_5xx", count=3, status=503)
    codes = [call(lab, "GET", "/version", headers=token_header(lab)).status_code for _attempt in range(4)]
    assert codes == [503, 503, 503, 200]
    add_fault(lab, kind="task_fail", match="download", message="download failed: 404 Not Found")
    upid = api.nodes("pve").storage("local")("download-url").post(
        url=f"{FACTORY}/image/{'0' * 64}/v1.13.9/metal-amd64.qcow2", content="import", filename="broken.qcow2")
    status = wait_task(api, upid)
    assert status["exitstatus"] == "download failed: 404 Not Found"
    assert api.nodes("pve").tasks(upid).log.get()[-1]["t"] == "TASK ERROR: download failed: 404 Not Found"
    # Without a fault the same unknown image fails for real (the factory answers 404).
    upid = api.nodes("pve").storage("local")("download-url").post(
        url=f"{FACTORY}/image/{'0' * 64}/v1.13.9/metal-amd64.qcow2", content="import", filename="broken.qcow2")
    assert wait_task(api, upid)["exitstatus"].startswith("download failed: 404")
    assert "local:import/broken.qcow2" not in {c["volid"] for c in api.nodes("pve").storage("local").content.get()}


def lost_answer_after_a_clone_and_a_second_agent_address(lab):
    """Ambiguous errors (the clone happened, its answer is lost) and a DHCP lease beside the static address."""
    api = pve(lab)
    add_fault(lab, kind="http_5xx_after", status=504, match=f"/qemu/{TEMPLATE}/clone")
    lost = call(lab, "POST", f"/nodes/pve/qemu/{TEMPLATE}/clone", headers=token_header(lab),
                data={"newid": 150, "name": "lost-answer", "full": 0})
    assert lost.status_code == 504, lost.reason
    cloned = wait_for(lambda: [vm for vm in api.nodes("pve").qemu.get() if vm["vmid"] == 150 and "lock" not in vm],
                      30, 0.05)
    assert cloned[0]["name"] == "lost-answer"  # it happened all the same
    add_fault(lab, kind="agent_extra_address", match="101", address="192.168.1.77", count=0)
    twice = [api.nodes("pve").qemu(101).agent("network-get-interfaces").get()["result"][1] for _attempt in range(2)]
    clear_faults(lab)
    assert all([a["ip-address"] for a in eth0["ip-addresses"]] == ["127.2.1.1", "192.168.1.77"] for eth0 in twice)
    eth0 = api.nodes("pve").qemu(101).agent("network-get-interfaces").get()["result"][1]
    assert [a["ip-address"] for a in eth0["ip-addresses"]] == ["127.2.1.1"]


def state_survives_lab_down_and_up(lab):
    before = {vm["vmid"]: vm["status"] for vm in pve(lab).nodes("pve").qemu.get()}
    lab.run("down")
    assert not lab.processes()
    lab.run("up")
    api = pve(lab)  # the same token still works: credentials and state were kept
    assert {vm["vmid"]: vm["status"] for vm in api.nodes("pve").qemu.get()} == before
    assert api.nodes("pve").qemu(TEMPLATE).config.get()["template"] == 1
    assert [c["volid"] for c in api.nodes("pve").storage("local").content.get(content="import")] == [
        "local:import/talos.qcow2"]


def no_secret_is_printed_or_logged(lab):
    exports = lab.run("env").stdout
    assert f"PROXMOX_URL={API}" in exports and "PROXMOX_API_TOKEN=" in exports
    secrets = [creds(lab)["password"], creds(lab)["token_secret"]]
    logs = [p.read_text(errors="replace") for p in (lab.root / "logs").glob("*.log")]
    state = (lab.root / "components" / "proxmox" / "state.json").read_text()
    for text in [*lab.outputs, *logs, state]:
        for secret in secrets:
            assert secret not in text


def test_without_the_schema_file_the_twin_still_works(tmp_path_factory):
    """A user's clone has no shared/ folder: no validation, said so in health and endpoints.json."""
    handle = LabHandle(tmp_path_factory.mktemp("pve-noschema") / "state", "127.82")
    empty = tmp_path_factory.mktemp("no-schemas")
    env = {"TURNKEY_SCHEMAS_DIR": str(empty)}
    try:
        handle.run("up", "--profile", "fast", "--components", "proxmox", extra_env=env)
        assert handle.json("endpoints.json")["components"]["proxmox"]["schema_validation"] is False
        status = handle.run("status", extra_env=env).stdout
        assert "schema validation OFF" in status
        token = handle.json("credentials.json")["proxmox"]["api_token"]
        answer = requests.put("https://127.82.0.3:8006/api2/json/nodes/pve/qemu/100/config",
                              headers={"Authorization": f"PVEAPIToken={token}"}, data={"foo": "1"},
                              verify=str(handle.root / "pki" / "ca.pem"), timeout=10)
        assert answer.status_code == 500 and "does not exist" in answer.reason  # not a 400: no validation
    finally:
        handle.run("down", ok=False, extra_env=env)
        handle.kill_everything()


def nothing_left_running(lab):
    lab.run("down")
    assert not lab.processes()
    assert os.path.exists(lab.root / "components" / "proxmox" / "state.json")  # kept for the next `up`


@pytest.fixture(scope="class")
def lab(make_class_lab):
    from turnkey_lab.twins.proxmox import schema

    official_schema(schema.SCHEMA_FILE)  # the twin validates against Proxmox's own API schema
    handle = make_class_lab(NET)
    handle.run("up", "--profile", "fast", "--components", "proxmox,image_factory")
    return handle


@pytest.mark.incremental
class TestProxmoxTwin:
    """One lab, its steps in order (a failed step fails the rest, see tests/conftest.py)."""

    def test_endpoints_and_credentials(self, lab):
        endpoints_and_credentials(lab)

    def test_login_ticket_and_csrf(self, lab):
        login_ticket_and_csrf(lab)

    def test_token_without_privilege_gets_proxmox_403(self, lab):
        token_without_privilege_gets_proxmox_403(lab)

    def test_access_roles_users_tokens_and_acls(self, lab):
        access_roles_users_tokens_and_acls(lab)

    def test_download_url_imports_a_factory_image(self, lab):
        download_url_imports_a_factory_image(lab)

    def test_create_config_and_template(self, lab):
        create_config_and_template(lab)

    def test_eight_linked_clones_race_on_one_storage(self, lab):
        eight_linked_clones_race_on_one_storage(lab)

    def test_lock_timeout_and_vm_lock(self, lab):
        lock_timeout_and_vm_lock(lab)

    def test_start_records_the_network_identity(self, lab):
        start_records_the_network_identity(lab)

    def test_template_in_use_cannot_be_destroyed_but_a_clone_can(self, lab):
        template_in_use_cannot_be_destroyed_but_a_clone_can(lab)

    def test_schema_rejects_are_400_and_recorded(self, lab):
        schema_rejects_are_400_and_recorded(lab)

    def test_http_5xx_burst_then_recovery_and_failing_task(self, lab):
        http_5xx_burst_then_recovery_and_failing_task(lab)

    def test_lost_answer_after_a_clone_and_a_second_agent_address(self, lab):
        lost_answer_after_a_clone_and_a_second_agent_address(lab)

    def test_state_survives_lab_down_and_up(self, lab):
        state_survives_lab_down_and_up(lab)

    def test_no_secret_is_printed_or_logged(self, lab):
        no_secret_is_printed_or_logged(lab)

    def test_nothing_left_running(self, lab):
        nothing_left_running(lab)
