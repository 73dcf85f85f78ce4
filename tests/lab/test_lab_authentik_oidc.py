"""The Authentik twin's OpenID Connect side through the REAL lab, with a real OIDC client library (Authlib):
the authorization-code flow with PKCE against a provider the API made, the login form posted like a
browser would, the ID token checked from the JWKS (joserfc), then userinfo, refresh, consent and logout.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey

from . import test_lab_authentik_api as api_test
from .openbao_oidc import configure_oidc
from .test_lab_authentik_api import API, BASE, UP

authentik_lab = api_test.authentik_lab  # the fixture: a lab on the API test's net, one at a time

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]

GRAFANA_CB = "https://grafana.example/login/generic_oauth"
WIKI_CB = "https://wiki.example/auth/callback"
WIKI_LOGOUT = "https://wiki.example/logged-out"


class Admin:
    """The API with the bootstrap token (plain requests)."""

    def __init__(self, token: str):
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def __call__(self, method: str, path: str, body: object = None, status: int = 200, **params):
        answer = self.session.request(method, API + path, json=body, params=params, timeout=10)
        assert answer.status_code == status, (method, path, answer.text)
        return answer.json() if answer.content else None

    def one(self, path: str, **params) -> dict:
        results = self("GET", path, **params)["results"]
        assert len(results) == 1, (path, params, results)
        return results[0]


def set_up_sso(admin: Admin) -> dict:
    """Two apps as the modules would make them: grafana (implicit consent, RS256 with the self-signed key,
    a groups scope) and wiki (explicit consent, no signing key: HS256, a regex redirect URI)."""
    flow = {slug: admin.one("/flows/instances/", slug=slug)["pk"] for slug in (
        "default-provider-authorization-implicit-consent", "default-provider-authorization-explicit-consent",
        "default-provider-invalidation-flow")}
    key = admin.one("/crypto/certificatekeypairs/", name="authentik Self-signed Certificate")["pk"]
    scopes = [admin.one("/propertymappings/provider/scope/",
                        managed=f"goauthentik.io/providers/oauth2/scope-{s}")["pk"]
              for s in ("openid", "email", "profile", "offline_access")]
    groups_scope = admin("POST", "/propertymappings/provider/scope/", {
        "name": "turnkey: groups", "scope_name": "groups", "description": "Your groups",
        "expression": 'return {"groups": [group.name for group in request.user.ak_groups.all()]}'}, status=201)
    admins = admin("POST", "/core/groups/", {"name": "grafana-admins"}, status=201)
    alice = admin("POST", "/core/users/", {"username": "alice", "name": "Alice Example", "email": "alice@example.com",
                                           "groups": [admins["pk"]]}, status=201)
    bob = admin("POST", "/core/users/", {"username": "bob", "name": "Bob", "email": "bob@example.com"}, status=201)
    for user, password in ((alice, "alice-pw"), (bob, "bob-pw")):
        admin("POST", f"/core/users/{user['pk']}/set_password/", {"password": password}, status=204)
    grafana = admin("POST", "/providers/oauth2/", {
        "name": "grafana", "authorization_flow": flow["default-provider-authorization-implicit-consent"],
        "invalidation_flow": flow["default-provider-invalidation-flow"], "client_id": "grafana",
        "signing_key": key, "property_mappings": [*scopes, groups_scope["pk"]],
        "redirect_uris": [{"matching_mode": "strict", "url": GRAFANA_CB}]}, status=201)
    admin("POST", "/core/applications/", {"name": "Grafana", "slug": "grafana", "provider": grafana["pk"]}, status=201)
    wiki = admin("POST", "/providers/oauth2/", {
        "name": "wiki", "authorization_flow": flow["default-provider-authorization-explicit-consent"],
        "invalidation_flow": flow["default-provider-invalidation-flow"], "sub_mode": "user_username",
        "property_mappings": [*scopes, groups_scope["pk"]],
        "redirect_uris": [
            {"matching_mode": "regex", "url": r"https://wiki\.example/auth/.*"},
            {"matching_mode": "strict", "url": WIKI_LOGOUT, "redirect_uri_type": "logout"}]},
        status=201)
    admin("POST", "/core/applications/", {"name": "Wiki", "slug": "wiki", "provider": wiki["pk"]}, status=201)
    return {"grafana": grafana, "wiki": wiki, "alice": alice, "bob": bob}


class Browser:
    """What a browser does with the twin's pages: follow the form, keep the session cookie."""

    def __init__(self):
        self.session = requests.Session()

    def get(self, url: str):
        return self.session.get(url, allow_redirects=False, timeout=10)

    def submit(self, page, form_id: str, **fields):
        form = re.search(rf'<form id="{form_id}" method="post" action="([^"]+)">(.*?)</form>', page.text, re.S)
        assert form, page.text
        values = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2)))
        for name in fields:
            assert f'name="{name}"' in form.group(2), (name, form.group(2))
        return self.session.post(urljoin(page.url, form.group(1)), data={**values, **fields},
                                 allow_redirects=False, timeout=10)

    def login(self, url: str, username: str, password: str):
        page = self.get(url)
        assert page.status_code == 200 and 'id="login-form"' in page.text, page.text
        assert 'id="uid_field"' in page.text and 'id="password"' in page.text and 'id="login-submit"' in page.text
        return self.submit(page, "login-form", uid_field=username, password=password)


