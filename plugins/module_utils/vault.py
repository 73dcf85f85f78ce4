# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hvac client of the vault_* modules and action plugins (HashiCorp Vault and OpenBao speak the same API).

Here in module_utils so the modules (which run hvac in the module process) and the action plugins (which
also open the persistent store on the controller) build the client, and explain a failure, the same way:
TLS verified by default, bounded timeouts, and an unreachable, uninitialised or sealed Vault named with
the fix before any change is tried.
"""

from __future__ import annotations

import copy
import json
import os

try:
    import hvac
    import hvac.exceptions
    import requests.exceptions
except ImportError:  # reported by client() with how to install it
    hvac = None

# Options every vault_* module and action plugin takes; the doc fragment turnkey.cluster.vault documents them.
CONNECTION_ARGS = dict(
    url=dict(type="str", required=True),
    ca_path=dict(type="path"),
    validate_certs=dict(type="bool", default=True),
    timeout=dict(type="int", default=30),
)
TOKEN_ARGS = dict(token=dict(type="str", required=True, no_log=True))

FIX_UNREACHABLE = ("check that Vault runs and that vault.address (%s) and vault.ca_path in the spec are right; "
                   "an external Vault must be reachable from the Ansible controller")
FIX_SEALED = ("run role turnkey.cluster.vault_config (it unseals with the keys in the persistent store), or "
              "unseal it by hand: `bao operator unseal` with the threshold of keys")
FIX_UNINITIALISED = "run role turnkey.cluster.vault_config: it initialises Vault once and keeps the keys in the store"


class VaultFailure(Exception):
    """A failure with what happened and the fix, ready for fail_json / an action result."""


def connection_args(with_token=True):
    args = copy.deepcopy(CONNECTION_ARGS)
    if with_token:
        args.update(copy.deepcopy(TOKEN_ARGS))
    return args


def client(params, token=None):
    """An hvac client from the connection options (and a token when one is given)."""
    if hvac is None:
        raise VaultFailure("the Python library 'hvac' is needed on the controller: pip install -r requirements.txt")
    url = params["url"]
    if not url.startswith("https://") and params.get("validate_certs", True):
        raise VaultFailure("Vault address %s is not https: the token and the unseal keys would travel in clear; use "
                           "Vault's TLS listener (validate_certs=false is only for throw-away test servers)" % url)
    verify = params.get("validate_certs", True)
    if verify and params.get("ca_path"):
        if not os.path.isfile(params["ca_path"]):
            raise VaultFailure("vault.ca_path %s does not exist; point it at the CA bundle that signed Vault's "
                               "certificate" % params["ca_path"])
        verify = params["ca_path"]
    return hvac.Client(url=url, token=token, verify=verify, timeout=params.get("timeout") or 30)


def describe(exc, url):
    """One sentence for a failed call, naming what to do; None when it is not a connection or state problem."""
    if hvac is not None and isinstance(exc, requests.exceptions.SSLError):
        return ("Vault at %s: TLS verification failed (%s). Fix: set vault.ca_path to the CA that signed its "
                "certificate" % (url, _short(exc)))
    if hvac is not None and isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return "Vault at %s is unreachable (%s). Fix: %s" % (url, _short(exc), FIX_UNREACHABLE % url)
    if hvac is not None and isinstance(exc, hvac.exceptions.VaultDown):
        return "Vault at %s is sealed. Fix: %s" % (url, FIX_SEALED)
    if hvac is not None and isinstance(exc, hvac.exceptions.VaultNotInitialized):
        return "Vault at %s is not initialised. Fix: %s" % (url, FIX_UNINITIALISED)
    if hvac is not None and isinstance(exc, hvac.exceptions.Forbidden):
        return ("Vault at %s refused the request (permission denied: %s). Fix: the token lacks a capability; the "
                "playbook's policy is in roles/vault_config/templates/playbook-policy.hcl.j2" % (url, _short(exc)))
    return None


def _short(exc):
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def seal_status(vault, url):
    """sys/seal-status (answers uninitialised and sealed too), with a named failure when Vault cannot be reached."""
    try:
        return vault.sys.read_seal_status()
    except Exception as exc:  # noqa: BLE001 - every failure gets its sentence
        raise VaultFailure(describe(exc, url) or "Vault at %s: %s" % (url, _short(exc))) from None


def require_ready(vault, url):
    """Fails before any change when Vault is unreachable, uninitialised or sealed; returns the seal status."""
    status = seal_status(vault, url)
    if not status.get("initialized"):
        raise VaultFailure("Vault at %s is not initialised. Fix: %s" % (url, FIX_UNINITIALISED))
    if status.get("sealed"):
        raise VaultFailure("Vault at %s is sealed. Fix: %s" % (url, FIX_SEALED))
    return status


def call(url, what, function, *args, **kwargs):
    """Runs one hvac call; a failure becomes a VaultFailure naming what was being done and the fix."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every failure gets its sentence
        raise VaultFailure("%s: %s" % (what, describe(exc, url) or _short(exc))) from None


def read_or_none(url, what, function, *args, **kwargs):
    """Like call(), but a 404 (the object does not exist) is None."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        if hvac is not None and isinstance(exc, hvac.exceptions.InvalidPath):
            return None
        raise VaultFailure("%s: %s" % (what, describe(exc, url) or _short(exc))) from None


def run_module(module, work):
    """Connects with the module's token, checks Vault is ready, runs work(vault) and exits with its result."""
    params = module.params
    try:
        vault = client(params, token=params.get("token"))
        require_ready(vault, params["url"])
        result = work(vault)
    except VaultFailure as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


def diff_of(before, after, header):
    return {"before": before, "after": after, "before_header": header, "after_header": header}


def live_fields(data, wanted):
    """The fields of a Vault answer that `wanted` names (lists sorted, a missing list empty), to compare with it."""
    return {key: sorted(data.get(key) or []) if isinstance(value, list) else data.get(key)
            for key, value in wanted.items()}


def json_text(value):
    """A diff side: the value as sorted, indented JSON."""
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def auth_roles_to_write(url, adapter, mount, wanted_roles, before, after):
    """Reads auth/<mount>/role/<name> for each (name, wanted body) and records both sides in before/after as
    'role <name>'; returns the (name, body) pairs that differ (absent roles included)."""
    writes = []
    for name, wanted in wanted_roles:
        answer = read_or_none(url, "reading role %s" % name, adapter.get, "/v1/auth/%s/role/%s" % (mount, name))
        current = live_fields((answer or {}).get("data") or {}, wanted) if answer else None
        before["role " + name], after["role " + name] = current, wanted
        if current != wanted:
            writes.append((name, wanted))
    return writes


def write_auth_roles(url, adapter, mount, writes):
    for name, body in writes:
        call(url, "writing role %s" % name, adapter.post, "/v1/auth/%s/role/%s" % (mount, name), json=body)
