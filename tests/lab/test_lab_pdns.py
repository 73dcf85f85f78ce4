"""The lab's PowerDNS (components `pdns` and `pdns-secondary`): Debian's real pdns_server with the sqlite3
backend. A zone made on the primary through its HTTP API is served on port 53 (UDP and TCP), reaches the
secondary by AXFR, and a change follows by NOTIFY alone; strangers may not AXFR the primary; a wrong API
key gets 401; zones and keys survive `lab down`/`lab up`."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr
import dns.zone
import pytest
import requests

from tests.lab.conftest import wait_for

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

NET = "127.110"
PRIMARY, SECONDARY = f"{NET}.0.18", f"{NET}.0.19"
PDNS_SERVER = "/usr/sbin/pdns_server"
SCHEMA = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql"
ZONE = "lab-dns.test."


def require_pdns() -> None:
    """Debian's pdns-server and pdns-backend-sqlite3, and root for port 53: a skip naming the fix, a failure
    under CI=true (CI installs them: `make system-packages`)."""
    missing = [path for path in (PDNS_SERVER, SCHEMA) if not os.path.exists(path)]
    reason = ""
    if missing:
        reason = f"{', '.join(missing)} missing: `make system-packages` installs pdns-server pdns-backend-sqlite3"
    elif os.geteuid() != 0:
        reason = "the lab's PowerDNS binds port 53 and needs root"
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI must have it", pytrace=False)
        pytest.skip(reason)


@contextlib.contextmanager
def exclusive_net(net: str = NET):
    """The lab's PowerDNS addresses are fixed in the net, so the tests that start it (this one and
    tests/integration/test_pdns_modules.py) take turns, even on two pytest-xdist workers."""
    with open(Path(tempfile.gettempdir()) / f"turnkey-test-net-{net}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class Api:
    """PowerDNS' HTTP API of one lab instance."""

    def __init__(self, url: str, key: str):
        self.url, self.key = f"{url}/api/v1/servers/localhost", key

    def call(self, method: str, path: str, body=None, key: str | None = None) -> requests.Response:
        return requests.request(method, self.url + path, json=body, timeout=10,
                                headers={"X-API-Key": self.key if key is None else key})

    def ok(self, method: str, path: str, body=None):
        answer = self.call(method, path, body)
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else None


def query(server: str, name: str, rtype: str, tcp: bool = False) -> list[str]:
    """The answer's contents (sorted), as a resolver asking this server directly sees them."""
    message = dns.message.make_query(name, rtype)
    answer = (dns.query.tcp if tcp else dns.query.udp)(message, server, timeout=3)
    assert answer.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(answer.rcode())
    return sorted(item.to_text() for rrset in answer.answer for item in rrset)


def update(server: str, zone: str, name: str, text: str, key: tuple[str, str] | None = None,
           source: str | None = None) -> str:
    """An RFC 2136 update replacing name's TXT with text, as cert-manager's DNS-01 solver sends it (over TCP from
    source, signed with key = (name, base64 secret) when given): the answer's rcode, or why no valid answer came
    (an unknown or wrong key gets an unsigned NOTAUTH, which a signer rejects)."""
    keyring = dns.tsigkeyring.from_text({key[0]: key[1]}) if key else None
    message = dns.update.UpdateMessage(zone, keyring=keyring, keyalgorithm=dns.tsig.HMAC_SHA256)
    message.replace(name, 60, "TXT", text)
    try:
        return dns.rcode.to_text(dns.query.tcp(message, server, timeout=5, source=source).rcode())
    except dns.exception.DNSException as exc:
        return f"no valid answer ({type(exc).__name__}: {exc})"


def serial(server: str, zone: str = ZONE) -> int | None:
    try:
        return int(query(server, zone, "SOA")[0].split()[2])
    except (IndexError, AssertionError, dns.exception.DNSException, OSError):
        return None


@pytest.fixture
def pdns_lab(make_lab):
    """An isolated lab running the PowerDNS primary and secondary on NET (one at a time on NET)."""
    require_pdns()
    with exclusive_net():
        lab = make_lab(NET)
        yield lab
        lab.run("down", ok=False)


