"""The Authentik twin's API through the REAL lab (CLI, supervisor, HTTPS with the lab CA), no mocks.

Spoken to two ways: the official `authentik-client` (2026.5.6, what the collection's modules use) and plain
HTTPS (requests) for the error shapes. Every answer requests saw is checked, at the end, against the
response schemas of Authentik's own OpenAPI document. ONE test of steps, so `pytest -n 2` can't split the lab.
"""

from __future__ import annotations

import fcntl
import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import authentik_client as ak
import pytest
import requests

from tests.schemas import official_schema

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]

NET = "127.111"  # also test_lab_authentik_oidc.py's: the two take turns (authentik_lab)
BASE = f"https://{NET}.0.20:9443"
API = f"{BASE}/api/v3"
UP = ("up", "--profile", "fast", "--components", "authentik")
ZERO = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def authentik_lab(make_lab):
    """An isolated lab on NET, held with a file lock: both Authentik test modules use the net, and pytest -n
    may run them at once."""
    with open(Path(tempfile.gettempdir()) / f"turnkey-lab-net-{NET}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lab = make_lab(NET)
        try:
            yield lab
        finally:  # down before the lock goes (make_lab's own teardown would come after it)
            lab.run("down", ok=False)
            lab.kill_everything()


class Plain:
    """The API over plain HTTPS; every answer is kept for the contract check."""

    def __init__(self, lab, token: str):
        self.session = requests.Session()
        self.session.verify = str(lab.root / "pki" / "ca.pem")
        self.token = token
        self.seen: list[tuple[str, str, int, object]] = []

    def __call__(self, method: str, path: str, body: object = None, token: str | None = "default", **params):
        headers = {} if token is None else {"Authorization": f"Bearer {self.token if token == 'default' else token}"}
        answer = self.session.request(method, API + path, json=body, headers=headers, params=params, timeout=10)
        self.seen.append((method, urlsplit(answer.url).path[len("/api/v3"):], answer.status_code,
                          answer.json() if answer.content else None))
        return answer

    def ok(self, method: str, path: str, body: object = None, status: int = 200, **params):
        answer = self(method, path, body, **params)
        assert answer.status_code == status, (method, path, answer.status_code, answer.text)
        return answer.json() if answer.content else None


def client(lab, token: str) -> ak.ApiClient:
    config = ak.Configuration(host=API, access_token=token)
    config.ssl_ca_cert = str(lab.root / "pki" / "ca.pem")
    return ak.ApiClient(config)


def error(answer, status: int) -> dict:
    assert answer.status_code == status, answer.text
    return answer.json()


# -- the steps ---------------------------------------------------------------------------------------
def up_writes_endpoints_and_secrets(lab) -> dict:
    result = lab.run(*UP)
    assert f"authentik healthy at {BASE}" in result.stdout
    entry = lab.json("endpoints.json")["components"]["authentik"]
    assert entry["api_url"] == API and entry["schema_validation"] is True and entry["release"] == "2026.5.6"
    secrets = lab.json("credentials.json")["authentik"]
    assert secrets["username"] == "akadmin" and len(secrets["token"]) >= 32 and len(secrets["password"]) >= 16
    assert oct((lab.root / "credentials.json").stat().st_mode & 0o777) == "0o600"
    assert "schema validation on" in lab.status()["components"]["authentik"]["detail"]
    return secrets


def a_fresh_install(plain: Plain) -> dict:
    """The objects a fresh Authentik has; returns the ones later steps use."""
    admins = plain.ok("GET", "/core/groups/", name="authentik Admins")["results"]
    assert len(admins) == 1 and admins[0]["is_superuser"] is True
    assert [u["username"] for u in admins[0]["users_obj"]] == ["akadmin"]
    akadmin = plain.ok("GET", "/core/users/", username="akadmin")["results"][0]
    assert akadmin["is_superuser"] is True and akadmin["groups"] == [admins[0]["pk"]]
    flows = {f["slug"]: f for f in plain.ok("GET", "/flows/instances/")["results"]}
    for slug in ("default-authentication-flow", "default-invalidation-flow", "default-provider-invalidation-flow",
                 "default-provider-authorization-explicit-consent", "default-provider-authorization-implicit-consent"):
        assert slug in flows, slug
    assert flows["default-provider-authorization-implicit-consent"]["designation"] == "authorization"
    scopes = {m["managed"]: m for m in plain.ok("GET", "/propertymappings/provider/scope/")["results"]}
    openid = scopes["goauthentik.io/providers/oauth2/scope-openid"]
    assert openid["name"] == "authentik default OAuth Mapping: OpenID 'openid'"
    assert scopes["goauthentik.io/providers/oauth2/scope-profile"]["scope_name"] == "profile"
    assert "groups" in scopes["goauthentik.io/providers/oauth2/scope-profile"]["expression"]
    pairs = plain.ok("GET", "/crypto/certificatekeypairs/", name="authentik Self-signed Certificate")["results"]
    assert len(pairs) == 1 and pairs[0]["key_type"] == "rsa" and pairs[0]["private_key_available"] is True
    assert re.fullmatch(r"([0-9a-f]{2}:){31}[0-9a-f]{2}", pairs[0]["fingerprint_sha256"])
    outposts = plain.ok("GET", "/outposts/instances/", managed__iexact="goauthentik.io/outposts/embedded")["results"]
    assert [o["name"] for o in outposts] == ["authentik Embedded Outpost"]
    assert plain.ok("GET", "/admin/version/")["version_current"] == "2026.5.6"
    assert plain.session.get(BASE + "/-/health/ready/", timeout=10).status_code == 200
    tokens = plain.ok("GET", "/core/tokens/")["results"]
    assert [t["identifier"] for t in tokens] == ["authentik-bootstrap-token"] and "key" not in tokens[0]
    return {"flows": flows, "scopes": scopes, "keypair": pairs[0], "outpost": outposts[0], "akadmin": akadmin}


def errors_in_authentiks_shapes(plain: Plain, lab) -> None:
    assert error(plain("GET", "/core/users/", token=None), 403) == {
        "detail": "Authentication credentials were not provided."}
    assert error(plain("GET", "/core/users/", token="wrong"), 403) == {"detail": "Token invalid/expired"}
    basic = plain.session.get(API + "/core/users/", auth=("akadmin", "x"), timeout=10)
    assert error(basic, 403) == {"detail": "Unsupported authentication type"}
    assert error(plain("GET", f"/core/groups/{ZERO}/"), 404) == {"detail": "No Group matches the given query."}
    assert error(plain("GET", "/core/applications/nope/"), 404) == {"detail": "No Application matches the given query."}
    assert error(plain("GET", "/core/users/not-a-number/"), 404) == {"detail": "No User matches the given query."}
    session = plain.session
    session.delete(BASE + "/_lab/requests", timeout=10)
    assert error(plain("POST", "/core/groups/", {}), 400) == {"name": ["This field is required."]}
    assert error(plain("POST", "/core/groups/", {"name": "", "parents": ["x"], "users": ["a"]}), 400) == {
        "name": ["This field may not be blank."], "parents": {"0": ["Must be a valid UUID."]},
        "users": {"0": ["A valid integer is required."]}}
    assert error(plain("POST", "/core/users/", {"username": "u", "name": "U", "type": "robot"}), 400) == {
        "type": ['"robot" is not a valid choice.']}
    assert error(plain("POST", "/core/applications/", {"name": "A", "slug": "no spaces"}), 400) == {
        "slug": ["Enter a valid \u201cslug\u201d consisting of letters, numbers, underscores or hyphens."]}
    assert error(plain("GET", "/core/groups/", is_superuser="maybe"), 400) == {
        "is_superuser": ["Select a valid choice."]}
    assert error(plain("POST", "/core/groups/", {"name": "g", "parents": [ZERO]}), 400) == {
        "parents": [f'Invalid pk "{ZERO}" - object does not exist.']}
    rejects = session.get(BASE + "/_lab/rejects", timeout=10).json()
    assert [r["path"] for r in rejects] == ["/api/v3/core/groups/"] * 2 + [
        "/api/v3/core/users/", "/api/v3/core/applications/", "/api/v3/core/groups/"]
    assert error(plain("GET", "/core/groups/", page=9), 404) == {"detail": "Invalid page."}
    assert error(plain("DELETE", "/flows/instances/default-authentication-flow/"), 405) == {
        "detail": 'Method "DELETE" not allowed.'}
    garbage = session.post(API + "/core/groups/", data=b"{not json", timeout=10,
                           headers={"Authorization": f"Bearer {plain.token}", "Content-Type": "application/json"})
    assert garbage.status_code == 400 and garbage.json()["detail"].startswith("JSON parse error")
    session.delete(BASE + "/_lab/requests", timeout=10)  # from here on, nothing may be refused by the document


def the_official_client_manages_sso(api: ak.ApiClient, fresh: dict) -> dict:
    """What the modules do: groups, a user with a password, a groups scope, a provider, its application,
    a proxy provider on the embedded outpost."""
    core, providers = ak.CoreApi(api), ak.ProvidersApi(api)
    mappings, outposts = ak.PropertymappingsApi(api), ak.OutpostsApi(api)
    admins = core.core_groups_create(ak.GroupRequest(name="grafana-admins", attributes={"app": "grafana"}))
    viewers = core.core_groups_create(ak.GroupRequest(name="grafana-viewers"))
    alice = core.core_users_create(ak.UserRequest(username="alice", name="Alice Example", email="alice@example.com",
                                                  groups=[admins.pk]))
    core.core_users_set_password_create(alice.pk, ak.UserPasswordSetRequest(password="alice-password"))
    bob = core.core_users_create(ak.UserRequest(username="bob", name="Bob", email="bob@example.com"))
    core.core_groups_partial_update(viewers.pk, ak.PatchedGroupRequest(users=[bob.pk, alice.pk]))
    assert sorted(core.core_users_retrieve(alice.pk).groups) == sorted([admins.pk, viewers.pk])
    assert core.core_users_retrieve(alice.pk).is_superuser is False
    assert core.core_groups_list(members_by_username=["bob"]).results[0].name == "grafana-viewers"
    groups_scope = mappings.propertymappings_provider_scope_create(ak.ScopeMappingRequest(
        name="turnkey groups", scope_name="groups",
        expression='return {"groups": [group.name for group in request.user.ak_groups.all()]}'))
    with pytest.raises(ak.ApiException) as bad:
        mappings.propertymappings_provider_scope_create(ak.ScopeMappingRequest(
            name="broken", scope_name="x", expression="return {"))
    assert bad.value.status == 400 and "expression" in bad.value.body
    flows = fresh["flows"]
    scopes = [fresh["scopes"][f"goauthentik.io/providers/oauth2/scope-{s}"]["pk"]
              for s in ("openid", "email", "profile")]
    provider = providers.providers_oauth2_create(ak.OAuth2ProviderRequest(
        name="grafana", authorization_flow=flows["default-provider-authorization-implicit-consent"]["pk"],
        invalidation_flow=flows["default-provider-invalidation-flow"]["pk"], client_type=ak.ClientTypeEnum.CONFIDENTIAL,
        client_id="grafana-client", client_secret="s" * 64, signing_key=fresh["keypair"]["pk"],
        property_mappings=[*scopes, groups_scope.pk],
        redirect_uris=[ak.RedirectURIRequest(matching_mode=ak.MatchingModeEnum.STRICT,
                                             url="https://grafana.example/login/generic_oauth")]))
    assert provider.sub_mode == ak.SubModeEnum.HASHED_USER_ID and provider.issuer_mode == ak.IssuerModeEnum.PER_PROVIDER
    assert provider.assigned_application_slug is None
    app = core.core_applications_create(ak.ApplicationRequest(name="Grafana", slug="grafana", provider=provider.pk))
    assert app.provider_obj.name == "grafana" and app.launch_url == "https://grafana.example"
    assert providers.providers_oauth2_retrieve(provider.pk).assigned_application_slug == "grafana"
    assert providers.providers_oauth2_list(client_id="grafana-client").results[0].pk == provider.pk
    changed = providers.providers_oauth2_partial_update(provider.pk, ak.PatchedOAuth2ProviderRequest(
        redirect_uris=[ak.RedirectURIRequest(matching_mode=ak.MatchingModeEnum.REGEX, url="https://grafana\\.example/.*")]))
    assert changed.redirect_uris[0].matching_mode == ak.MatchingModeEnum.REGEX and changed.client_secret == "s" * 64
    proxy = providers.providers_proxy_create(ak.ProxyProviderRequest(
        name="whoami", authorization_flow=flows["default-provider-authorization-implicit-consent"]["pk"],
        invalidation_flow=flows["default-provider-invalidation-flow"]["pk"], external_host="https://whoami.example",
        mode=ak.ProxyMode.FORWARD_SINGLE))
    core.core_applications_create(ak.ApplicationRequest(name="whoami", slug="whoami", provider=proxy.pk))
    outpost = outposts.outposts_instances_partial_update(fresh["outpost"]["pk"],
                                                         ak.PatchedOutpostRequest(providers=[proxy.pk]))
    assert outpost.providers == [proxy.pk]
    assert providers.providers_proxy_retrieve(proxy.pk).outpost_set == ["Outpost authentik Embedded Outpost"]
    return {"provider": provider, "proxy": proxy, "alice": alice, "bob": bob, "admins": admins, "viewers": viewers}


def references_and_uniqueness(plain: Plain, api: ak.ApiClient, made: dict, fresh: dict) -> None:
    flows = fresh["flows"]
    body = {"name": "other", "authorization_flow": ZERO,
            "invalidation_flow": flows["default-provider-invalidation-flow"]["pk"],
            "redirect_uris": [{"matching_mode": "strict", "url": "https://o.example/cb"}]}
    assert error(plain("POST", "/providers/oauth2/", body), 400) == {
        "authorization_flow": [f'Invalid pk "{ZERO}" - object does not exist.']}
    body["authorization_flow"] = flows["default-provider-authorization-explicit-consent"]["pk"]
    assert error(plain("POST", "/providers/oauth2/", {**body, "name": "grafana"}), 400) == {
        "name": ["Provider with this name already exists."]}
    assert error(plain("POST", "/providers/oauth2/", {**body, "redirect_uris": [{"matching_mode": "regex",
                                                                                 "url": "(["}]}), 400)["redirect_uris"]
    assert error(plain("POST", "/core/users/", {"username": "alice", "name": "A"}), 400) == {
        "username": ["A user with that username already exists."]}
    assert error(plain("POST", "/core/applications/", {"name": "G2", "slug": "grafana"}), 400) == {
        "slug": ["Application with this slug already exists."]}
    assert error(plain("POST", "/core/applications/", {"name": "G2", "slug": "g2", "provider": made["provider"].pk}),
                 400) == {"provider": ["Application with this provider already exists."]}
    assert error(plain("POST", "/providers/proxy/", {
        "name": "p2", "authorization_flow": body["authorization_flow"], "invalidation_flow": body["invalidation_flow"],
        "external_host": "https://p2.example"}), 400) == {
        "internal_host": ["Internal host cannot be empty when forward auth is disabled."]}
    assert "providers" in error(plain("PATCH", f"/outposts/instances/{fresh['outpost']['pk']}/",
                                      {"providers": [made["provider"].pk]}), 400)
    # readOnly fields in a body are ignored, as DRF does
    renamed = plain.ok("PATCH", f"/core/groups/{made['viewers'].pk}/", {"pk": ZERO, "num_pk": 1, "name": "viewers"})
    assert renamed["pk"] == str(made["viewers"].pk) and renamed["name"] == "viewers"
    # a deleted provider leaves its application without one (and off the outpost)
    scratch = plain.ok("POST", "/providers/oauth2/", {**body, "name": "scratch"}, status=201)
    plain.ok("POST", "/core/applications/", {"name": "Scratch", "slug": "scratch", "provider": scratch["pk"]},
             status=201)
    plain.ok("DELETE", f"/providers/oauth2/{scratch['pk']}/", status=204)
    assert plain.ok("GET", "/core/applications/scratch/")["provider"] is None
    plain.ok("DELETE", "/core/applications/scratch/", status=204)
    assert error(plain("GET", "/core/applications/scratch/"), 404)
    # a deleted group leaves its members
    plain.ok("DELETE", f"/core/groups/{made['viewers'].pk}/", status=204)
    assert plain.ok("GET", f"/core/users/{made['bob'].pk}/")["groups"] == []


def listing_filters_pages_and_orders(plain: Plain) -> None:
    for n in range(5):
        plain.ok("POST", "/core/groups/", {"name": f"team-{n}", "is_superuser": n == 3}, status=201)
    first = plain.ok("GET", "/core/groups/", search="team", page_size=2, ordering="-name")
    assert first["pagination"] == {"next": 2, "previous": 0, "count": 5, "current": 1, "total_pages": 3,
                                   "start_index": 1, "end_index": 2}
    assert [g["name"] for g in first["results"]] == ["team-4", "team-3"]
    last = plain.ok("GET", "/core/groups/", search="team", page_size=2, page=3, ordering="-name")
    assert last["pagination"]["next"] == 0 and last["pagination"]["previous"] == 2
    assert last["pagination"]["start_index"] == last["pagination"]["end_index"] == 5
    assert [g["name"] for g in plain.ok("GET", "/core/groups/", is_superuser="true", search="team")["results"]] == [
        "team-3"]
    assert plain.ok("GET", "/core/groups/", name="team-1")["pagination"]["count"] == 1
    assert [a["slug"] for a in plain.ok("GET", "/core/applications/", ordering="slug")["results"]] == [
        "grafana", "whoami"]
    assert plain.ok("GET", "/core/applications/", slug="whoami")["results"][0]["name"] == "whoami"
    assert plain.ok("GET", "/providers/proxy/", name__iexact="WHOAMI")["pagination"]["count"] == 1
    managed = plain.ok("GET", "/propertymappings/provider/scope/",
                       managed="goauthentik.io/providers/oauth2/scope-email")
    assert [m["scope_name"] for m in managed["results"]] == ["email"]
    assert plain.ok("GET", "/propertymappings/provider/scope/", managed__isnull="true")["results"][0]["name"] == \
        "turnkey groups"
    assert plain.ok("GET", "/flows/instances/", designation="authorization")["pagination"]["count"] == 2
    assert plain.ok("GET", "/core/groups/", include_users="false", name="authentik Admins")["results"][0][
        "users_obj"] is None
    for listed in ("/core/users/", "/providers/oauth2/", "/outposts/instances/", "/crypto/certificatekeypairs/"):
        answer = plain.ok("GET", listed)
        for item in answer["results"]:
            plain.ok("GET", f"{listed}{item.get('slug') or item['pk']}/")


def contract(plain: Plain) -> None:
    """Every answer of this test against the document's response schema for its operation and status."""
    from turnkey_lab.twins.authentik import spec, validate

    checks = validate.Checks(spec.Spec(spec.find(), spec.cache_dir()))
    templates = sorted({t for _m, t in checks.spec.operations}, key=lambda t: (t.count("{"), t))
    patterns = [(t, re.compile("^" + re.sub(r"\{[a-z_]+\}", "[^/]+", t) + "$")) for t in templates]
    checked, problems = 0, []
    for method, path, status, body in plain.seen:
        template = next((t for t, p in patterns if p.match(path) and checks.spec.operation(method, t)), None)
        if template is None or status in (404, 405):  # 404/405 bodies: DRF's {"detail"}, not in the document
            continue
        found = checks.response(method, template, status, body)
        checked += 1
        if found:
            problems.append((method, path, status, found))
    assert not problems, problems[:5]
    assert checked > 50, checked


def test_authentik_twin_api(authentik_lab, tmp_path, monkeypatch):
    from turnkey_lab.twins.authentik import spec

    official_schema(spec.RELATIVE)  # the contract check needs Authentik's document
    lab = authentik_lab
    # A session's own `verify` loses to this variable when it is set (requests #3829), so set the variable.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(lab.root / "pki" / "ca.pem"))
    secrets = up_writes_endpoints_and_secrets(lab)
    plain = Plain(lab, secrets["token"])
    api = client(lab, secrets["token"])
    fresh = a_fresh_install(plain)
    errors_in_authentiks_shapes(plain, lab)
    made = the_official_client_manages_sso(api, fresh)
    references_and_uniqueness(plain, api, made, fresh)
    listing_filters_pages_and_orders(plain)
    contract(plain)
    assert plain.session.get(BASE + "/_lab/rejects", timeout=10).json() == [], "the client sent an invalid request"

    # State and secrets survive down/up.
    before = plain.ok("GET", "/core/groups/", ordering="name")
    lab.run("down")
    lab.run(*UP)
    assert lab.json("credentials.json")["authentik"] == secrets
    assert plain.ok("GET", "/core/groups/", ordering="name") == before

    # Without the document (a clone with no ../shared) the twin still works, unvalidated, and says so.
    lab.run("down")
    lab.run(*UP, extra_env={"TURNKEY_SCHEMAS_DIR": str(tmp_path)})
    assert lab.json("endpoints.json")["components"]["authentik"]["schema_validation"] is False
    assert "schema validation OFF" in lab.status()["components"]["authentik"]["detail"]
    assert plain.ok("GET", "/core/applications/grafana/")["provider"] == made["provider"].pk
    assert error(plain("POST", "/core/groups/", {}), 400) == {"name": ["This field is required."]}  # its own check

    lab.run("down")
    assert lab.processes() == []
    logs = "".join(p.read_text() for p in (lab.root / "logs").glob("*.log"))
    for text in (*lab.outputs, logs):
        assert secrets["token"] not in text and secrets["password"] not in text
    state = lab.root / "components" / "authentik"
    for name in ("bootstrap.json", "state.json"):
        assert oct((state / name).stat().st_mode & 0o777) == "0o600", name


# -- pure parts, no lab ------------------------------------------------------------------------------
def test_the_document_is_required_under_ci(monkeypatch, tmp_path):
    """In CI a missing Authentik document fails the tests that need it; on a clone it is a visible skip."""
    from turnkey_lab.twins.authentik import spec

    monkeypatch.setenv("TURNKEY_SCHEMAS_DIR", str(tmp_path))
    assert spec.find() is None  # the twin then runs unvalidated (see test_authentik_twin_api)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must have it"):
        official_schema(spec.RELATIVE)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="authentik-2026.5.6-openapi-schema.yml"):
        official_schema(spec.RELATIVE)


