"""PowerDNS Authoritative: Debian's real `pdns_server` (pdns-server) with its sqlite3 backend, twice.

- `pdns` on <net>.0.18: the primary. DNS on port 53 (UDP and TCP), the HTTP API (`/api/v1`) on port 8081,
  zones of kind Master NOTIFY the secondary and it alone may AXFR them. RFC 2136 updates are on, each zone
  deciding who may send them (its metadata; none without), as on a hardened server.
- `pdns-secondary` on <net>.0.19: the secondary (`secondary=yes`). A zone of kind Slave made through its
  API with the primary as master is transferred by AXFR, at once after a NOTIFY or an `axfr-retrieve`.
- Each instance's database is made from the schema the Debian package ships; its API key is generated once
  (0600 file in its folder) and copied into credentials.json (`pdns` / `pdns-secondary`: `api_key`).
- pdns' webserver speaks plain HTTP only, so the lab binds it to its loopback address (a lab choice,
  docs/lab.md); the modules verify TLS by default for a real deployment behind a TLS proxy.
- Port 53 on a loopback address needs root (or CAP_NET_BIND_SERVICE): the lab runs as root here.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import struct
import urllib.error
import urllib.request
from pathlib import Path
from typing import ClassVar

from ..state import LabError, credentials, save_credentials, write_file
from .base import Component, Health

PDNS_SERVER = "/usr/sbin/pdns_server"
SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")
PROBE_TIMEOUT = 2
API_KEY_FILE = "api-key"
PRIMARY_HOST = "0.18"
SECONDARY_HOST = "0.19"


def dns_soa_probe(ip: str, port: int = 53) -> bool:
    """Whether a DNS server answers on UDP (any well-formed reply to a SOA query for the root counts)."""
    query = struct.pack(">HHHHHH", 0x7E57, 0x0000, 1, 0, 0, 0) + b"\x00" + struct.pack(">HH", 6, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(PROBE_TIMEOUT)
        sock.sendto(query, (ip, port))
        reply, _ = sock.recvfrom(4096)
    return len(reply) >= 12 and reply[:2] == b"\x7e\x57" and bool(reply[2] & 0x80)


class PowerDNS(Component):
    """One pdns_server instance; the subclasses say which role it plays."""

    port = 53
    api_port: ClassVar[int] = 8081
    extra_ports = (8081,)
    scheme = "dns"
    startup_timeout = 30.0
    role: ClassVar[str]

    @property
    def api_url(self) -> str:
        return f"http://{self.ip}:{self.api_port}"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "pdns.conf"

    @property
    def database(self) -> Path:
        return self.data_dir / "pdns.sqlite3"

    @property
    def api_key_file(self) -> Path:
        return self.data_dir / API_KEY_FILE

    def api_key(self) -> str:
        try:
            return self.api_key_file.read_text().strip()
        except FileNotFoundError:
            return ""

    def prepare(self) -> None:
        # No certificate: pdns' webserver has no TLS (see the module docstring).
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if not os.access(PDNS_SERVER, os.X_OK) or not SCHEMA.is_file():
            raise LabError(f"{self.name}: {PDNS_SERVER} or {SCHEMA} not found; install Debian's pdns-server "
                           "and pdns-backend-sqlite3 (`make system-packages` does)")
        if os.geteuid() != 0:
            raise LabError(f"{self.name}: DNS on port 53 of {self.ip} needs root; run the lab as root")
        if not self.database.is_file():
            # Built beside and moved in, so a failed start never leaves a half-made database.
            partial = self.data_dir / "pdns.sqlite3.partial"
            partial.unlink(missing_ok=True)
            with sqlite3.connect(partial) as db:
                db.executescript(SCHEMA.read_text())
            db.close()
            partial.chmod(0o600)
            partial.replace(self.database)
        if not self.api_key():
            write_file(self.api_key_file, secrets.token_urlsafe(32) + "\n", 0o600)
        write_file(self.config_file, self._config(), 0o600)

    def role_settings(self) -> list[str]:
        raise NotImplementedError

    def _config(self) -> str:
        lines = [
            f"# Written by the lab (components/pdns.py, {self.role}); rewritten on every `lab up`.",
            "launch=gsqlite3",
            f"gsqlite3-database={self.database}",
            f"local-address={self.ip}",
            f"local-port={self.port}",
            # Outgoing NOTIFYs and AXFRs leave from the instance's own address (what allow-axfr-ips sees).
            f"query-local-address={self.ip}",
            f"socket-dir={self.data_dir}",
            "daemon=no",
            "guardian=no",
            "disable-syslog=yes",
            "log-timestamp=no",
            "loglevel=4",
            "security-poll-suffix=",
            "webserver=yes",
            "api=yes",
            f"api-key={self.api_key()}",
            f"webserver-address={self.ip}",
            f"webserver-port={self.api_port}",
            "webserver-allow-from=127.0.0.0/8",  # the loopback net: connections come from 127.0.0.1
            # The lab's changes show up on the secondary within a second, not a minute.
            "xfr-cycle-interval=1",
            *self.role_settings(),
            "",
        ]
        return "\n".join(lines)

    def command(self) -> list[str]:
        return [PDNS_SERVER, f"--config-dir={self.data_dir}"]

    def _api(self, path: str) -> object:
        request = urllib.request.Request(f"{self.api_url}/api/v1{path}", headers={"X-API-Key": self.api_key()})
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT) as answer:  # noqa: S310 (lab http URL)
            return json.load(answer)

    def health(self) -> Health:
        try:
            server = self._api("/servers/localhost")
            answers = dns_soa_probe(self.ip, self.port)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            return Health(False, f"unreachable ({type(exc).__name__})")
        if not answers:
            return Health(False, "no DNS answer on UDP 53")
        if credentials(self.lab, self.name).get("api_key") != self.api_key():
            # Healthy only once the key is in credentials.json, so `lab up` never returns before it is.
            return Health(False, "API key not yet in credentials.json")
        return Health(True, f"{self.role}, PowerDNS {server.get('version')}, DNS on {self.ip}:53")

    def reconcile(self) -> Health:
        key = self.api_key()
        if key and credentials(self.lab, self.name).get("api_key") != key:
            save_credentials(self.lab, self.name, {"api_key": key})
        return self.health()

    def endpoint(self) -> dict:
        return {**super().endpoint(), "role": self.role, "dns": f"{self.ip}:{self.port}",
                "api_url": self.api_url, "server_id": "localhost"}


class PowerDNSPrimary(PowerDNS):
    name = "pdns"
    host = PRIMARY_HOST
    role = "primary"

    def role_settings(self) -> list[str]:
        secondary = self.lab.ip(SECONDARY_HOST)
        return [
            "primary=yes",
            f"allow-axfr-ips={secondary}/32",
            f"also-notify={secondary}",
            # NOTIFY only the lab's secondary, never whatever addresses a zone's NS records name.
            f"only-notify={secondary}/32",
            # RFC 2136 updates (cert-manager's ACME DNS-01 solver), decided per zone as a hardened server does:
            # with the global allow-list empty, a zone takes updates only from the networks its
            # ALLOW-DNSUPDATE-FROM names, signed with a key its TSIG-ALLOW-DNSUPDATE names. PowerDNS' default
            # (127.0.0.0/8) would take unsigned updates from anything on the lab's loopback net.
            "dnsupdate=yes",
            "allow-dnsupdate-from=",
        ]

    def shell_env(self) -> dict[str, str]:
        # What the pdns_* modules read; the key is read from the 0600 file when the shell evaluates the line.
        return {"PDNS_API_URL": self.quote(self.api_url), "PDNS_API_KEY": self.credential_in_shell("api_key")}


class PowerDNSSecondary(PowerDNS):
    name = "pdns-secondary"
    host = SECONDARY_HOST
    role = "secondary"

    def role_settings(self) -> list[str]:
        primary = self.lab.ip(PRIMARY_HOST)
        return [
            "secondary=yes",
            f"allow-notify-from={primary}/32",
            # A secondary serves what it transferred; it gives zones away to nobody.
            "disable-axfr=yes",
        ]