def test_pdns_primary_secondary(pdns_lab):
    lab = pdns_lab
    lab.run("up", "--components", "pdns,pdns-secondary", "--profile", "fast")
    endpoints = lab.json("endpoints.json")["components"]
    assert endpoints["pdns"]["api_url"] == f"http://{PRIMARY}:8081"
    assert endpoints["pdns-secondary"]["dns"] == f"{SECONDARY}:53"
    creds = lab.json("credentials.json")
    assert stat.S_IMODE((lab.root / "credentials.json").stat().st_mode) == 0o600
    keys = creds["pdns"]["api_key"], creds["pdns-secondary"]["api_key"]
    assert len(set(keys)) == 2 and all(len(key) >= 32 for key in keys)
    for config in ("pdns", "pdns-secondary"):
        assert stat.S_IMODE((lab.root / "components" / config / "pdns.conf").stat().st_mode) == 0o600
    primary = Api(endpoints["pdns"]["api_url"], keys[0])
    secondary = Api(endpoints["pdns-secondary"]["api_url"], keys[1])
    assert primary.ok("GET", "")["daemon_type"] == "authoritative"
    # `lab env` points the pdns_* modules at the primary; the key is read when the shell runs the line.
    env = lab.run("env").stdout
    assert f"export PDNS_API_URL=http://{PRIMARY}:8081" in env and "PDNS_API_KEY=" in env

    # A wrong key: 401 from both, and nothing listed.
    for api in (primary, secondary):
        refused = api.call("GET", "/zones", key="not-the-key")
        assert refused.status_code == 401

    # A zone on the primary through the API, served on port 53 over UDP and TCP.
    primary.ok("POST", "/zones", {"name": ZONE, "kind": "Master", "soa_edit_api": "DEFAULT",
                                  "nameservers": [f"ns1.{ZONE}", f"ns2.{ZONE}"]})
    primary.ok("PATCH", f"/zones/{ZONE}", {"rrsets": [{
        "name": f"api.{ZONE}", "type": "A", "ttl": 300, "changetype": "REPLACE",
        "records": [{"content": "10.2.0.10", "disabled": False}]}]})
    assert query(PRIMARY, f"api.{ZONE}", "A") == ["10.2.0.10"]
    assert query(PRIMARY, f"api.{ZONE}", "A", tcp=True) == ["10.2.0.10"]
    primary_serial = primary.ok("GET", f"/zones/{ZONE}")["serial"]
    assert serial(PRIMARY) == primary_serial

    # Nobody but the secondary may transfer the zone (allow-axfr-ips).
    with pytest.raises(dns.exception.DNSException):
        dns.zone.from_xfr(dns.query.xfr(PRIMARY, ZONE, timeout=5, source="127.0.0.1"))

    # The secondary: a Slave zone made through its API, transferred by AXFR (NOTIFY or its first check).
    assert serial(SECONDARY) is None
    secondary.ok("POST", "/zones", {"name": ZONE, "kind": "Slave", "masters": [PRIMARY]})
    wait_for(lambda: serial(SECONDARY) == primary_serial, timeout=60, interval=0.5)
    assert query(SECONDARY, f"api.{ZONE}", "A") == ["10.2.0.10"]

    # A change on the primary reaches the secondary by NOTIFY alone (nobody asks it to transfer).
    primary.ok("PATCH", f"/zones/{ZONE}", {"rrsets": [{
        "name": f"api.{ZONE}", "type": "A", "ttl": 300, "changetype": "REPLACE",
        "records": [{"content": "10.2.0.11", "disabled": False}]}]})
    new_serial = primary.ok("GET", f"/zones/{ZONE}")["serial"]
    assert new_serial > primary_serial
    wait_for(lambda: query(SECONDARY, f"api.{ZONE}", "A") == ["10.2.0.11"], timeout=60, interval=0.5)
    assert serial(SECONDARY) == new_serial
    log = (lab.root / "logs" / "pdns-secondary.log").read_text()
    assert f"AXFR-in zone: '{ZONE.rstrip('.')}', primary: '{PRIMARY}', zone committed with serial {new_serial}" in log

    # down/up: the same keys, the zones still there (sqlite databases in the components' folders).
    lab.run("down")
    lab.run("up", "--components", "pdns,pdns-secondary", "--profile", "fast")
    again = lab.json("credentials.json")
    assert (again["pdns"]["api_key"], again["pdns-secondary"]["api_key"]) == keys
    assert query(PRIMARY, f"api.{ZONE}", "A") == ["10.2.0.11"]
    assert query(SECONDARY, f"api.{ZONE}", "A") == ["10.2.0.11"]
    assert not any(key in output for output in lab.outputs for key in keys)
