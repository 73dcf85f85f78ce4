"""OpenID Connect for every OAuth2 provider, at Authentik's URLs:

  /application/o/<app slug>/.well-known/openid-configuration   discovery (issuer per provider, or global)
  /application/o/authorize/     login form, then consent per the provider's authorization flow, then a code
  /application/o/token/         authorization_code (client_secret_basic/post, PKCE), refresh_token
  /application/o/userinfo/      claims of the access token's scopes
  /application/o/<app slug>/jwks/ and /end-session/

Sessions, pending requests, codes and tokens live in the twin's state (so a restart keeps a login).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import secrets
import time
from http.cookies import SimpleCookie
from urllib.parse import unquote, urlencode

from ..base import Request, Response
from . import claims, core, flows, pages, signing

AUTHORIZE = "/application/o/authorize/"
TOKEN = "/application/o/token/"
USERINFO = "/application/o/userinfo/"
COOKIE = "authentik_session"
ACR = "goauthentik.io/providers/oauth2/default"
PENDING_SECONDS = 600


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def validity(text: str) -> int:
    """Authentik's "hours=1;minutes=2" durations in seconds."""
    total = datetime.timedelta()
    for part in filter(None, (p.strip() for p in text.split(";"))):
        unit, _, amount = part.partition("=")
        total += datetime.timedelta(**{unit: float(amount)})
    return int(total.total_seconds())


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def base_url(request: Request) -> str:
    return "https://" + request.headers.get("host", "localhost")