def oidc_client(provider: dict, redirect_uri: str, method: str = "client_secret_basic") -> OAuth2Session:
    return OAuth2Session(provider["client_id"], provider["client_secret"], scope="openid email profile groups "
                         "offline_access", redirect_uri=redirect_uri, code_challenge_method="S256",
                         token_endpoint_auth_method=method)


def code_of(answer, redirect_uri: str, state: str) -> str:
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(redirect_uri + "?"), location
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state]
    return location


def verified(id_token: str, keys, issuer: str, client_id: str, nonce: str) -> dict:
    token = jwt.decode(id_token, keys)
    registry = jwt.JWTClaimsRegistry(iss={"essential": True, "value": issuer},
                                     aud={"essential": True, "value": client_id},
                                     nonce={"essential": True, "value": nonce}, sub={"essential": True},
                                     exp={"essential": True}, iat={"essential": True}, auth_time={"essential": True})
    registry.validate(token.claims)
    return token.claims


# -- the steps ---------------------------------------------------------------------------------------
def grafana_login_with_pkce(made: dict) -> dict:
    provider = made["grafana"]
    meta = requests.get(f"{BASE}/application/o/grafana/.well-known/openid-configuration", timeout=10).json()
    issuer = f"{BASE}/application/o/grafana/"
    assert meta["issuer"] == issuer and meta["jwks_uri"] == f"{issuer}jwks/"
    assert meta["authorization_endpoint"] == f"{BASE}/application/o/authorize/"
    assert "S256" in meta["code_challenge_methods_supported"] and "groups" in meta["scopes_supported"]
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    client = oidc_client(provider, GRAFANA_CB)
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    browser = Browser()
    wrong = browser.login(url, "alice", "not-her-password")
    assert wrong.status_code == 200 and "Failed to authenticate." in wrong.text and "Location" not in wrong.headers
    location = code_of(browser.submit(wrong, "login-form", uid_field="alice@example.com", password="alice-pw"),
                       GRAFANA_CB, state)
    assert "authentik_session" in browser.session.cookies
    token = client.fetch_token(meta["token_endpoint"], authorization_response=location, code_verifier=verifier)
    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    claims = verified(token["id_token"], keys, issuer, "grafana", nonce)
    assert jwt.decode(token["id_token"], keys).header["kid"] == keys.keys[0].kid
    assert claims["groups"] == ["grafana-admins"] and claims["email"] == "alice@example.com"
    assert claims["preferred_username"] == "alice" and claims["name"] == "Alice Example"
    assert claims["sub"] == made["alice"]["uid"]  # sub_mode hashed_user_id: the user's uid
    assert claims["acr"] == "goauthentik.io/providers/oauth2/default" and claims["amr"] == ["pwd"]
    assert claims["auth_time"] <= claims["iat"] < claims["exp"]
    info = client.get(meta["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"] and info["groups"] == ["grafana-admins"]

    # the same code again, a wrong verifier, a wrong secret: refused as OAuth errors
    again = requests.post(meta["token_endpoint"], timeout=10, auth=("grafana", provider["client_secret"]), data={
        "grant_type": "authorization_code", "code": parse_qs(urlsplit(location).query)["code"][0],
        "redirect_uri": GRAFANA_CB, "code_verifier": verifier})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    second = code_of(browser.get(url), GRAFANA_CB, state)  # logged in: no form, implicit consent
    asked, _state = client.create_authorization_url(meta["authorization_endpoint"], prompt="consent")
    assert 'id="consent-accept"' in browser.get(asked).text  # the client asked for a consent page
    code = parse_qs(urlsplit(second).query)["code"][0]
    bad_pkce = requests.post(meta["token_endpoint"], timeout=10, auth=("grafana", provider["client_secret"]), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": GRAFANA_CB, "code_verifier": "x" * 48})
    assert bad_pkce.status_code == 400 and bad_pkce.json()["error"] == "invalid_grant"
    bad_secret = requests.post(meta["token_endpoint"], timeout=10, auth=("grafana", "wrong"),
                               data={"grant_type": "authorization_code", "code": code, "redirect_uri": GRAFANA_CB})
    assert bad_secret.status_code == 400 and bad_secret.json()["error"] == "invalid_client"

    # refresh (offline_access): new tokens, the old refresh token is rotated out
    refreshed = client.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert verified(refreshed["id_token"], keys, issuer, "grafana", nonce)["groups"] == ["grafana-admins"]
    reused = requests.post(meta["token_endpoint"], timeout=10, auth=("grafana", provider["client_secret"]),
                           data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert requests.get(meta["userinfo_endpoint"], headers={"Authorization": "Bearer nope"}, timeout=10
                        ).status_code == 401
    return {"browser": browser, "meta": meta}


def redirect_uris_are_strict(made: dict) -> None:
    client = oidc_client(made["grafana"], GRAFANA_CB + "/evil")
    url, _state = client.create_authorization_url(f"{BASE}/application/o/authorize/")
    answer = Browser().get(url)
    assert answer.status_code == 400 and "Location" not in answer.headers and "Redirect URI Error" in answer.text
    unknown = Browser().get(f"{BASE}/application/o/authorize/?client_id=nobody&response_type=code")
    assert unknown.status_code == 400 and "Invalid client identifier" in unknown.text


def wiki_asks_consent_and_signs_hs256(made: dict) -> None:
    provider = made["wiki"]
    meta = requests.get(f"{BASE}/application/o/wiki/.well-known/openid-configuration", timeout=10).json()
    assert meta["id_token_signing_alg_values_supported"] == ["HS256"]
    assert requests.get(meta["jwks_uri"], timeout=10).json() == {"keys": []}
    redirect = "https://wiki.example/auth/callback"
    client = oidc_client(provider, redirect, method="client_secret_post")
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    browser = Browser()
    consent = browser.login(url, "bob", "bob-pw")
    assert consent.status_code == 200 and 'id="consent-accept"' in consent.text and "Wiki" in consent.text
    assert "Your groups" in consent.text
    location = code_of(browser.submit(consent, "consent-form"), redirect, state)
    token = client.fetch_token(meta["token_endpoint"], authorization_response=location, code_verifier=verifier)
    secret = OctKey.import_key(provider["client_secret"])
    claims = verified(token["id_token"], secret, meta["issuer"], provider["client_id"], nonce)
    assert claims["sub"] == "bob" and claims["groups"] == []  # sub_mode user_username; bob is in no group
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    code_of(browser.get(url), redirect, state)  # consent is remembered
    # logout: to a registered logout URI with the state, and the session is gone
    out = browser.get(f"{BASE}/application/o/wiki/end-session/?post_logout_redirect_uri={WIKI_LOGOUT}&state=bye")
    assert out.status_code == 302 and out.headers["Location"] == WIKI_LOGOUT + "?state=bye"
    assert 'id="login-form"' in browser.get(url).text
    page = Browser().get(f"{BASE}/application/o/wiki/end-session/?post_logout_redirect_uri=https://evil.example/")
    assert page.status_code == 200 and "logged out of Wiki" in page.text


def test_authentik_twin_oidc(authentik_lab, monkeypatch):
    lab = authentik_lab
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(lab.root / "pki" / "ca.pem"))
    lab.run(*UP)
    assert lab.json("endpoints.json")["components"]["authentik"]["url"] == BASE
    admin = Admin(lab.json("credentials.json")["authentik"]["token"])
    made = set_up_sso(admin)
    grafana_login_with_pkce(made)
    redirect_uris_are_strict(made)
    wiki_asks_consent_and_signs_hs256(made)
    assert requests.get(f"{BASE}/_lab/rejects", timeout=10).json() == []
    lab.run("down")


# -- pure parts, no lab ------------------------------------------------------------------------------
def test_scope_mapping_expressions_run_like_authentiks():
    from turnkey_lab.twins.authentik import expressions

    groups = [{"name": "admins", "attributes": {"role": "admin"}}, {"name": "ops", "attributes": {}}]
    user = expressions.User({"username": "alice", "name": "Alice", "email": "a@example.com", "pk": 7,
                             "is_superuser": False, "attributes": {"upn": "alice@corp"}}, groups, groups)

    def run(text):
        return expressions.evaluate(text, user, None, ["openid"])

    assert run('return {"groups": [group.name for group in request.user.ak_groups.all()]}') == {
        "groups": ["admins", "ops"]}
    assert run('return {"g": [g.name for g in user.groups.filter(name="ops")], "n": request.user.groups.count()}') == {
        "g": ["ops"], "n": 2}
    assert run('if ak_is_group_member(request.user, name="admins"):\n    return {"role": "Admin"}\nreturn {}') == {
        "role": "Admin"}
    assert run('return {"role": request.user.group_attributes().get("role"), "upn": user.attributes["upn"]}') == {
        "role": "admin", "upn": "alice@corp"}
    with pytest.raises(NameError):
        run('return __import__("os").getcwd()')  # no imports in the twin's namespace
    with pytest.raises(SyntaxError):
        expressions.compile_expression("return {")


# -- a real relying party: OpenBao's OIDC auth method -------------------------------------------------
def test_openbao_logs_in_through_the_twin(authentik_lab, monkeypatch):
    """The real OpenBao configured against a twin provider: auth_url -> the twin's login -> OpenBao's
    callback; the `groups` claim maps to an external group's policy, as layer 03 wires Vault's UI."""
    import hvac

    lab = authentik_lab
    ca = lab.root / "pki" / "ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    lab.run("up", "--profile", "fast", "--components", "openbao,authentik")
    made = set_up_sso(Admin(lab.json("credentials.json")["authentik"]["token"]))
    bao_url = lab.json("endpoints.json")["components"]["openbao"]["url"]
    callback = f"{bao_url}/ui/vault/auth/oidc/oidc/callback"
    admin = Admin(lab.json("credentials.json")["authentik"]["token"])
    vault = admin("PATCH", f"/providers/oauth2/{made['grafana']['pk']}/", {"redirect_uris": [
        {"matching_mode": "strict", "url": GRAFANA_CB}, {"matching_mode": "strict", "url": callback}]})
    bao = hvac.Client(url=bao_url, verify=str(ca), token=lab.json("credentials.json")["openbao"]["root_token"],
                      timeout=10)
    configure_oidc(bao, issuer=f"{BASE}/application/o/grafana/", client_id="grafana",
                   client_secret=vault["client_secret"], ca_pem=ca.read_text(), role="sso", callback=callback,
                   scopes=["openid", "profile", "email"], group="grafana-admins", policy="grafana-admin",
                   policy_hcl='path "secret/*" { capabilities = ["read"] }')

    def login(username: str, password: str) -> dict:
        auth_url = bao.auth.oidc.oidc_authorization_url_request(role="sso", redirect_uri=callback)["data"]["auth_url"]
        assert auth_url.startswith(f"{BASE}/application/o/authorize/"), auth_url
        location = Browser().login(auth_url, username, password)
        assert location.status_code == 302, location.text
        query = parse_qs(urlsplit(location.headers["Location"]).query)
        anonymous = hvac.Client(url=bao_url, verify=str(ca), timeout=10)
        answer = anonymous.adapter.get("/v1/auth/oidc/oidc/callback",
                                       params={"state": query["state"][0], "code": query["code"][0]})
        auth = answer["auth"]
        me = hvac.Client(url=bao_url, verify=str(ca), token=auth["client_token"], timeout=10).lookup_token()["data"]
        return {**auth, "display_name": me["display_name"]}

    alice = login("alice", "alice-pw")
    assert alice["metadata"]["role"] == "sso" and alice["display_name"] == "oidc-alice"
    assert "grafana-admin" in alice["identity_policies"] and "default" in alice["policies"]
    bob = login("bob", "bob-pw")
    assert bob["display_name"] == "oidc-bob" and "grafana-admin" not in (bob.get("identity_policies") or [])
    assert requests.get(f"{BASE}/_lab/rejects", timeout=10).json() == []
    lab.run("down")
