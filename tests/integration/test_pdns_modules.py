"""The PowerDNS modules (pdns_zone, pdns_rrset, pdns_wait_transfer, pdns_tsigkey, pdns_zone_metadata) and the
dns_zone role, through the real ansible-playbook against the lab's real PowerDNS primary and secondary (net 127.110,
its own state folder, brought down in the finalizer). The primary's key reaches the modules through PDNS_API_KEY,
never argv. One test made of steps, in order: each step starts from what the previous one left."""

from __future__ import annotations

import secrets
import time

import pytest
import requests
import yaml

from tests.lab import test_lab_pdns
from tests.lab.test_lab_pdns import PRIMARY, SECONDARY, query, serial, update
from tests.playbook_runner import local_inventory, run_playbook, task_results
from tests.tls_front import tls_front

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]
# The lab test's fixture: the lab's PowerDNS primary and secondary on its net, one test at a time there.
pdns_lab = test_lab_pdns.pdns_lab

ZONE = "cluster.lab-dns.test."
PRIMARY_API = f"http://{PRIMARY}:8081"
SECONDARY_API = f"http://{SECONDARY}:8081"
# The lab's API is plain HTTP on loopback (pdns' webserver has no TLS), which the modules refuse unless told.
CONNECTION = {"validate_certs": False}


class Lab:
    def __init__(self, handle, tmp):
        self.handle, self.tmp = handle, tmp
        creds = handle.json("credentials.json")
        self.key, self.secondary_key = creds["pdns"]["api_key"], creds["pdns-secondary"]["api_key"]
        self.env = {"PDNS_API_URL": PRIMARY_API, "PDNS_API_KEY": self.key, "TURNKEY_STATE_DIR": str(tmp / "state")}
        self.inventory = local_inventory(tmp / "hosts.yml")
        self.runs = 0

    def play(self, tasks, *, check=False, diff=False, env=None):
        """Runs the tasks on localhost; returns (returncode, [(task, result)], stdout)."""
        self.runs += 1
        playbook = self.tmp / f"play{self.runs}.yml"
        playbook.write_text(yaml.safe_dump([{"name": "dns", "hosts": "localhost", "gather_facts": False,
                                             "tasks": tasks}], sort_keys=False))
        flags = ["-i", str(self.inventory), *(["--check"] if check else []), *(["--diff"] if diff else [])]
        run = run_playbook(*flags, playbook=str(playbook), env={**self.env, **(env or {})}, json_output=True,
                           timeout=300)
        assert self.key not in run.stdout + run.stderr and self.secondary_key not in run.stdout + run.stderr
        return run.returncode, [(task, result) for task, _host, result in task_results(run.stdout)], run.stdout

    def api(self, path=""):
        answer = requests.get(f"{PRIMARY_API}/api/v1/servers/localhost{path}", headers={"X-API-Key": self.key},
                              timeout=10)
        return answer.json() if answer.status_code == 200 else None

    def rrsets(self, zone=ZONE):
        """{(name, type): (ttl, sorted contents)} of the primary's zone, SOA left out (its serial moves)."""
        data = self.api(f"/zones/{zone}")
        return {(r["name"], r["type"]): (r["ttl"], sorted(x["content"] for x in r["records"]))
                for r in data["rrsets"] if r["type"] != "SOA"}


def zone_task(**options):
    return {"name": "zone", "turnkey.cluster.pdns_zone": {**CONNECTION, **options}}


def rrset_task(name, rtype, records=None, **options):
    args = {**CONNECTION, "zone": ZONE.rstrip("."), "name": name, "type": rtype, **options}
    if records is not None:
        args["records"] = records
    return {"name": f"{name} {rtype}", "turnkey.cluster.pdns_rrset": args}


RECORDS = [
    rrset_task("api", "A", ["10.2.0.11", "10.2.0.10"], ttl=300),
    rrset_task("*.apps", "A", ["10.2.0.20"]),
    rrset_task("grafana.apps.cluster.lab-dns.test", "CNAME", ["ingress.cluster.lab-dns.test"]),
    rrset_task("@", "TXT", ["v=spf1 -all"]),
    rrset_task("@", "MX", ["10 mail.cluster.lab-dns.test"]),
    rrset_task("ipv6", "AAAA", ["2001:DB8:0:0::1"]),
]
ZONE_TASK = zone_task(name=ZONE.rstrip("."), kind="Master",
                      nameservers=["ns1.cluster.lab-dns.test", "ns2.cluster.lab-dns.test"])


