# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The connection options every turnkey.cluster pdns_* module shares (module_utils/pdns.py,
    # connection_args).
    DOCUMENTATION = r"""
options:
  api_url:
    description:
      - The PowerDNS Authoritative server's HTTP API, C(https://dns.example.com:8081) (with or without
        C(/api/v1)). Falls back to E(PDNS_API_URL).
      - Plain C(http://) is refused unless O(validate_certs=false), because the API key would travel
        unprotected; PowerDNS' own webserver speaks plain HTTP only, so bind it to loopback or put a TLS
        proxy in front of it.
    type: str
    required: true
  api_key:
    description:
      - The API key (PowerDNS' C(api-key) setting), from the store (C(dns.api_key)). Falls back to
        E(PDNS_API_KEY).
    type: str
    required: true
  server_id:
    description: The server in the API's C(/servers/<id>) paths; PowerDNS Authoritative has only C(localhost).
    type: str
    default: localhost
  ca_path:
    description: CA bundle that signed the API's TLS certificate; the system's trust store when not given.
      Falls back to E(PDNS_CACERT).
    type: path
  validate_certs:
    description: Verify the API's TLS certificate. Leave it on; off is only for a plain-HTTP API on loopback.
    type: bool
    default: true
  timeout:
    description: Seconds one request to the API may take.
    type: int
    default: 30
notes:
  - A refused API key (HTTP 401/403) fails the task before any change, naming the fix (check
    C(dns.api_key) in the store).
  - PowerDNS' error answers (C(error) in its JSON body) are returned in C(pdns_error) of the failed result,
    with the HTTP C(status).
"""
