"""Proxmox VE authentication and privileges: tickets + CSRF tokens, API tokens, ACLs, roles.

Passwords and token secrets are kept only as salted hashes in the twin's state; the cleartext exists in
the lab's credentials.json (written by the component) and in the caller's hands.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from urllib.parse import unquote

from ..base import HttpError, Request

TICKET_LIFETIME = 7200  # Proxmox tickets are valid for 2 hours

ALL_PRIVILEGES = [
    "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
    "Group.Allocate", "Mapping.Audit", "Mapping.Modify", "Mapping.Use", "Permissions.Modify", "Pool.Allocate",
    "Pool.Audit", "Realm.Allocate", "Realm.AllocateUser", "SDN.Allocate", "SDN.Audit", "SDN.Use",
    "Sys.AccessNetwork", "Sys.Audit", "Sys.Console", "Sys.Incoming", "Sys.Modify", "Sys.PowerMgmt", "Sys.Syslog",
    "User.Modify", "VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone", "VM.Config.CDROM", "VM.Config.CPU",
    "VM.Config.Cloudinit", "VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network",
    "VM.Config.Options", "VM.Console", "VM.GuestAgent.Audit", "VM.GuestAgent.FileRead",
    "VM.GuestAgent.FileSystemMgmt", "VM.GuestAgent.FileWrite", "VM.GuestAgent.Unrestricted", "VM.Migrate",
    "VM.PowerMgmt", "VM.Replicate", "VM.Snapshot", "VM.Snapshot.Rollback",
]

BUILTIN_ROLES = {
    "Administrator": ALL_PRIVILEGES,
    "NoAccess": [],
    "PVEAuditor": ["Datastore.Audit", "Mapping.Audit", "Pool.Audit", "SDN.Audit", "Sys.Audit", "VM.Audit",
                   "VM.GuestAgent.Audit"],
    "PVEVMUser": ["VM.Audit", "VM.Backup", "VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console",
                  "VM.GuestAgent.Audit", "VM.PowerMgmt"],
    "PVEVMAdmin": [p for p in ALL_PRIVILEGES if p.startswith("VM.")] + ["Datastore.AllocateSpace",
                                                                          "Datastore.Audit", "SDN.Use"],
    "PVEDatastoreUser": ["Datastore.AllocateSpace", "Datastore.Audit"],
}


def hash_secret(secret: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(8)
    return f"{salt}${hashlib.sha256((salt + secret).encode()).hexdigest()}"


def secret_matches(secret: str, stored: str | None) -> bool:
    if not stored or "$" not in stored:
        return False
    return hmac.compare_digest(hash_secret(secret, stored.split("$", 1)[0]), stored)


def _sign(key: str, text: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), text.encode(), hashlib.sha256).digest()).decode().rstrip("=")


def make_ticket(key: str, user: str) -> tuple[str, str]:
    """(PVEAuthCookie ticket, CSRFPreventionToken), shaped like Proxmox's: PVE:<user>:<HEXTIME>::<sig>."""
    stamp = f"{int(time.time()):08X}"
    ticket = f"PVE:{user}:{stamp}::{_sign(key, f'ticket:{user}:{stamp}')}"
    csrf = f"{stamp}:{_sign(key, f'csrf:{user}:{stamp}')}"
    return ticket, csrf


def check_ticket(key: str, ticket: str) -> str | None:
    """The user of a valid, unexpired ticket, else None."""
    parts = ticket.split(":")
    if len(parts) != 5 or parts[0] != "PVE":
        return None
    user, stamp, signature = parts[1], parts[2], parts[4]
    try:
        age = time.time() - int(stamp, 16)
    except ValueError:
        return None
    if not (-300 < age < TICKET_LIFETIME) or not hmac.compare_digest(_sign(key, f"ticket:{user}:{stamp}"),
                                                                      signature):
        return None
    return user


def check_csrf(key: str, user: str, token: str) -> bool:
    stamp = token.split(":", 1)[0]
    return hmac.compare_digest(f"{stamp}:{_sign(key, f'csrf:{user}:{stamp}')}", token)


class Identity:
    """Who is calling: a user (ticket) or a user's API token."""

    def __init__(self, user: str, token: str | None = None, via_ticket: bool = False):
        self.user = user
        self.token = token  # "user@realm!tokenid"
        self.via_ticket = via_ticket

    @property
    def name(self) -> str:
        return self.token or self.user


def authenticate(state: dict, request: Request) -> Identity:
    header = request.headers.get("authorization", "")
    if header.startswith("PVEAPIToken="):
        value = header[len("PVEAPIToken="):].strip()
        full_id, _, secret = value.partition("=")
        token = state["tokens"].get(full_id)
        user = full_id.split("!", 1)[0]
        if (not token or not secret_matches(secret, token.get("secret"))
                or not state["users"].get(user, {}).get("enable", 1)
                or (token.get("expire") and token["expire"] < time.time())):
            raise HttpError(401, "invalid token value!")
        return Identity(user, full_id)
    cookies = dict(part.strip().split("=", 1) for part in request.headers.get("cookie", "").split(";")
                   if "=" in part)
    ticket = cookies.get("PVEAuthCookie")
    if not ticket:
        raise HttpError(401, "No ticket")
    user = check_ticket(state["ticket_key"], unquote(ticket))
    if not user:
        raise HttpError(401, "invalid PVE ticket")
    if request.method in ("POST", "PUT", "DELETE"):
        token = request.headers.get("csrfpreventiontoken", "")
        if not token or not check_csrf(state["ticket_key"], user, token):
            raise HttpError(401, "Permission denied - invalid csrf token")
    return Identity(user, via_ticket=True)