def create_and_rerun(lab: Lab):
    code, results, out = lab.play([ZONE_TASK, *RECORDS])
    assert code == 0, out
    assert [r["operation"] for _t, r in results] == ["create"] * (1 + len(RECORDS))
    assert results[0][1]["zone"]["kind"] == "Master"
    assert results[0][1]["zone"]["nameservers"] == ["ns1.cluster.lab-dns.test.", "ns2.cluster.lab-dns.test."]
    # Canonical forms written for the user: relative names, trailing dots, TXT quotes, AAAA compressed.
    assert query(PRIMARY, f"api.{ZONE}", "A") == ["10.2.0.10", "10.2.0.11"]
    assert query(PRIMARY, f"x.apps.{ZONE}", "A") == ["10.2.0.20"]
    assert query(PRIMARY, f"grafana.apps.{ZONE}", "CNAME") == [f"ingress.{ZONE}"]
    assert query(PRIMARY, ZONE, "TXT") == ['"v=spf1 -all"']
    assert query(PRIMARY, ZONE, "MX") == [f"10 mail.{ZONE}"]
    assert query(PRIMARY, f"ipv6.{ZONE}", "AAAA") == ["2001:db8::1"]
    # The same tasks again: nothing to do.
    code, results, out = lab.play([ZONE_TASK, *RECORDS])
    assert code == 0, out
    assert not any(r["changed"] for _t, r in results), out
    assert {r["operation"] for _t, r in results} == {"none"}


def check_mode_changes_nothing(lab: Lab):
    before, soa = lab.rrsets(), serial(PRIMARY, ZONE)
    changed = rrset_task("api", "A", ["10.2.0.12"], ttl=300)
    code, results, out = lab.play([ZONE_TASK, changed, rrset_task("*.apps", "A", state="absent")],
                                  check=True, diff=True)
    assert code == 0, out
    (_z, zone), (_a, api), (_w, wildcard) = results
    assert not zone["changed"]
    assert api["changed"] and api["operation"] == "update"
    assert api["diff"]["before"]["records"] == ["10.2.0.10", "10.2.0.11"]
    assert api["diff"]["after"]["records"] == ["10.2.0.12"]
    assert wildcard["changed"] and wildcard["operation"] == "delete" and wildcard["diff"]["after"] == {}
    assert lab.rrsets() == before and serial(PRIMARY, ZONE) == soa


def one_change_shows_only_that_rrset(lab: Lab):
    before = lab.rrsets()
    changed = rrset_task("api", "A", ["10.2.0.12"], ttl=300)
    code, results, out = lab.play([ZONE_TASK, *RECORDS[1:], changed], diff=True)
    assert code == 0, out
    assert [t for t, r in results if r["changed"]] == ["api A"]
    api = results[-1][1]
    assert api["diff"]["before"] == {"name": f"api.{ZONE}", "type": "A", "ttl": 300,
                                     "records": ["10.2.0.10", "10.2.0.11"]}
    assert api["diff"]["after"]["records"] == ["10.2.0.12"]
    assert "10.2.0.12" in out and "-{}" not in out
    after = lab.rrsets()
    assert after.pop((f"api.{ZONE}", "A")) == (300, ["10.2.0.12"])
    before.pop((f"api.{ZONE}", "A"))
    assert after == before
    assert query(PRIMARY, f"api.{ZONE}", "A") == ["10.2.0.12"]


