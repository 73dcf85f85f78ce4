# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The options every turnkey.cluster authentik_* module shares (module_utils/authentik.py, connection_args).
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Authentik's address, C(https://auth.example.com) (the API is under C(/api/v3)). Plain C(http) is
        refused unless O(validate_certs=false), because the token would travel in clear.
      - When not given, the environment variable E(AUTHENTIK_URL).
    type: str
    required: true
  token:
    description:
      - An Authentik API token with the rights to manage the objects (the bootstrap token kept in the
        persistent store). A refused token fails with C(Authentik refused the token).
      - When not given, the environment variable E(AUTHENTIK_TOKEN) (keeps the token out of the task's arguments).
    type: str
    required: true
  validate_certs:
    description: Verify Authentik's TLS certificate. Leave it on; off is for throw-away test servers only.
    type: bool
    default: true
  ca_path:
    description: CA bundle that signed Authentik's certificate; the system's trust store when not given.
    type: path
  timeout:
    description: Seconds one request to Authentik may take.
    type: int
    default: 30
  state:
    description: Whether the object exists.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads the object and reports what would be created, changed or deleted; writes nothing.
  diff_mode:
    support: full
    description: Shows the managed fields before and after, references by the names the task gave; secrets as
      C(<hidden>) or C(<hidden, changed>).
requirements:
  - authentik-client (Python library, on the controller; the version of the Authentik release, 2026.5.6)
notes:
  - An unreachable Authentik (C(Authentik unreachable at <url>)) or a refused token fails the task before any
    change; a request Authentik rejects fails with its field errors.
  - Only the options given are managed; an option left out is neither compared nor changed.
"""