class Oidc:
    def __init__(self, twin):
        self.twin = twin

    # -- lookups -------------------------------------------------------------------------------------
    def call(self, request: Request, data: dict):
        from .twin import Call  # noqa: PLC0415 - twin.py imports this module

        return Call(self.twin, request, data, {})

    @staticmethod
    def app_by_slug(data: dict, slug: str) -> tuple[dict, dict] | None:
        app = next((a for a in data.get("applications", {}).values() if a["slug"] == slug), None)
        provider = data.get("providers", {}).get(str(app["provider"])) if app and app["provider"] is not None else None
        return (app, provider) if provider and provider["_type"] == "oauth2" else None

    @staticmethod
    def by_client_id(data: dict, client_id: str) -> tuple[dict | None, dict | None]:
        provider = next((p for p in data.get("providers", {}).values()
                         if p["_type"] == "oauth2" and p["client_id"] == client_id), None)
        app = next((a for a in data.get("applications", {}).values()
                    if provider and a.get("provider") is not None and str(a["provider"]) == provider["pk"]), None)
        return provider, app

    @staticmethod
    def issuer(request: Request, app: dict, provider: dict) -> str:
        if provider.get("issuer_mode") == "global":
            return base_url(request) + "/"
        return f"{base_url(request)}/application/o/{app['slug']}/"

    @staticmethod
    def redirect_allowed(provider: dict, uri: str, kind: str = "authorization") -> bool:
        for allowed in provider.get("redirect_uris", []):
            if allowed.get("redirect_uri_type", "authorization") != kind:
                continue
            if allowed["matching_mode"] == "strict" and allowed["url"] == uri:
                return True
            if allowed["matching_mode"] == "regex" and re.fullmatch(allowed["url"], uri):
                return True
        return False

    def session_user(self, request: Request, data: dict) -> tuple[str | None, dict | None]:
        cookie = SimpleCookie(request.headers.get("cookie", ""))
        sid = cookie[COOKIE].value if COOKIE in cookie else None
        session = data.get("sessions", {}).get(sid or "")
        user = data.get("users", {}).get(session["user"]) if session else None
        return (sid, user) if user and user["is_active"] else (None, None)

    # -- discovery and keys --------------------------------------------------------------------------
    def discovery(self, request: Request) -> Response:
        with self.twin.store.lock:
            data = self.twin.store.data
            found = self.app_by_slug(data, request.params["slug"])
            if not found:
                return Response.json({"detail": "Not found."}, status=404)
            app, provider = found
            base = base_url(request)
            scopes = sorted({m["scope_name"] for m in claims.mappings(self.call(request, data), provider)})
            document = {
                "issuer": self.issuer(request, app, provider),
                "authorization_endpoint": base + AUTHORIZE, "token_endpoint": base + TOKEN,
                "userinfo_endpoint": base + USERINFO,
                "end_session_endpoint": f"{base}/application/o/{app['slug']}/end-session/",
                "introspection_endpoint": base + "/application/o/introspect/",
                "revocation_endpoint": base + "/application/o/revoke/",
                "device_authorization_endpoint": base + "/application/o/device/",
                "response_types_supported": ["code"], "response_modes_supported": ["query"],
                "jwks_uri": f"{base}/application/o/{app['slug']}/jwks/",
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "id_token_signing_alg_values_supported": [signing.algorithm(data, provider)],
                "id_token_encryption_alg_values_supported": [], "id_token_encryption_enc_values_supported": [],
                "subject_types_supported": ["public"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "acr_values_supported": [ACR], "scopes_supported": scopes, "request_parameter_supported": False,
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "amr", "nonce",
                                     "email", "email_verified", "name", "given_name", "preferred_username",
                                     "nickname", "groups"],
                "claims_parameter_supported": False, "code_challenge_methods_supported": ["plain", "S256"],
            }
        return Response.json(document)

    def jwks(self, request: Request) -> Response:
        with self.twin.store.lock:
            found = self.app_by_slug(self.twin.store.data, request.params["slug"])
            if not found:
                return Response.json({"detail": "Not found."}, status=404)
            return Response.json(signing.jwks(self.twin.store.data, found[1]))

    # -- authorize -----------------------------------------------------------------------------------
    def authorize_get(self, request: Request) -> Response:
        query = request.query
        with self.twin.store.change() as data:
            provider, app = self.by_client_id(data, query.get("client_id", ""))
            if provider is None:
                return pages.error("Client ID Error", f"Invalid client identifier: {query.get('client_id', '')}.")
            if app is None:
                return pages.error("Application not found", "The provider is not assigned to an application.")
            redirect_uri = query.get("redirect_uri", "")
            if not self.redirect_allowed(provider, redirect_uri):
                return pages.error("Redirect URI Error", "The request fails due to a missing, invalid, or "
                                   "mismatching redirection URI (redirect_uri).")
            state = query.get("state")
            if query.get("response_type") != "code":
                return self.redirect(redirect_uri, {"error": "unsupported_response_type", "state": state})
            if "authorization_code" not in provider.get("grant_types", ["authorization_code"]):
                return self.redirect(redirect_uri, {"error": "unauthorized_client", "state": state})
            method = query.get("code_challenge_method", "plain")
            if query.get("code_challenge") and method not in ("plain", "S256"):
                return self.redirect(redirect_uri, {"error": "invalid_request", "state": state,
                                                    "error_description": "Unsupported code_challenge_method"})
            pending = secrets.token_urlsafe(24)
            data.setdefault("pending", {})[pending] = {
                "provider": provider["pk"], "redirect_uri": redirect_uri, "state": state,
                "scopes": claims.granted(self.call(request, data), provider, query.get("scope", "").split()),
                "nonce": query.get("nonce"), "code_challenge": query.get("code_challenge"),
                "code_challenge_method": method, "created": time.time(),
                "prompt_consent": "consent" in query.get("prompt", "").split()}
            self._expire(data)
            sid, user = self.session_user(request, data)
            if user is None or query.get("prompt") == "login":
                if query.get("prompt") == "none":
                    return self.redirect(redirect_uri, {"error": "login_required", "state": state})
                return pages.login(pending, self._flow_slug(data, provider, "authentication_flow"))
            return self.proceed(request, data, pending, sid, user, {})

    def authorize_post(self, request: Request) -> Response:
        form = request.form()
        headers: dict = {}
        with self.twin.store.change() as data:
            pending = data.get("pending", {}).get(form.get("pending", ""))
            if pending is None or time.time() - pending["created"] > PENDING_SECONDS:
                return pages.error("Flow expired", "This authorization request has expired; start again.")
            provider = data.get("providers", {}).get(pending["provider"])
            if provider is None:
                return pages.error("Client ID Error", "The provider of this request is gone.")
            if "uid_field" in form:
                user = self.login(data, form.get("uid_field", ""), form.get("password", ""))
                if user is None:
                    return pages.login(form["pending"], self._flow_slug(data, provider, "authentication_flow"),
                                       "Failed to authenticate.")
                sid = secrets.token_urlsafe(32)
                data.setdefault("sessions", {})[sid] = {"user": user["pk"], "auth_time": int(time.time())}
                user["last_login"] = self.twin.now()
                headers["Set-Cookie"] = f"{COOKIE}={sid}; Path=/; Secure; HttpOnly; SameSite=Lax"
            else:
                sid, user = self.session_user(request, data)
                if user is None:
                    return pages.login(form["pending"], self._flow_slug(data, provider, "authentication_flow"))
                if form.get("consent") == "yes":
                    data.setdefault("consents", []).append([user["pk"], provider["pk"]])
                    pending["prompt_consent"] = False
            return self.proceed(request, data, form["pending"], sid, user, headers)

    @staticmethod
    def login(data: dict, uid: str, password: str) -> dict | None:
        """The identification and password stages: username or email, an active user, the password."""
        for user in data.get("users", {}).values():
            if uid and uid in (user["username"], user["email"]) and user["is_active"]:
                return user if core.check_password(user, password) else None
        return None

    @staticmethod
    def _flow_slug(data: dict, provider: dict, name: str) -> str:
        flow = data.get("flows", {}).get(provider.get(name) or "")
        return flow["slug"] if flow else "default-authentication-flow"

    def proceed(self, request: Request, data: dict, pending_id: str, sid: str, user: dict, headers: dict) -> Response:
        """After login: the consent page when the authorization flow asks for explicit consent (once per
        user and provider), then the code back to the client."""
        pending = data["pending"][pending_id]
        provider = data["providers"][pending["provider"]]
        flow = data.get("flows", {}).get(provider.get("authorization_flow") or "")
        remembered = [user["pk"], provider["pk"]] in data.get("consents", []) and not pending.get("prompt_consent")
        if (flows.explicit_consent(flow) or pending.get("prompt_consent")) and not remembered:
            _provider, app = self.by_client_id(data, provider["client_id"])
            descriptions = [m["description"] or m["name"] for m in claims.mappings(self.call(request, data), provider)
                            if m["scope_name"] in pending["scopes"] and m["description"]]
            response = pages.consent(pending_id, flow["slug"], app["name"] if app else provider["name"], descriptions)
            response.headers.update(headers)
            return response
        del data["pending"][pending_id]
        code = secrets.token_urlsafe(32)
        session = data.get("sessions", {}).get(sid, {})
        data.setdefault("codes", {})[_hash(code)] = {
            **pending, "user": user["pk"], "sid": sid, "auth_time": session.get("auth_time", int(time.time())),
            "expires": time.time() + validity(provider["access_code_validity"])}
        response = self.redirect(pending["redirect_uri"], {"code": code, "state": pending["state"]})
        response.headers.update(headers)
        return response

    @staticmethod
    def redirect(uri: str, params: dict) -> Response:
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return Response(302, b"", "text/html; charset=utf-8",
                        {"Location": uri + ("&" if "?" in uri else "?") + query})

    @staticmethod
    def _expire(data: dict) -> None:
        now = time.time()
        for key, limit in (("pending", PENDING_SECONDS),):
            for pk in [pk for pk, item in data.get(key, {}).items() if now - item["created"] > limit]:
                del data[key][pk]
        for key in ("codes", "access", "refresh"):
            for pk in [pk for pk, item in data.get(key, {}).items() if item["expires"] < now]:
                del data[key][pk]

    # -- token ---------------------------------------------------------------------------------------
    def token(self, request: Request) -> Response:
        form = request.form()
        with self.twin.store.change() as data:
            try:
                provider = self.client(request, data, form)
                grant = form.get("grant_type")
                if grant not in provider.get("grant_types", []):
                    raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not allowed")
                if grant == "authorization_code":
                    answer = self.from_code(request, data, provider, form)
                elif grant == "refresh_token":
                    answer = self.from_refresh(request, data, provider, form)
                else:
                    raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported (lab)")
            except OAuthError as exc:
                return Response.json({"error": exc.error, "error_description": exc.description},
                                     status=exc.status, headers={"Cache-Control": "no-store"})
        return Response.json(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def client(self, request: Request, data: dict, form: dict) -> dict:
        """client_secret_basic or client_secret_post; a public client names itself only."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, secret = base64.b64decode(value).decode().partition(":")
            except ValueError:
                raise OAuthError("invalid_client", "malformed Basic credentials") from None
            client_id, secret = unquote(client_id), unquote(secret)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        provider, _app = self.by_client_id(data, client_id)
        if provider is None:
            raise OAuthError("invalid_client", "Client authentication failed")
        if provider["client_type"] == "confidential" and not secrets.compare_digest(
                secret.encode(), provider["client_secret"].encode()):
            raise OAuthError("invalid_client", "Client authentication failed")
        return provider

    def from_code(self, request: Request, data: dict, provider: dict, form: dict) -> dict:
        code = data.get("codes", {}).pop(_hash(form.get("code", "")), None)  # one use, even when refused
        if code is None or code["provider"] != provider["pk"] or code["expires"] < time.time():
            raise OAuthError("invalid_grant", "The provided authorization grant or refresh token is invalid, "
                                              "expired, revoked, does not match the redirection URI used in the "
                                              "authorization request, or was issued to another client")
        if form.get("redirect_uri") != code["redirect_uri"]:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
        if code["code_challenge"]:
            verifier = form.get("code_challenge_verifier") or form.get("code_verifier") or ""
            expected = signing.pkce_s256(verifier) if code["code_challenge_method"] == "S256" else verifier
            if not verifier or not secrets.compare_digest(expected, code["code_challenge"]):
                raise OAuthError("invalid_grant", "The PKCE code verifier does not match the code challenge")
        return self.issue(request, data, provider, code["user"], code["scopes"], code["nonce"], code["auth_time"])

    def from_refresh(self, request: Request, data: dict, provider: dict, form: dict) -> dict:
        stored = data.get("refresh", {}).pop(_hash(form.get("refresh_token", "")), None)  # rotated
        if stored is None or stored["provider"] != provider["pk"] or stored["expires"] < time.time():
            raise OAuthError("invalid_grant", "The refresh token is invalid, expired or revoked")
        scopes = form.get("scope", "").split() or stored["scopes"]
        if not set(scopes) <= set(stored["scopes"]):
            raise OAuthError("invalid_scope", "The requested scope exceeds the granted scope")
        return self.issue(request, data, provider, stored["user"], scopes, stored["nonce"], stored["auth_time"])

    def issue(self, request: Request, data: dict, provider: dict, user_pk: str, scopes: list[str],
              nonce: str | None, auth_time: int) -> dict:
        user = data["users"].get(user_pk)
        if user is None or not user["is_active"]:
            raise OAuthError("invalid_grant", "The user is gone or inactive")
        call = self.call(request, data)
        _provider, app = self.by_client_id(data, provider["client_id"])
        now = int(time.time())
        lifetime = validity(provider["access_token_validity"])
        base = {"iss": self.issuer(request, app, provider), "sub": claims.subject(call, provider, user),
                "aud": provider["client_id"], "exp": now + lifetime, "iat": now, "auth_time": auth_time,
                "acr": ACR, "amr": ["pwd"]}
        if nonce:
            base["nonce"] = nonce
        extra = claims.from_scopes(call, provider, user, scopes)
        access_token = signing.sign(data, provider, {**extra, **base, "azp": provider["client_id"],
                                                     "scope": " ".join(scopes), "jti": secrets.token_hex(16)})
        data.setdefault("access", {})[_hash(access_token)] = {
            "provider": provider["pk"], "user": user_pk, "scopes": scopes, "expires": now + lifetime}
        answer = {"access_token": access_token, "token_type": "Bearer", "scope": " ".join(scopes),
                  "expires_in": lifetime}
        if "openid" in scopes:
            id_claims = {**(extra if provider.get("include_claims_in_id_token", True) else {}), **base,
                         "at_hash": signing.at_hash(access_token)}
            answer["id_token"] = signing.sign(data, provider, id_claims)
        if "offline_access" in scopes and "refresh_token" in provider.get("grant_types", []):
            refresh = secrets.token_urlsafe(48)
            data.setdefault("refresh", {})[_hash(refresh)] = {
                "provider": provider["pk"], "user": user_pk, "scopes": scopes, "nonce": nonce,
                "auth_time": auth_time, "expires": now + validity(provider["refresh_token_validity"])}
            answer["refresh_token"] = refresh
        return answer

    # -- userinfo and logout -------------------------------------------------------------------------
    def userinfo(self, request: Request) -> Response:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else request.form().get("access_token", "")
        with self.twin.store.lock:
            data = self.twin.store.data
            grant = data.get("access", {}).get(_hash(token)) if token else None
            if grant is None or grant["expires"] < time.time() or grant["user"] not in data.get("users", {}):
                return Response.json({"error": "invalid_token", "error_description": "The access token is invalid"},
                                     status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
            provider, user = data["providers"][grant["provider"]], data["users"][grant["user"]]
            call = self.call(request, data)
            answer = {**claims.from_scopes(call, provider, user, grant["scopes"]),
                      "sub": claims.subject(call, provider, user)}
        return Response.json(answer)

    def end_session(self, request: Request) -> Response:
        with self.twin.store.change() as data:
            found = self.app_by_slug(data, request.params["slug"])
            if not found:
                return Response.json({"detail": "Not found."}, status=404)
            app, provider = found
            sid, _user = self.session_user(request, data)
            if sid:
                data["sessions"].pop(sid, None)
            expired = {"Set-Cookie": f"{COOKIE}=; Path=/; Secure; HttpOnly; Max-Age=0"}
            target = request.query.get("post_logout_redirect_uri")
            if target and self.redirect_allowed(provider, target, "logout"):
                response = self.redirect(target, {"state": request.query.get("state")})
                response.headers.update(expired)
                return response
            return pages.logged_out(app["name"], expired)


def register(twin) -> None:
    oidc = Oidc(twin)
    twin.add("GET", "/application/o/{slug}/.well-known/openid-configuration", oidc.discovery)
    twin.add("GET", "/application/o/{slug}/jwks/", oidc.jwks)
    twin.add("GET", "/application/o/{slug}/end-session/", oidc.end_session)
    twin.add("GET", AUTHORIZE, oidc.authorize_get)
    twin.add("POST", AUTHORIZE, oidc.authorize_post)
    twin.add("POST", TOKEN, oidc.token)
    twin.add("GET", USERINFO, oidc.userinfo)
    twin.add("POST", USERINFO, oidc.userinfo)