def wrong_key_is_named(lab: Lab):
    before = lab.rrsets()
    code, results, out = lab.play([rrset_task("api", "A", ["10.9.9.9"])], env={"PDNS_API_KEY": "wrong-key"})
    assert code != 0
    (_t, result), = results
    assert result["failed"] and result["status"] == 401
    assert "PowerDNS refused the API key" in result["msg"] and "check dns.api_key in the store" in result["msg"]
    assert lab.rrsets() == before
    # Plain HTTP with certificate checks on (the default) is refused before any request, naming why.
    code, results, out = lab.play([{"name": "http", "turnkey.cluster.pdns_zone": {"name": ZONE}}])
    (_t, result), = results
    assert code != 0 and "plain HTTP" in result["msg"] and "validate_certs=false" in result["msg"]
    # A record for a zone that does not exist: named, with the module that makes it.
    code, results, out = lab.play([rrset_task("x", "A", ["10.0.0.1"], zone="missing.test")])
    (_t, result), = results
    assert code != 0 and "zone missing.test. does not exist" in result["msg"] and "pdns_zone" in result["msg"]


def absent_removes(lab: Lab):
    code, results, out = lab.play([rrset_task("ipv6", "AAAA", state="absent")])
    assert code == 0 and results[0][1]["changed"], out
    assert (f"ipv6.{ZONE}", "AAAA") not in lab.rrsets()
    code, results, out = lab.play([rrset_task("ipv6", "AAAA", state="absent")])
    assert code == 0 and not results[0][1]["changed"], out


ROLE_ZONE = "role.lab-dns.test"


def zone_role_vars(lab: Lab, apps_address: str) -> dict:
    """Role dns_zone's variables for ROLE_ZONE on the lab's primary and secondary."""
    return {
        "dns_zone_name": ROLE_ZONE, "dns_zone_api_url": PRIMARY_API, "dns_zone_api_key": lab.key,
        "dns_zone_validate_certs": False,
        "dns_zone_secondary_api_url": SECONDARY_API, "dns_zone_secondary_api_key": lab.secondary_key,
        "dns_zone_secondary_validate_certs": False, "dns_zone_secondary_masters": [PRIMARY],
        "dns_zone_nameservers": [{"name": f"ns1.{ROLE_ZONE}", "address": PRIMARY},
                                 {"name": f"ns2.{ROLE_ZONE}", "address": SECONDARY},
                                 {"name": "ns.elsewhere.test."}],
        "dns_zone_records": [{"name": "api", "type": "A", "content": "10.2.0.10", "ttl": 300},
                             {"name": "api", "type": "A", "content": "10.2.0.11"},
                             {"name": "*.apps", "type": "A", "content": apps_address},
                             {"name": "@", "type": "TXT", "content": ["one", "two"]}],
    }


def role_with_secondary(lab: Lab):
    role_zone = ROLE_ZONE
    role_vars = zone_role_vars(lab, "10.2.0.20")
    task = role_task(role_vars)
    fqdn = role_zone + "."
    # Check mode on a zone that does not exist yet: every step says it would create, nothing is made.
    code, results, out = lab.play([task], check=True, diff=True)
    assert code == 0, out
    assert lab.api(f"/zones/{fqdn}") is None
    records = [item for t, r in results if t.endswith("Ensure the glue and every record") for item in r["results"]]
    assert len(records) == 5 and all(item["operation"] == "create" for item in records)
    code, results, out = lab.play([task])
    assert code == 0, out
    for server in (PRIMARY, SECONDARY):
        assert query(server, f"api.{fqdn}", "A") == ["10.2.0.10", "10.2.0.11"]
        assert query(server, f"ns2.{fqdn}", "A") == [SECONDARY]  # glue
        assert query(server, fqdn, "NS") == ["ns.elsewhere.test.", f"ns1.{fqdn}", f"ns2.{fqdn}"]
        assert query(server, fqdn, "SOA")[0].startswith(f"ns1.{fqdn} hostmaster.{fqdn} ")
        assert query(server, fqdn, "TXT") == ['"one"', '"two"']
    assert serial(SECONDARY, fqdn) == serial(PRIMARY, fqdn)
    waited = [r for t, r in results if t.endswith("Wait until the secondary serves the primary's serial")]
    assert waited and waited[0]["in_sync"] and not waited[0]["changed"]
    assert waited[0]["secondary_serial"] == waited[0]["primary_serial"] == serial(PRIMARY, fqdn)
    # Rerun and check mode: nothing to do.
    for check in (False, True):
        code, results, out = lab.play([task], check=check, diff=check)
        assert code == 0, out
        assert [t for t, r in results if r.get("changed")] == [], out
    # One record changes: only its rrset, and the secondary follows.
    role_vars["dns_zone_records"][2]["content"] = "10.2.0.21"
    code, results, out = lab.play([task])
    assert code == 0, out
    changed = [item["item"]["name"] for t, r in results for item in r.get("results", []) if item.get("changed")]
    assert changed == ["*.apps"]
    assert [t.split(" : ")[-1] for t, r in results if r.get("changed")] == ["Ensure the glue and every record"]
    assert query(SECONDARY, f"x.apps.{fqdn}", "A") == ["10.2.0.21"]
    assert serial(SECONDARY, fqdn) == serial(PRIMARY, fqdn)


