"""The Authentik twin started by the cluster (lab/turnkey_lab/components/authentik.py, twins/authentik/bootstrap.py):
it learns its bootstrap token and akadmin's password from the env of the cluster's `authentik/authentik-server`
Deployment, resolved from the Secrets as a kubelet resolves them, and applies Authentik's bootstrap blueprint, so a
lab run proves store -> Vault -> External Secrets -> Secret -> Authentik (this test writes the Secrets itself).

The cluster is the real etcd + kube-apiserver of tests/integration/cluster, laid out where the Talos twin keeps its
cluster (test_lab_flux.twin_cluster). Lab net 127.116 (the twin on .0.20), the API server on 127.116.1.1.
"""

from __future__ import annotations

import base64
import secrets

import pytest
import requests
from authlib.common.security import generate_token
from joserfc.jwk import KeySet

from tests.integration.cluster import conftest as cluster_fixture
from tests.lab.test_lab_authentik_oidc import Browser, code_of, oidc_client, verified
from tests.lab.test_lab_flux import controller_lab, supervised
from tests.schemas import official_schema

from .conftest import wait_for

pytestmark = pytest.mark.lab

NET = "127.116"
API_ADDRESS = NET + ".1.1"
BASE = f"https://{NET}.0.20:9443"
API = f"{BASE}/api/v3"
CALLBACK = "https://grafana.example/login/generic_oauth"
# The env of the stand-in chart's authentik-server (secretKeyRef to the Secrets External Secrets makes).
ENV = {"AUTHENTIK_BOOTSTRAP_TOKEN": ("authentik-bootstrap-token", "token"),
       "AUTHENTIK_BOOTSTRAP_PASSWORD": ("authentik-bootstrap-password", "password"),
       "AUTHENTIK_SECRET_KEY": ("authentik-secret-key", "secret_key"),
       "AUTHENTIK_POSTGRESQL__PASSWORD": ("authentik-postgres-password", "password")}


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    """The cluster tests' etcd + kube-apiserver, on this module's address."""
    yield from cluster_fixture.bare_control_plane(tmp_path_factory, API_ADDRESS)


@pytest.fixture
def bootstrap_lab(control_plane, make_lab, monkeypatch):
    with controller_lab(make_lab, NET, control_plane[0], ("TURNKEY_KUBECTL",), ("authentik",), lines=30) as found:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(found[0].root / "pki" / "ca.pem"))
        yield found


def secret(name: str, values: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "authentik"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}}


def deployment() -> dict:
    """An authentik-server as the stand-in chart has it (what matters here: the env by secretKeyRef)."""
    env = [{"name": name, "valueFrom": {"secretKeyRef": {"name": ref, "key": key}}}
           for name, (ref, key) in ENV.items()]
    labels = {"app.kubernetes.io/name": "authentik", "app.kubernetes.io/component": "server"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "authentik-server", "namespace": "authentik"},
            "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
                "containers": [{"name": "server", "image": "ghcr.io/goauthentik/server:2026.5.6", "args": ["server"],
                                "env": [*env, {"name": "AUTHENTIK_LOG_LEVEL", "value": "info"}]}]}}}}


