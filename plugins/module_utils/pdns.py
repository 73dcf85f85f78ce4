# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared code of the turnkey.cluster pdns_* modules: a small client for the PowerDNS Authoritative HTTP
API v1 (zones, rrsets, NOTIFY, AXFR retrieval) on ansible's open_url, TLS verified by default, PowerDNS'
error bodies turned into readable failures; and the canonical forms rrsets are compared in."""

from __future__ import annotations

import ipaddress
import json

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import quote
from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url


def connection_args():
    """The connection options (doc fragment turnkey.cluster.pdns)."""
    return dict(
        api_url=dict(type="str", required=True, fallback=(env_fallback, ["PDNS_API_URL"])),
        api_key=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["PDNS_API_KEY"])),
        server_id=dict(type="str", default="localhost"),
        ca_path=dict(type="path", fallback=(env_fallback, ["PDNS_CACERT"])),
        validate_certs=dict(type="bool", default=True),
        timeout=dict(type="int", default=30),
    )


def present_or_absent_module(options, required=None, empty_hint=None):
    """The AnsibleModule of a pdns_* module with O(state) present/absent: the connection options, `options`, check
    mode; with state=present the option `required` must be given, and not be empty when `empty_hint` says what to
    give instead."""
    argument_spec = connection_args()
    argument_spec.update(options)
    argument_spec["state"] = dict(type="str", choices=["present", "absent"], default="present")
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("state", "present", [required])] if required else [])
    if empty_hint and module.params["state"] == "present" and not module.params[required]:
        module.fail_json(msg="%s is empty: %s" % (required, empty_hint))
    return module


class PdnsError(Exception):
    """A failed request, with what fail_json should carry."""

    def __init__(self, msg, status=None, pdns_error=None):
        super().__init__(msg)
        self.msg = msg
        self.status = status
        self.pdns_error = pdns_error

    def fail_fields(self):
        return {"msg": self.msg, "status": self.status, "pdns_error": self.pdns_error}


def canonical_name(name, zone=None):
    """A fully qualified, lower-case name with its trailing dot. Relative to `zone` when given and the
    name neither ends with a dot nor with the zone: "www" -> "www.example.com.", "@" -> the zone."""
    name = (name or "").strip().lower()
    if zone is None:
        return name if name.endswith(".") else name + "."
    zone = canonical_name(zone)
    if name in ("@", ""):
        return zone
    if name.endswith("."):
        return name
    if name + "." == zone or (name + ".").endswith("." + zone):
        return name + "."
    return "%s.%s" % (name, zone)


# Types whose content is (or ends with) a domain name, and which field of the content that is.
_NAME_FIELDS = {"CNAME": (0,), "NS": (0,), "PTR": (0,), "DNAME": (0,), "MX": (1,), "SRV": (3,),
                "SOA": (0, 1)}


def canonical_content(rtype, content):
    """Record content in the form PowerDNS stores: names fully qualified, AAAA compressed, TXT quoted."""
    content = str(content).strip()
    rtype = rtype.upper()
    if rtype == "AAAA":
        try:
            return str(ipaddress.IPv6Address(content))
        except ValueError:
            return content
    if rtype in ("TXT", "SPF") and not content.startswith('"'):
        return '"%s"' % content.replace("\\", "\\\\").replace('"', '\\"')
    if rtype in _NAME_FIELDS:
        fields = content.split()
        for index in _NAME_FIELDS[rtype]:
            if index < len(fields):
                fields[index] = canonical_name(fields[index])
        return " ".join(fields)
    return content


def soa_without_serial(content):
    """SOA content compared without its serial, which SOA-EDIT-API moves on every change."""
    fields = content.split()
    return " ".join(fields[:2] + fields[3:]) if len(fields) == 7 else content


class PdnsClient:
    """The PowerDNS API of one server (O(api_url), O(server_id))."""

    def __init__(self, params, url=None, api_key=None):
        self.url = (url or params["api_url"]).rstrip("/")
        if self.url.endswith("/api/v1"):
            self.url = self.url[:-len("/api/v1")]
        self.api_key = api_key or params["api_key"]
        self.server_id = params.get("server_id") or "localhost"
        self.ca_path = params.get("ca_path")
        self.validate_certs = params.get("validate_certs", True)
        self.timeout = params.get("timeout") or 30
        if not self.url.startswith(("https://", "http://")):
            raise PdnsError("api_url %s must start with https:// (or http:// with validate_certs=false)" % self.url)
        if self.url.startswith("http://") and self.validate_certs:
            raise PdnsError("api_url %s is plain HTTP, so the API key would travel unprotected: use https:// "
                            "(a TLS proxy in front of PowerDNS' webserver), or set validate_certs=false for a "
                            "webserver bound to loopback" % self.url)

    # -- transport --------------------------------------------------------------------------------
    def request(self, method, path, body=None, missing_ok=False):
        """The decoded JSON answer (None for 204, or for 404 with missing_ok)."""
        url = "%s/api/v1/servers/%s%s" % (self.url, quote(self.server_id, safe=""), path)
        headers = {"X-API-Key": self.api_key, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            answer = open_url(url, method=method, data=data, headers=headers, timeout=self.timeout,
                              validate_certs=self.validate_certs, ca_path=self.ca_path,
                              follow_redirects="none")
            text = answer.read()
        except HTTPError as exc:
            if exc.code == 404 and missing_ok:
                return None
            raise self._http_error(method, url, exc) from None
        except URLError as exc:
            raise PdnsError("PowerDNS API at %s unreachable: %s" % (self.url, exc.reason)) from None
        except (UrlsConnectionError, OSError, ValueError) as exc:  # TLS failures, resets, timeouts
            raise PdnsError("PowerDNS API at %s unreachable: %s" % (self.url, exc)) from None
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise PdnsError("%s %s: PowerDNS answered with something that is not JSON: %r"
                            % (method, url, text[:200])) from None

    def _http_error(self, method, url, exc):
        try:
            raw = exc.read()
        except Exception:  # pylint: disable=broad-except
            raw = b""
        error = None
        try:
            error = json.loads(raw).get("error")
        except (ValueError, AttributeError):
            error = raw.decode("utf-8", "replace").strip()[:300] or None
        if exc.code in (401, 403):
            return PdnsError("PowerDNS refused the API key (HTTP %s from %s): check dns.api_key in the store "
                             "and the api-key setting of the PowerDNS server" % (exc.code, self.url),
                             status=exc.code, pdns_error=error)
        return PdnsError("%s %s failed (HTTP %s): %s" % (method, url, exc.code, error or exc.reason),
                         status=exc.code, pdns_error=error)

    # -- zones ------------------------------------------------------------------------------------
    @staticmethod
    def zone_path(zone):
        return "/zones/%s" % quote(canonical_name(zone), safe=".")

    def server(self):
        return self.request("GET", "")

    def zone(self, zone):
        """The zone with its rrsets, or None."""
        return self.request("GET", self.zone_path(zone), missing_ok=True)

    def create_zone(self, body):
        return self.request("POST", "/zones", body)

    def update_zone(self, zone, body):
        return self.request("PUT", self.zone_path(zone), body)

    def delete_zone(self, zone):
        return self.request("DELETE", self.zone_path(zone))

    def patch_rrsets(self, zone, rrsets):
        return self.request("PATCH", self.zone_path(zone), {"rrsets": rrsets})

    def notify(self, zone):
        return self.request("PUT", self.zone_path(zone) + "/notify")

    def axfr_retrieve(self, zone):
        return self.request("PUT", self.zone_path(zone) + "/axfr-retrieve")

    # -- zone metadata ----------------------------------------------------------------------------
    def metadata_path(self, zone, kind):
        return "%s/metadata/%s" % (self.zone_path(zone), quote(kind, safe=""))

    def metadata(self, zone, kind):
        """The zone's values of one metadata kind ([] when unset), or None when the zone does not exist."""
        answer = self.request("GET", self.metadata_path(zone, kind), missing_ok=True)
        return None if answer is None else list(answer.get("metadata") or [])

    def set_metadata(self, zone, kind, values):
        return self.request("PUT", self.metadata_path(zone, kind), {"metadata": list(values)})

    def delete_metadata(self, zone, kind):
        return self.request("DELETE", self.metadata_path(zone, kind))

    # -- TSIG keys --------------------------------------------------------------------------------
    @staticmethod
    def tsigkey_path(name):
        # PowerDNS' id of a key is its name with a trailing dot.
        return "/tsigkeys/%s" % quote(canonical_name(name), safe=".")

    def tsigkey(self, name):
        """The key with its secret (name, algorithm, key), or None."""
        return self.request("GET", self.tsigkey_path(name), missing_ok=True)

    def create_tsigkey(self, name, algorithm, key):
        return self.request("POST", "/tsigkeys", {"name": name, "algorithm": algorithm, "key": key})

    def update_tsigkey(self, name, algorithm, key):
        return self.request("PUT", self.tsigkey_path(name), {"name": name, "algorithm": algorithm, "key": key})

    def delete_tsigkey(self, name):
        return self.request("DELETE", self.tsigkey_path(name))