def role_task(role_vars):
    return {"name": "zone", "ansible.builtin.include_role": {"name": "turnkey.cluster.dns_zone"}, "vars": role_vars}


def wait_for_answer(server, name, rtype, wanted, timeout=15.0):
    """The server's answer once it is wanted, else the last one (the secondary follows by NOTIFY and AXFR)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = query(server, name, rtype)
        except AssertionError as exc:  # NXDOMAIN until the transfer
            answer = str(exc).splitlines()[0]
        if answer == wanted or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def updates_only_with_the_zones_key(lab: Lab):
    """RFC 2136 updates, as cert-manager's ACME DNS-01 solver sends them: the role makes the TSIG key and lets
    only its holders update the zone, from the networks it names; the secondary follows each update."""
    zone = ROLE_ZONE + "."
    challenge = f"_acme-challenge.{zone}"
    secret = secrets.token_hex(32)  # 64 letters and digits, as the store's tokens: valid base64
    key = ("acme-dns01", secret)
    # A hardened server (the lab's primary is one) takes no update the zone does not allow, signed or not.
    assert update(PRIMARY, zone, challenge, "before", key) != "NOERROR"
    assert update(PRIMARY, zone, challenge, "before") == "REFUSED"
    # The zone as role_with_secondary left it, now with the update key.
    role_vars = {**zone_role_vars(lab, "10.2.0.21"),
                 "dns_zone_update_keys": [{"name": "acme-dns01", "secret": secret}],
                 "dns_zone_update_from": ["127.0.0.0/8"]}
    # Check mode: the key and the permissions would be made; nothing is.
    code, results, out = lab.play([role_task(role_vars)], check=True, diff=True)
    assert code == 0 and secret not in out, out
    made = {item.get("kind", item.get("name")): item["operation"] for t, r in results for item in r.get("results", [])
            if "kind" in item or t.endswith("Ensure the TSIG keys that may update the zone")}
    assert made == {"acme-dns01": "create", "TSIG-ALLOW-DNSUPDATE": "create", "ALLOW-DNSUPDATE-FROM": "create",
                    "NOTIFY-DNSUPDATE": "create"}, out
    assert lab.api("/tsigkeys/acme-dns01.") is None
    assert update(PRIMARY, zone, challenge, "still-not", key) != "NOERROR"
    code, results, out = lab.play([role_task(role_vars)], diff=True)
    assert code == 0 and secret not in out, out
    assert lab.api(f"/zones/{zone}/metadata/TSIG-ALLOW-DNSUPDATE")["metadata"] == ["acme-dns01"]
    # Signed with the key: taken, served by the primary, and by the secondary after the NOTIFY the update sends.
    assert update(PRIMARY, zone, challenge, "token-1", key) == "NOERROR"
    assert query(PRIMARY, challenge, "TXT") == ['"token-1"']
    assert wait_for_answer(SECONDARY, challenge, "TXT", ['"token-1"']) == ['"token-1"']
    assert serial(SECONDARY, zone) == serial(PRIMARY, zone)
    # Unsigned, or signed with another secret: refused, nothing changes.
    assert update(PRIMARY, zone, challenge, "forged") == "REFUSED"
    assert update(PRIMARY, zone, challenge, "forged", ("acme-dns01", secrets.token_hex(32))) != "NOERROR"
    assert query(PRIMARY, challenge, "TXT") == ['"token-1"']
    # Rerun and check mode: nothing to do (the secret compared with the server's, never shown).
    for check in (False, True):
        code, results, out = lab.play([role_task(role_vars)], check=check, diff=check)
        assert code == 0 and secret not in out, out
        assert [t for t, r in results if r.get("changed")] == [], out
    # A new secret replaces the server's: only the key's task changes, and the old secret is refused.
    rotated = secrets.token_hex(32)
    role_vars["dns_zone_update_keys"] = [{"name": "acme-dns01", "secret": rotated}]
    code, results, out = lab.play([role_task(role_vars)], diff=True)
    assert code == 0 and rotated not in out and secret not in out, out
    assert [t.split(" : ")[-1] for t, r in results if r.get("changed")] == [
        "Ensure the TSIG keys that may update the zone"], out
    assert "(replaced)" in out
    assert update(PRIMARY, zone, challenge, "old-key", key) != "NOERROR"
    assert update(PRIMARY, zone, challenge, "token-2", ("acme-dns01", rotated)) == "NOERROR"
    # No keys: the zone takes no updates again.
    role_vars["dns_zone_update_keys"] = []
    code, results, out = lab.play([role_task(role_vars)])
    assert code == 0, out
    assert lab.api(f"/zones/{zone}/metadata/TSIG-ALLOW-DNSUPDATE")["metadata"] == []
    assert update(PRIMARY, zone, challenge, "after", ("acme-dns01", rotated)) == "REFUSED"
    assert query(PRIMARY, challenge, "TXT") == ['"token-2"']


def tls_proxy(lab: Lab, port: int = 8443):
    """PowerDNS behind a TLS proxy, as a real deployment runs it: HTTPS on <primary>:8443 with a certificate
    from the lab's CA, each request passed to the primary's plain-HTTP API."""
    from turnkey_lab import pki  # noqa: PLC0415
    from turnkey_lab.state import Lab as LabState  # noqa: PLC0415

    cert, key = pki.ensure_server_cert(LabState.at(lab.handle.root, lab.handle.net), "pdns-tls-proxy", PRIMARY)
    return tls_front(PRIMARY, port, cert, key, PRIMARY_API)


def tls_verified(lab: Lab):
    ca = str(lab.handle.root / "pki" / "ca.pem")
    with tls_proxy(lab) as url:
        task = {"name": "tls", "turnkey.cluster.pdns_zone": {"api_url": url, "name": ZONE, "kind": "Master"}}
        # The certificate checked against the given CA (validate_certs stays at its default, true).
        code, results, out = lab.play([{**task, "turnkey.cluster.pdns_zone": {
            **task["turnkey.cluster.pdns_zone"], "ca_path": ca}}])
        assert code == 0 and results[0][1]["operation"] == "none", out
        # Without the CA, the lab's certificate is not trusted: refused, named, nothing sent.
        code, results, out = lab.play([task])
        (_t, result), = results
        assert code != 0 and "unreachable" in result["msg"] and "CERTIFICATE_VERIFY_FAILED" in result["msg"], out


def zone_absent(lab: Lab):
    code, results, out = lab.play([zone_task(name=ZONE, state="absent")], check=True, diff=True)
    assert code == 0 and results[0][1]["operation"] == "delete" and lab.api(f"/zones/{ZONE}"), out
    code, results, out = lab.play([zone_task(name=ZONE, state="absent")])
    assert code == 0 and results[0][1]["changed"] and lab.api(f"/zones/{ZONE}") is None, out
    code, results, out = lab.play([zone_task(name=ZONE, state="absent")])
    assert code == 0 and not results[0][1]["changed"], out


def test_pdns_modules(pdns_lab, tmp_path):
    pdns_lab.run("up", "--components", "pdns,pdns-secondary", "--profile", "fast")
    lab = Lab(pdns_lab, tmp_path)
    create_and_rerun(lab)
    check_mode_changes_nothing(lab)
    one_change_shows_only_that_rrset(lab)
    wrong_key_is_named(lab)
    absent_removes(lab)
    role_with_secondary(lab)
    updates_only_with_the_zones_key(lab)
    tls_verified(lab)
    zone_absent(lab)
