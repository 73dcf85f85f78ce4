"""The Hetzner Cloud API twin: `/v1` servers, images, networks, firewalls, placement groups, actions.

Built on `twins.base.Twin`; docs/lab-hetzner.md describes what it simulates and how.
"""

# The API token the twin makes on first start (0600, in its data dir); the component copies it to credentials.json.
TOKEN_FILE = "api-token"