def find_rrset(zone_data, name, rtype):
    """The zone's rrset for (name, type), or None."""
    for rrset in (zone_data or {}).get("rrsets") or []:
        if rrset.get("name", "").lower() == name and rrset.get("type", "").upper() == rtype:
            return rrset
    return None


def rrset_view(rrset):
    """What the modules compare and show in a diff: ttl and the sorted contents (disabled ones marked)."""
    if rrset is None:
        return None
    records = sorted(r["content"] + (" (disabled)" if r.get("disabled") else "") for r in rrset.get("records") or [])
    return {"name": rrset["name"], "type": rrset["type"], "ttl": rrset.get("ttl"), "records": records}


def action_of(before, after):
    """create, update, delete or none: what turns `before` into `after` (None: absent)."""
    if after == before:
        return "none"
    if after is None:
        return "delete"
    return "create" if before is None else "update"


def diff_of(before, after, header):
    """A --diff entry (dicts, which Ansible shows as JSON); {} stands for absent."""
    return {"before": before or {}, "after": after or {}, "before_header": header, "after_header": header}


def run(module, work):
    """Calls work(module) and exits with its result; a PdnsError fails the task with its fields."""
    try:
        result = work(module)
    except PdnsError as exc:
        module.fail_json(**exc.fail_fields())
    module.exit_json(**result)