def privileges(state: dict, who: Identity, path: str) -> set[str]:
    """Effective privileges on `path`: ACL entries on the path or a propagating ancestor."""
    return set(permissions(state, who, path))


def permissions(state: dict, who: Identity, path: str) -> dict[str, int]:
    """{privilege: propagate (1|0)} on `path`, as GET /access/permissions answers it: root@pam (or a token of
    it without privilege separation) has everything; a separated token the intersection of its user's and
    its own ACL privileges."""
    if who.user == "root@pam" and (not who.token or not state["tokens"].get(who.token, {}).get("privsep")):
        return dict.fromkeys(ALL_PRIVILEGES, 1)
    user_privs = _acl_privs(state, path, "user", who.user)
    if who.token and state["tokens"].get(who.token, {}).get("privsep", 1):
        token_privs = _acl_privs(state, path, "token", who.token)
        if who.user == "root@pam":
            return token_privs
        return {priv: flag for priv, flag in token_privs.items() if priv in user_privs}
    return user_privs


def _acl_privs(state: dict, path: str, kind: str, ugid: str) -> dict[str, int]:
    best: tuple[int, dict[str, int]] | None = None  # the most specific path wins, as in Proxmox
    path = path.rstrip("/") or "/"
    for entry in state["acl"]:
        if entry["type"] != kind or entry["ugid"] != ugid:
            continue
        acl_path = entry["path"].rstrip("/") or "/"
        exact = acl_path == path
        parent = acl_path == "/" or path.startswith(acl_path + "/")
        propagate = int(entry.get("propagate", 1))
        if not exact and not (parent and propagate):
            continue
        depth = len(acl_path)
        privs = dict.fromkeys(state["roles"].get(entry["roleid"], []), propagate)
        if best is None or depth > best[0]:
            best = (depth, privs)
        elif depth == best[0]:
            for priv, flag in privs.items():  # a privilege is propagating if any entry granting it is
                best[1][priv] = max(best[1].get(priv, 0), flag)
    return best[1] if best else {}


def check(state: dict, who: Identity, rule: object, params: dict) -> None:
    """Evaluate a schema `permissions.check` expression; raise 403 with Proxmox's text when it fails."""
    failure = _evaluate(state, who, rule, params)
    if failure:
        raise HttpError(403, f"Permission check failed ({failure})")


def require(state: dict, who: Identity, path: str, privs: list[str], any_of: bool = False) -> None:
    check(state, who, ["perm", path, privs, "any", 1] if any_of else ["perm", path, privs], {})


def _evaluate(state: dict, who: Identity, rule, params: dict) -> str | None:
    """None when allowed, else the "path, privilege" text of the check that failed."""
    if not isinstance(rule, list) or not rule:
        return None
    op = rule[0]
    if op in ("and", "or"):
        failures = [_evaluate(state, who, sub, params) for sub in rule[1:]]
        failed = [f for f in failures if f]
        if op == "and":
            return failed[0] if failed else None
        return None if len(failed) < len(failures) else failed[-1]
    if op == "perm":
        options = rule[3:]
        if "require_param" in options and options[options.index("require_param") + 1] not in params:
            return f"{rule[1]}, {'|'.join(rule[2])}"
        path = _fill(rule[1], params)
        have = privileges(state, who, path)
        if "any" in options:
            return None if have & set(rule[2]) else f"{path}, {'|'.join(rule[2])}"
        missing = [p for p in rule[2] if p not in have]
        return f"{path}, {missing[0]}" if missing else None
    if op == "perm-modify":
        path = _fill(rule[1], params)
        return None if can_modify_permissions(state, who, path) else f"{path}, Permissions.Modify"
    if op == "userid-param":
        if rule[1] == "self":
            return None if params.get("userid") == who.user else f"/access/users/{params.get('userid')}, self"
        path = "/access/realm/" + str(params.get("userid", "")).rpartition("@")[2]
        return None if rule[1] in privileges(state, who, path) else f"{path}, {rule[1]}"
    if op == "userid-group":  # any of the privileges on /access/groups (RPCEnvironment uses check_any)
        have = privileges(state, who, "/access/groups")
        return None if set(rule[1]) & have else f"/access/groups, {'|'.join(rule[1])}"
    return None  # forms the lab does not model (e.g. group-param) allow


def can_modify_permissions(state: dict, who: Identity, path: str) -> bool:
    """pve-access-control's check_perm_modify: Permissions.Modify on the path, or the object's own
    allocation privilege on a single storage, VM or pool."""
    accepted = {"Permissions.Modify"}
    for prefix, priv in (("/storage/", "Datastore.Allocate"), ("/vms/", "VM.Allocate"), ("/pool/", "Pool.Allocate")):
        if path.startswith(prefix) and len(path) > len(prefix):
            accepted.add(priv)
    return bool(privileges(state, who, path) & accepted)


# What GET /access/permissions lists without `path`: these top-level paths and every path an ACL names.
TOP_LEVEL_PATHS = ("/", "/access", "/access/groups", "/mapping", "/nodes", "/pool", "/sdn", "/storage", "/vms")


def effective_permissions(state: dict, who: Identity) -> dict[str, dict[str, int]]:
    """{path: {privilege: propagate}} of every path where `who` has something (Proxmox leaves out the rest)."""
    paths = set(TOP_LEVEL_PATHS) | {entry["path"] for entry in state["acl"]}
    result = {path: permissions(state, who, path) for path in sorted(paths)}
    return {path: privs for path, privs in result.items() if privs}


def _fill(template: str, params: dict) -> str:
    """'/vms/{vmid}' with the request's parameters (a missing one leaves an empty segment)."""
    return re.sub(r"\{([a-z\-_]+)\}", lambda m: str(params.get(m.group(1), "")), template)
