# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The connection options every turnkey.cluster Hetzner Cloud module shares (module_utils/hcloud.py,
    # hcloud_argument_spec()).
    DOCUMENTATION = r"""
options:
  api_token:
    description:
      - The Hetzner Cloud API token. Taken from the environment variable C(HCLOUD_TOKEN) when not given.
    type: str
    required: true
  api_endpoint:
    description:
      - The API endpoint. Taken from the environment variable C(HCLOUD_ENDPOINT) when not given.
    type: str
    default: https://api.hetzner.cloud/v1
  ca_path:
    description:
      - CA bundle to verify the endpoint with. Taken from C(REQUESTS_CA_BUNDLE) when not given (the variable
        C(requests) itself reads); when given it wins over that variable.
    type: path
  rate_limit_wait:
    description:
      - Seconds one request may spend waiting out C(429 rate_limit_exceeded) answers (pauses follow
        C(RateLimit-Reset), with exponential backoff) before it fails.
    type: int
    default: 300
requirements:
  - hcloud >= 2.0 (Python library)
  - requests
"""
