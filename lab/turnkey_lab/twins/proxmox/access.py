"""/access/...: login tickets, users, roles, ACLs and API tokens (what `pveum` does)."""

from __future__ import annotations

import copy
import secrets
import uuid

from ..base import HttpError, Request, Response
from .auth import (
    ALL_PRIVILEGES,
    BUILTIN_ROLES,
    Identity,
    can_modify_permissions,
    effective_permissions,
    hash_secret,
    make_ticket,
    permissions,
    privileges,
    secret_matches,
)


class Access:
    def __init__(self, twin):
        self.twin = twin
        add = twin.add
        add("POST", "/access/ticket", self.login)
        add("GET", "/access/users", self.users)
        add("POST", "/access/users", self.create_user)
        add("GET", "/access/users/{userid}", self.get_user)
        add("PUT", "/access/users/{userid}", self.update_user)
        add("DELETE", "/access/users/{userid}", self.delete_user)
        add("GET", "/access/roles", self.roles)
        add("POST", "/access/roles", self.create_role)
        add("GET", "/access/roles/{roleid}", self.get_role)
        add("PUT", "/access/roles/{roleid}", self.update_role)
        add("DELETE", "/access/roles/{roleid}", self.delete_role)
        add("GET", "/access/acl", self.acl)
        add("GET", "/access/permissions", self.permissions)
        add("PUT", "/access/acl", self.update_acl)
        add("GET", "/access/users/{userid}/token", self.list_tokens)
        token = "/access/users/{userid}/token/{tokenid}"
        add("GET", token, self.get_token)
        add("POST", token, self.create_token)
        add("PUT", token, self.update_token)
        add("DELETE", token, self.delete_token)

    @property
    def state(self) -> dict:
        return self.twin.store.data

    def login(self, request: Request) -> Response:
        params = request.context["params"]
        user = params["username"]
        if "@" not in user and params.get("realm"):
            user = f"{user}@{params['realm']}"
        with self.twin.store.lock:
            record = self.state["users"].get(user)
            valid = bool(record and record.get("enable", 1) and secret_matches(params["password"],
                                                                                 record.get("password")))
        if not valid:
            self.twin.latency.sleep("login_failure")  # pveproxy delays failed logins
            raise HttpError(401, "authentication failure")
        ticket, csrf = make_ticket(self.state["ticket_key"], user)
        return self.twin.ok({"username": user, "ticket": ticket, "CSRFPreventionToken": csrf,
                             "cap": {"vms": {}, "storage": {}, "access": {}, "nodes": {}, "dc": {}, "sdn": {}}})

    def users(self, request: Request) -> Response:
        who = request.context["who"]
        with self.twin.store.lock:
            # Everyone with User.Modify or Sys.Audit on /access/groups, else only the caller, as Proxmox lists.
            see_all = bool(privileges(self.state, who, "/access/groups") & {"User.Modify", "Sys.Audit"})
            users = copy.deepcopy([u for u in self.state["users"].values() if see_all or u["userid"] == who.user])
            tokens = copy.deepcopy(self.state["tokens"])
        result = []
        for user in users:
            user.pop("password", None)
            user["tokens"] = [{"tokenid": t.split("!", 1)[1], "privsep": v["privsep"], "expire": v["expire"],
                               "comment": v.get("comment", "")}
                              for t, v in tokens.items() if t.startswith(user["userid"] + "!")]
            result.append(user)
        return self.twin.ok(result)

    def create_user(self, request: Request) -> Response:
        params = request.context["params"]
        userid = params["userid"]
        with self.twin.store.change() as state:
            if userid in state["users"]:
                raise HttpError(500, f"create user failed: user '{userid}' already exists")
            state["users"][userid] = {
                "userid": userid, "enable": int(params.get("enable", 1)), "expire": int(params.get("expire", 0)),
                "comment": params.get("comment", ""),
                "password": hash_secret(params["password"]) if params.get("password") else None}
        return self.twin.ok(None)

    @staticmethod
    def _user(state: dict, userid: str) -> dict:
        user = state["users"].get(userid)
        if user is None:
            raise HttpError(500, f"no such user ('{userid}')")
        return user

    def get_user(self, request: Request) -> Response:
        userid = request.params["userid"]
        with self.twin.store.lock:
            user = copy.deepcopy(self._user(self.state, userid))
            tokens = {t.split("!", 1)[1]: {"privsep": v["privsep"], "expire": v["expire"],
                                           "comment": v.get("comment", "")}
                      for t, v in self.state["tokens"].items() if t.startswith(userid + "!")}
        user.pop("password", None)
        user.pop("userid", None)
        user["groups"] = user.get("groups", [])
        if tokens:
            user["tokens"] = tokens
        return self.twin.ok(user)

    def update_user(self, request: Request) -> Response:
        params = request.context["params"]
        with self.twin.store.change() as state:
            user = self._user(state, request.params["userid"])
            for key in ("comment", "email", "firstname", "lastname"):
                if key in params:
                    user[key] = params[key]
            if "enable" in params:
                user["enable"] = int(str(params["enable"]).lower() in ("1", "true", "yes", "on"))
            if "expire" in params:
                user["expire"] = int(params["expire"])
        return self.twin.ok(None)

    def delete_user(self, request: Request) -> Response:
        userid = request.params["userid"]
        with self.twin.store.change() as state:
            self._user(state, userid)
            del state["users"][userid]
            # Proxmox drops the user's tokens and every ACL entry naming the user or its tokens.
            state["tokens"] = {t: v for t, v in state["tokens"].items() if not t.startswith(userid + "!")}
            state["acl"] = [e for e in state["acl"]
                            if e["ugid"] != userid and not e["ugid"].startswith(userid + "!")]
        return self.twin.ok(None)

    def roles(self, request: Request) -> Response:
        with self.twin.store.lock:
            roles = dict(self.state["roles"])
        return self.twin.ok([{"roleid": name, "privs": ",".join(sorted(privs)), "special": int(name in BUILTIN_ROLES)}
                             for name, privs in sorted(roles.items())])

    def create_role(self, request: Request) -> Response:
        params = request.context["params"]
        privs = self._privs(params)
        with self.twin.store.change() as state:
            if params["roleid"] in state["roles"]:
                raise HttpError(500, f"create role failed: role '{params['roleid']}' already exists")
            state["roles"][params["roleid"]] = privs
        return self.twin.ok(None)

    @staticmethod
    def _privs(params: dict) -> list[str]:
        privs = [p for p in params.get("privs", "").replace(";", ",").replace(" ", ",").split(",") if p]
        unknown = [p for p in privs if p not in ALL_PRIVILEGES]
        if unknown:
            raise HttpError(500, f"invalid privilege '{unknown[0]}'")
        return privs

    def get_role(self, request: Request) -> Response:
        roleid = request.params["roleid"]
        with self.twin.store.lock:
            privs = self.state["roles"].get(roleid)
        if privs is None:
            raise HttpError(500, f"role '{roleid}' does not exist")
        return self.twin.ok({priv: 1 for priv in sorted(privs)})  # the real answer: {privilege: 1}

    def update_role(self, request: Request) -> Response:
        params = request.context["params"]
        roleid = request.params["roleid"]
        privs = self._privs(params)
        append = str(params.get("append", "0")).lower() in ("1", "true", "yes", "on")
        with self.twin.store.change() as state:
            if roleid not in state["roles"]:
                raise HttpError(500, f"role '{roleid}' does not exist")
            if roleid in BUILTIN_ROLES:
                raise HttpError(500, f"auto-generated role '{roleid}' cannot be modified")
            state["roles"][roleid] = sorted(set(state["roles"][roleid]) | set(privs)) if append else privs
        return self.twin.ok(None)

    def delete_role(self, request: Request) -> Response:
        roleid = request.params["roleid"]
        with self.twin.store.change() as state:
            if roleid not in state["roles"]:
                raise HttpError(500, f"role '{roleid}' does not exist")
            if roleid in BUILTIN_ROLES:
                raise HttpError(500, f"auto-generated role '{roleid}' cannot be deleted")
            del state["roles"][roleid]
            state["acl"] = [e for e in state["acl"] if e["roleid"] != roleid]
        return self.twin.ok(None)

    def acl(self, request: Request) -> Response:
        who = request.context["who"]
        with self.twin.store.lock:
            # Only entries on paths where the caller may change permissions (or audit /access), as Proxmox.
            audit = "Sys.Audit" in privileges(self.state, who, "/access")
            entries = [copy.deepcopy(e) for e in self.state["acl"]
                       if audit or can_modify_permissions(self.state, who, e["path"])]
        return self.twin.ok(entries)

    def permissions(self, request: Request) -> Response:
        """The effective privileges of the caller, or of `userid` (a user or a token): {path: {priv: 0|1}}."""
        params = request.context["params"]
        who = request.context["who"]
        with self.twin.store.lock:
            subject = who
            userid = params.get("userid")
            if userid and userid != who.name:
                owner = userid.split("!", 1)[0]
                known = self.state["tokens"] if "!" in userid else self.state["users"]
                if userid not in known:
                    raise HttpError(500, f"no such {'token' if '!' in userid else 'user'} '{userid}'")
                # One's own tokens are free to dump; anyone else's needs Sys.Audit on /access.
                if not (owner == who.user and not who.token) and \
                        "Sys.Audit" not in privileges(self.state, who, "/access"):
                    raise HttpError(403, "Permission check failed (/access, Sys.Audit)")
                subject = Identity(owner, userid if "!" in userid else None)
            if params.get("path"):
                privs = permissions(self.state, subject, params["path"])
                return self.twin.ok({params["path"]: privs} if privs else {})
            return self.twin.ok(effective_permissions(self.state, subject))

    def update_acl(self, request: Request) -> Response:
        params = request.context["params"]
        path = params["path"]
        roles = [r for r in params["roles"].split(",") if r]
        targets = [("user", u) for u in params.get("users", "").split(",") if u]
        targets += [("token", t) for t in params.get("tokens", "").split(",") if t]
        delete = params.get("delete") in ("1", "true")
        with self.twin.store.change() as state:
            for role in roles:
                if role not in state["roles"]:
                    raise HttpError(500, f"role '{role}' does not exist")
            for kind, ugid in targets:
                known = state["users"] if kind == "user" else state["tokens"]
                if ugid not in known:
                    raise HttpError(500, f"{kind} '{ugid}' does not exist")
                for role in roles:
                    state["acl"] = [e for e in state["acl"]
                                    if not (e["path"] == path and e["ugid"] == ugid and e["roleid"] == role)]
                    if not delete:
                        state["acl"].append({"path": path, "type": kind, "ugid": ugid, "roleid": role,
                                             "propagate": int(params.get("propagate", 1))})
        return self.twin.ok(None)

    def _token_id(self, request: Request) -> str:
        return f"{request.params['userid']}!{request.params['tokenid']}"

    def list_tokens(self, request: Request) -> Response:
        userid = request.params["userid"]
        with self.twin.store.lock:
            self._user(self.state, userid)
            tokens = [{"tokenid": t.split("!", 1)[1], "privsep": v["privsep"], "expire": v["expire"],
                       "comment": v.get("comment", "")}
                      for t, v in sorted(self.state["tokens"].items()) if t.startswith(userid + "!")]
        return self.twin.ok(tokens)

    def update_token(self, request: Request) -> Response:
        params = request.context["params"]
        full = self._token_id(request)
        with self.twin.store.change() as state:
            token = state["tokens"].get(full)
            if token is None:
                raise HttpError(500, f"no such token '{request.params['tokenid']}' for user "
                                     f"'{request.params['userid']}'")
            for key in [k for k in params.get("delete", "").replace(";", ",").split(",") if k]:
                token[key] = {"comment": "", "expire": 0, "privsep": 1}.get(key, token.get(key))
            if "comment" in params:
                token["comment"] = params["comment"]
            if "expire" in params:
                token["expire"] = int(params["expire"])
            if "privsep" in params:
                token["privsep"] = int(str(params["privsep"]).lower() in ("1", "true", "yes", "on"))
            info = {"privsep": token["privsep"], "expire": token["expire"], "comment": token.get("comment", "")}
        return self.twin.ok(info)

    def get_token(self, request: Request) -> Response:
        with self.twin.store.lock:
            token = copy.deepcopy(self.state["tokens"].get(self._token_id(request)))
        if not token:
            raise HttpError(500, f"no such token '{request.params['tokenid']}' for user "
                                 f"'{request.params['userid']}'")
        token.pop("secret", None)
        return self.twin.ok(token)

    def create_token(self, request: Request) -> Response:
        params = request.context["params"]
        full = self._token_id(request)
        secret = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))  # Proxmox's secrets are UUIDs
        info = {"privsep": int(params.get("privsep", 1) in (1, "1", "true")), "expire": int(params.get("expire", 0)),
                "comment": params.get("comment", "")}
        with self.twin.store.change() as state:
            if request.params["userid"] not in state["users"]:
                raise HttpError(500, f"no such user ('{request.params['userid']}')")
            if full in state["tokens"]:
                raise HttpError(500, "Token already exists.")
            state["tokens"][full] = {**info, "secret": hash_secret(secret)}
        return self.twin.ok({"full-tokenid": full, "info": info, "value": secret})

    def delete_token(self, request: Request) -> Response:
        full = self._token_id(request)
        with self.twin.store.change() as state:
            if state["tokens"].pop(full, None) is None:
                raise HttpError(500, f"no such token '{request.params['tokenid']}' for user "
                                     f"'{request.params['userid']}'")
            state["acl"] = [e for e in state["acl"] if not (e["type"] == "token" and e["ugid"] == full)]
        return self.twin.ok(None)