def me(token: str) -> requests.Response:
    return requests.get(API + "/core/users/me/", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def refused(token: str) -> bool:
    answer = me(token)
    return answer.status_code == 403 and answer.json() == {"detail": "Token invalid/expired"}


def detail(lab) -> str:
    return supervised(lab)["authentik"]["detail"]


def oidc_login(token: str, username: str, password: str) -> tuple[requests.Response, dict | None]:
    """A provider and application made with `token`, then the authorization-code flow with PKCE as `username`: the
    login form's answer, and the ID token's claims when the login succeeded."""
    def api(method: str, path: str, body: dict | None = None, **params):
        answer = requests.request(method, API + path, json=body, params=params, timeout=10,
                                  headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code in (200, 201), (path, answer.text)
        return answer.json()

    provider = (api("GET", "/providers/oauth2/", name="grafana")["results"] or [None])[0]
    if provider is None:
        flow = {slug: api("GET", "/flows/instances/", slug=slug)["results"][0]["pk"] for slug in (
            "default-provider-authorization-implicit-consent", "default-provider-invalidation-flow")}
        key = api("GET", "/crypto/certificatekeypairs/", name="authentik Self-signed Certificate")["results"][0]["pk"]
        scopes = [api("GET", "/propertymappings/provider/scope/",
                      managed=f"goauthentik.io/providers/oauth2/scope-{s}")["results"][0]["pk"]
                  for s in ("openid", "email", "profile")]
        provider = api("POST", "/providers/oauth2/", {
            "name": "grafana", "authorization_flow": flow["default-provider-authorization-implicit-consent"],
            "invalidation_flow": flow["default-provider-invalidation-flow"], "client_id": "grafana",
            "signing_key": key, "property_mappings": scopes,
            "redirect_uris": [{"matching_mode": "strict", "url": CALLBACK}]})
        api("POST", "/core/applications/", {"name": "Grafana", "slug": "grafana", "provider": provider["pk"]})
    meta = requests.get(f"{BASE}/application/o/grafana/.well-known/openid-configuration", timeout=10).json()
    client = oidc_client(provider, CALLBACK)
    client.scope = "openid email profile"
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    answer = Browser().login(url, username, password)
    if answer.status_code != 302:
        return answer, None
    location = code_of(answer, CALLBACK, state)
    tokens = client.fetch_token(meta["token_endpoint"], authorization_response=location, code_verifier=verifier)
    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    return answer, verified(tokens["id_token"], keys, meta["issuer"], "grafana", nonce)


def test_the_cluster_starts_authentik_with_its_bootstrap_secrets(bootstrap_lab):
    from turnkey_lab.twins.authentik import spec, validate

    checks = validate.Checks(spec.Spec(official_schema(spec.RELATIVE), spec.cache_dir()))
    lab, cluster, _tools = bootstrap_lab
    token, password = secrets.token_urlsafe(40), secrets.token_urlsafe(20)
    lab.run("up", "--profile", "fast", "--components", "authentik")
    lab_secrets = lab.json("credentials.json")["authentik"]
    lab_password = lab_secrets["password"]
    mine = me(lab_secrets["token"])
    assert mine.status_code == 200 and mine.json()["user"]["username"] == "akadmin", mine.text
    assert checks.response("GET", "/core/users/me/", 200, mine.json()) == {}

    # Harsh like the real one: no Deployment, no Authentik for the cluster's token
    wait_for(lambda: "no Deployment authentik/authentik-server" in detail(lab), 30)
    assert refused(token)

    # The Deployment and its Secrets, one key wrong: the kubelet would not start the pod, nothing is applied
    cluster.run("create", "namespace", "authentik")
    cluster.apply(secret("authentik-bootstrap-token", {"token": token}))
    cluster.apply(secret("authentik-bootstrap-password", {"password": password}))
    cluster.apply(secret("authentik-secret-key", {"secret_key": secrets.token_urlsafe(50)}))
    cluster.apply(secret("authentik-postgres-password", {"pw": "not the key the env names"}))
    cluster.apply(deployment())
    wait_for(lambda: "couldn't find key password in Secret authentik/authentik-postgres-password" in detail(lab), 30)
    assert refused(token)
    cluster.run("delete", "secret", "-n", "authentik", "authentik-postgres-password")
    wait_for(lambda: 'cannot start: secret "authentik-postgres-password" not found' in detail(lab), 30)
    assert refused(token)
    assert lab.json("credentials.json")["authentik"]["password"] == lab_password

    # Every Secret there: the pod starts, the blueprint gives the cluster's token and password to akadmin
    cluster.apply(secret("authentik-postgres-password", {"password": secrets.token_urlsafe(20)}))

    def accepted():
        answer = me(token)
        return answer if answer.status_code == 200 else None

    answer = wait_for(accepted, 30, interval=0.5)
    user = answer.json()["user"]
    assert user["username"] == "akadmin" and user["is_superuser"] is True
    assert "authentik Admins" in [g["name"] for g in user["groups"]]
    assert checks.response("GET", "/core/users/me/", 200, answer.json()) == {}
    wait_for(lambda: "started by the cluster" in detail(lab), 15)  # the status is the lab's last reconcile's
    wait_for(lambda: lab.json("credentials.json")["authentik"]["password"] == password, 15)
    assert lab.json("credentials.json")["authentik"]["token"] == lab_secrets["token"]  # the lab's own stays
    assert me(lab_secrets["token"]).status_code == 200
    listed = requests.get(API + "/core/tokens/", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    by_identifier = {t["identifier"]: t for t in listed["results"]}
    assert sorted(by_identifier) == ["authentik-bootstrap-token", "turnkey-lab-token"]
    made = by_identifier["authentik-bootstrap-token"]
    assert (made["intent"], made["expiring"], made["user_obj"]["username"]) == ("api", False, "akadmin")

    # akadmin logs in through OIDC with the bootstrap password; the lab's first password is gone
    _answer, claims = oidc_login(token, "akadmin", password)
    assert claims and claims["preferred_username"] == "akadmin"
    old, claims = oidc_login(token, "akadmin", lab_password)
    assert claims is None and old.status_code == 200 and "Failed to authenticate." in old.text

    # Later starts re-apply the blueprint, whose objects exist: new values in the Secrets change nothing
    cluster.run("delete", "deployment", "-n", "authentik", "authentik-server")
    wait_for(lambda: refused(token), 30, interval=0.5)
    assert me(lab_secrets["token"]).status_code == 200  # the lab's token does not need the cluster
    other_token, other_password = secrets.token_urlsafe(40), secrets.token_urlsafe(20)
    cluster.apply(secret("authentik-bootstrap-token", {"token": other_token}))
    cluster.apply(secret("authentik-bootstrap-password", {"password": other_password}))
    cluster.apply(deployment())
    wait_for(lambda: me(token).status_code == 200, 30, interval=0.5)
    assert refused(other_token)
    assert oidc_login(token, "akadmin", password)[1]
    assert oidc_login(token, "akadmin", other_password)[1] is None

    # The lab goes down and up: the cluster starts it again, with what the first start made
    lab.run("down")
    lab.run("up", "--profile", "fast", "--components", "authentik")
    wait_for(lambda: me(token).status_code == 200, 30, interval=0.5)
    assert requests.get(f"{BASE}/_lab/rejects", timeout=10).json() == []
    for text in lab.outputs:
        assert token not in text and password not in text


# -- a new cluster's Authentik starts from an empty database (pure: the blueprint on the twin's state) ------------
def test_a_new_clusters_first_start_is_an_empty_authentik():
    """Real Authentik keeps its objects in the cluster's PostgreSQL: a rebuilt cluster's Authentik starts with a
    fresh database, so layer 03 must make every group, user, provider and application again. The same cluster
    starting its pod again keeps them (its database survives a pod restart)."""
    from turnkey_lab.twins.authentik import bootstrap, seed, tokens

    lab_key = "lab-token-" + "l" * 40
    data = seed.fresh("https://auth.example", lab_key, "lab-password", "2026-12-06T00:00:00Z")
    fresh_mappings = set(data["propertymappings"])

    def made_by_layer_03():
        data["groups"]["g1"] = {"pk": "g1", "name": "grafana-admins"}
        data["users"]["7"] = {"pk": "7", "username": "turnkey-admin", "groups": ["g1"]}
        data["providers"]["3"] = {"pk": 3, "name": "grafana", "client_id": "grafana"}
        data["applications"]["grafana"] = {"slug": "grafana", "provider": 3}
        data["propertymappings"]["m1"] = {"pk": "m1", "managed": None, "name": "Groups Mapping"}
        data["grants"]["x"] = {"user": "7"}

    env = {bootstrap.TOKEN: "cluster-a-token-" + "a" * 40, bootstrap.PASSWORD: "cluster-a-password"}
    bootstrap.apply(data, env, "cluster-a", lab_key, "2026-12-06T01:00:00Z")
    made_by_layer_03()
    bootstrap.apply(data, env, "cluster-a", lab_key, "2026-12-06T02:00:00Z")  # the pod again: all kept
    assert "g1" in data["groups"] and "7" in data["users"] and "grafana" in data["applications"]

    env_b = {bootstrap.TOKEN: "cluster-b-token-" + "b" * 40, bootstrap.PASSWORD: "cluster-b-password"}
    done = bootstrap.apply(data, env_b, "cluster-b", lab_key, "2026-12-06T03:00:00Z")
    assert [g["name"] for g in data["groups"].values()] == [seed.ADMIN_GROUP], done
    assert [u["username"] for u in data["users"].values()] == [seed.ADMIN_USER]
    assert data["providers"] == {} and data["applications"] == {} and data["grants"] == {}
    assert set(data["propertymappings"]) == fresh_mappings  # the managed ones only
    held = {t["identifier"]: t["_key"] for t in data["tokens"].values()}
    assert held == {tokens.BOOTSTRAP: env_b[bootstrap.TOKEN], tokens.LAB: lab_key}
    assert any("empty database" in line for line in done), done
