"""The Authentik twin: `/api/v3/` of release 2026.5.6 (validated against its OpenAPI document when found)
and OpenID Connect per OAuth2 provider under `/application/o/`. docs/lab.md describes what it guesses.
"""

# The bootstrap token, akadmin's password and the install id, made on first start (0600, in the data dir);
# the component copies the token and password to credentials.json.
BOOTSTRAP_FILE = "bootstrap.json"