def test_drf_messages_from_the_document(tmp_path):
    from turnkey_lab.twins.authentik import spec, validate

    document = spec.Spec(official_schema(spec.RELATIVE), tmp_path)
    assert document.version == "2026.5.6"
    checks = validate.Checks(document)
    assert checks.body("POST", "/providers/oauth2/", {"name": "p"}, True) == {
        "authorization_flow": ["This field is required."], "invalidation_flow": ["This field is required."],
        "redirect_uris": ["This field is required."]}
    assert checks.body("PATCH", "/providers/oauth2/{id}/", {"signing_key": None, "sub_mode": "nope"}, True) == {
        "sub_mode": ['"nope" is not a valid choice.']}
    assert checks.body("PATCH", "/core/users/{id}/", {"email": "not-an-address", "name": None}, True) == {
        "email": ["Enter a valid email address."], "name": ["This field may not be null."]}
    assert checks.body("POST", "/core/groups/", ["x"], True) == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}
    assert list(tmp_path.glob("authentik-2026.5.6-openapi-schema-*.json")), "the parsed document is cached"
    assert spec.Spec(spec.find(), tmp_path).operations.keys() == document.operations.keys()
    assert spec.cache_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/turnkey-cluster/lab-schemas")
    assert Path(spec.find()).name == spec.RELATIVE.name
