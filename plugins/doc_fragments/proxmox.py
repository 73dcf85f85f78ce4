# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The connection options every turnkey.cluster Proxmox VE module shares.
    DOCUMENTATION = r"""
options:
  api_url:
    description:
      - The Proxmox VE API, C(https://host:port) (port 8006 when left out); a path after it is ignored.
      - If not set, the environment variable E(PROXMOX_URL) is used.
    type: str
    required: true
  api_token_id:
    description:
      - API token id, C(user@realm!name). Used with O(api_token_secret); preferred over a password.
      - If not set, the environment variable E(PROXMOX_TOKEN_ID) is used.
    type: str
  api_token_secret:
    description:
      - The secret of O(api_token_id).
      - If not set, the environment variable E(PROXMOX_TOKEN_SECRET) is used.
    type: str
  api_user:
    description:
      - User for ticket (password) authentication, C(user@realm), when no token is given.
      - If not set, the environment variable E(PROXMOX_USER) is used.
    type: str
  api_password:
    description:
      - Password of O(api_user).
      - If not set, the environment variable E(PROXMOX_PASSWORD) is used.
    type: str
  validate_certs:
    description:
      - Verify the API's TLS certificate. Only turn this off for a throw-away test host.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the API's certificate (a private CA, the lab's CA).
      - If not set, the environment variable E(PROXMOX_CACERT) is used.
    type: path
  node:
    description:
      - The Proxmox VE node (host) to work on.
    type: str
    default: pve
  api_timeout:
    description:
      - Seconds one HTTP request may take.
    type: int
    default: 30
  api_retries:
    description:
      - How many times a request, or a task, is tried again after a transient failure (a lock timeout
        C(can't lock file ... - got timeout), HTTP 502/503/504, a connection error), with exponential
        backoff from 0.5 s up to 8 s.
    type: int
    default: 5
notes:
  - Needs the Python library C(proxmoxer) (and C(requests)) on the host that runs the module, normally
    the controller (C(delegate_to=localhost) or C(ansible_connection=local)).
  - Failures carry Proxmox's own error text in C(proxmox_error), the HTTP status in
    C(status) and, for a failed task, the task log in C(task_log).
requirements:
  - proxmoxer >= 2.0
  - requests
"""
