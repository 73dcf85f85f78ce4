"""Layer 03 (playbooks/03-configuration.yml) through the real ansible-playbook on a lab of the real OpenBao, the
real PowerDNS primary and secondary and the Authentik twin (net 127.117, its own state folder, brought down in
the finalizer), on a copy of the lab inventory: the zone and its records on both servers, Authentik's groups,
users, providers (with the store's client secrets) and applications, and Vault's own OIDC login - a real OpenBao
login through the twin, where the admin gets the admin policy and the viewer does not. A rerun and a check run
change nothing. The token is the lab's own (`-e authentik_token`); the cluster-started one is the e2e test's.
One test made of steps, in order: each step starts from what the previous one left."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import dns.message
import dns.query
import dns.rcode
import hvac
import pytest
import requests
import yaml

from tests.lab.test_lab_pdns import query, require_pdns, update
from tests.playbook_runner import copy_inventory, recap, run_playbook
from tests.store_access import open_store

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]

NET = "127.117"
BASE = f"https://{NET}.0.20:9443"
PRIMARY, SECONDARY = f"{NET}.0.18", f"{NET}.0.19"
ZONE = "lab.turnkey.test"
INGRESS, API_VIP = "127.2.3.2", "127.2.3.1"
VAULT_CB = "https://vault.lab.turnkey.test/ui/vault/auth/oidc/oidc/callback"
# The lab's PowerDNS API is plain HTTP on loopback (docs/dns.md#tls); extra records and a proxy app on top.
OVERLAY = {"set": {
    # The lab's domain is private, so no ACME by default; on here, for layer 03's side of DNS-01.
    "platform_tree_acme": True,
    "dns": {"validate_certs": False, "secondary": {"validate_certs": False},
            "records": [{"name": "www", "type": "CNAME", "content": f"grafana.{ZONE}"}]},
    "sso_groups": ["auditors"],
    "sso_apps": [
        {"name": "grafana", "namespace": "grafana", "redirect_uris": ["https://grafana.lab.turnkey.test/login/generic_oauth"],
         "admin_group": "grafana-admins", "groups": ["grafana-admins", "grafana-editors", "grafana-viewers"]},
        {"name": "vault", "redirect_uris": [VAULT_CB, "https://vault.lab.turnkey.test/oidc/callback"],
         "admin_group": "vault-admins", "groups": ["vault-admins", "vault-readers"],
         "vault_policies": {"vault-admins": ["turnkey-sso-admin"], "vault-readers": ["turnkey-sso-read"]}},
        {"name": "kagent", "type": "proxy", "redirect_uris": ["https://kagent.lab.turnkey.test/outpost.goauthentik.io/callback"],
         "groups": ["kagent-users"]},
        {"name": "harbor", "enabled": False, "redirect_uris": ["https://harbor.lab.turnkey.test/c/oidc/callback"],
         "groups": ["harbor-admins"]}],
    "sso_users": [{"name": "turnkey-admin", "email": "admin@lab.turnkey.test",
                   "groups": ["grafana-admins", "vault-admins"]},
                  {"name": "turnkey-viewer", "email": "viewer@lab.turnkey.test", "groups": ["grafana-viewers"]}],
}}


class World:
    def __init__(self, handle, tmp):
        self.handle, self.tmp = handle, tmp
        creds = handle.json("credentials.json")
        self.token = creds["authentik"]["token"]
        self.ca = str(handle.root / "pki" / "ca.pem")
        self.bao_url = handle.json("endpoints.json")["components"]["openbao"]["url"]
        self.inventory = copy_inventory(tmp, "lab", OVERLAY)
        self.env = {"TURNKEY_LAB_DIR": str(handle.root), "TURNKEY_STATE_DIR": str(tmp / "state"),
                    "REQUESTS_CA_BUNDLE": self.ca}
        self.password = (handle.root / "vault-password").read_text().strip()
        self.session = requests.Session()
        self.session.verify = self.ca
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        self.secrets = [self.token, creds["pdns"]["api_key"], creds["pdns-secondary"]["api_key"]]

    def run(self, playbook, *args):
        run = run_playbook("-i", str(self.inventory), *args, playbook=str(playbook), env=self.env, timeout=900)
        for secret in self.secrets + self.store_values():
            assert secret not in run.stdout + run.stderr, "a secret was printed"
        return run

    def configure(self, *args):
        return self.run("playbooks/03-configuration.yml", "-e", f"authentik_token={self.token}", *args)

    def store(self):
        return open_store(self.inventory / "secrets", self.password)

    def store_values(self):
        if not (self.inventory / "secrets").exists():
            return []
        store = self.store()
        return [store.read(name)["data"]["value"] for name in (
            "sso_client_secret_grafana", "sso_client_secret_vault", "sso_password_turnkey_admin",
            "sso_password_turnkey_viewer", "acme_dns01_tsig") if store.read(name)]

    def secret(self, name):
        return self.store().read(name)["data"]["value"]

    def get(self, path, **params):
        answer = self.session.get(f"{BASE}/api/v3{path}", params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def one(self, path, **params):
        results = self.get(path, **params)["results"]
        assert len(results) == 1, (path, params, results)
        return results[0]


def nxdomain(server, name):
    answer = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=3)
    return answer.rcode() == dns.rcode.NXDOMAIN


def changed_tasks(stdout):
    """The names of the tasks that reported a change, from the default output."""
    return [section.split("]", 1)[0] for section in stdout.split("\nTASK [")[1:] if "\nchanged: [" in section]


def prepare(world: World):
    """Layer 00's generate-once secrets the spec implies, then Vault as layer 02 configures it."""
    layer00 = world.tmp / "layer00.yml"
    layer00.write_text(yaml.safe_dump([{"name": "layer 00 tokens", "hosts": "localhost", "gather_facts": False,
                                        "tasks": [{"name": "token", "turnkey.cluster.persistent_secret": {
                                            "name": "{{ item.name }}", "type": "token",
                                            "length": "{{ item.length | default(omit) }}",
                                            "store_path": "{{ secrets_store.path }}",
                                            "vault_password_file": "{{ secrets_store.vault_password_file }}"},
                                            "loop": "{{ (sso_apps, sso_users, authentik, dns) | turnkey.cluster"
                                                    ".sso_secrets('store', secrets_store.tokens) }}",
                                            "loop_control": {"label": "{{ item.name }}"}}]}]))
    made = world.run(layer00)
    assert made.returncode == 0, made.stdout[-3000:]
    # Layer 02's role alone: no cluster here, so Kubernetes auth is pointed at an address nothing answers on.
    kubernetes = {"vault_config_kubernetes_host": f"https://{NET}.0.1:6443",
                  "vault_config_kubernetes_ca_cert": "{{ lookup('ansible.builtin.file', '%s') }}" % world.ca}
    vault = world.tmp / "vault.yml"
    vault.write_text(yaml.safe_dump([{"name": "layer 02 Vault", "hosts": "localhost", "gather_facts": False,
                                      "tasks": [{"name": "Vault as code", "vars": kubernetes,
                                                 "ansible.builtin.include_role": {
                                                     "name": "turnkey.cluster.vault_config"}}]}]))
    made = world.run(vault)
    assert made.returncode == 0, made.stdout[-5000:]


def first_run_configures_everything(world: World):
    run = world.configure("--diff")
    assert run.returncode == 0, run.stdout[-6000:]
    assert recap(run.stdout)["localhost"]["changed"] > 0
    # DNS: the derived records and the spec's own on the primary, and transferred to the secondary.
    for server in (PRIMARY, SECONDARY):
        assert query(server, f"api.{ZONE}.", "A") == [API_VIP]
        for host in ("grafana", "vault", "kagent"):
            assert query(server, f"{host}.{ZONE}.", "A") == [INGRESS], (server, host)
        assert query(server, f"www.{ZONE}.", "CNAME") == [f"grafana.{ZONE}."]
        assert query(server, f"{ZONE}.", "NS") == [f"ns1.{ZONE}."]
        assert query(server, f"ns1.{ZONE}.", "A") == ["127.2.3.3"]  # glue
    assert nxdomain(PRIMARY, f"harbor.{ZONE}.")  # disabled: no record
    # ACME DNS-01: cert-manager's updates, signed with the store's key, from the nodes' network (127.2.0.0/16),
    # change the zone and reach the secondary; from elsewhere, or unsigned, they are refused.
    key = ("acme-dns01", world.secret("acme_dns01_tsig"))
    challenge = f"_acme-challenge.{ZONE}."
    assert update(PRIMARY, ZONE, challenge, "from-a-node", key, source="127.2.0.50") == "NOERROR"
    assert update(PRIMARY, ZONE, challenge, "from-elsewhere", key, source="127.0.0.1") == "REFUSED"
    assert update(PRIMARY, ZONE, challenge, "unsigned", source="127.2.0.50") == "REFUSED"
    assert query(PRIMARY, challenge, "TXT") == ['"from-a-node"']
    # The same secret in Vault, where External Secrets syncs it into Secret cert-manager/acme-dns01-tsig.
    login = world.store().read("vault_playbook_login")["data"]
    bao = hvac.Client(url=world.bao_url, verify=world.ca, timeout=10)
    bao.auth.approle.login(role_id=login["role_id"], secret_id=login["secret_id"], mount_point=login["mount"])
    stored = bao.secrets.kv.v2.read_secret_version(path="cert-manager/acme-dns01-tsig", mount_point="kv",
                                                   raise_on_deleted_version=True)
    assert stored["data"]["data"] == {"secret": key[1]}
    # Authentik: every group, the users in theirs, the providers with the store's secrets, the applications.
    names = {group["name"]: group["pk"] for group in world.get("/core/groups/", page_size=100)["results"]}
    for group in ("grafana-admins", "grafana-editors", "grafana-viewers", "vault-admins", "vault-readers",
                  "kagent-users", "auditors"):
        assert group in names, group
    assert "harbor-admins" not in names
    admin = world.one("/core/users/", username="turnkey-admin")
    assert sorted(admin["groups"]) == sorted([names["grafana-admins"], names["vault-admins"]])
    assert admin["email"] == "admin@lab.turnkey.test"
    mapping = world.one("/propertymappings/provider/scope/", name="turnkey.cluster groups claim")
    assert mapping["scope_name"] == "groups"
    keypair = world.one("/crypto/certificatekeypairs/", name="authentik Self-signed Certificate")
    for app in ("grafana", "vault"):
        provider = world.one("/providers/oauth2/", name=app)
        assert provider["client_id"] == app and provider["client_type"] == "confidential"
        assert provider["client_secret"] == world.secret(f"sso_client_secret_{app}")
        assert provider["signing_key"] == keypair["pk"] and mapping["pk"] in provider["property_mappings"]
        assert {uri["matching_mode"] for uri in provider["redirect_uris"]} == {"strict"}
        assert world.get(f"/core/applications/{app}/")["provider"] == provider["pk"]
    vault = world.one("/providers/oauth2/", name="vault")
    assert [uri["url"] for uri in vault["redirect_uris"]] == OVERLAY["set"]["sso_apps"][1]["redirect_uris"]
    kagent = world.one("/providers/proxy/", name__iexact="kagent")
    assert kagent["mode"] == "forward_single" and kagent["external_host"] == f"https://kagent.{ZONE}"
    outpost = world.one("/outposts/instances/", name__iexact="authentik Embedded Outpost")
    assert outpost["providers"] == [kagent["pk"]]
    assert world.get("/core/applications/", slug="harbor")["results"] == []


class Browser:
    """What a browser does with the twin's login page: fill in the form, keep the session cookie."""

    def __init__(self, ca):
        self.session = requests.Session()
        self.session.verify = ca

    def login(self, url, username, password):
        page = self.session.get(url, allow_redirects=False, timeout=10)
        assert page.status_code == 200 and 'id="login-form"' in page.text, page.text
        form = re.search(r'<form id="login-form" method="post" action="([^"]+)">(.*?)</form>', page.text, re.S)
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2)))
        return self.session.post(urljoin(page.url, form.group(1)), allow_redirects=False, timeout=10,
                                 data={**fields, "uid_field": username, "password": password})


def vault_login(world: World, username):
    """A real OpenBao OIDC login through the twin, as Vault's UI does it: auth_url, Authentik's login form, the
    callback with the code. Returns the token's auth data."""
    bao = hvac.Client(url=world.bao_url, verify=world.ca, timeout=10)
    auth_url = bao.adapter.post("/v1/auth/oidc/oidc/auth_url", json={"role": "default", "redirect_uri": VAULT_CB})
    auth_url = auth_url["data"]["auth_url"]
    assert auth_url.startswith(f"{BASE}/application/o/authorize/"), auth_url
    answer = Browser(world.ca).login(auth_url, username, world.secret("sso_password_" + username.replace("-", "_")))
    assert answer.status_code == 302 and answer.headers["Location"].startswith(VAULT_CB + "?"), answer.text
    params = parse_qs(urlsplit(answer.headers["Location"]).query)
    callback = bao.adapter.get("/v1/auth/oidc/oidc/callback",
                               params={"state": params["state"][0], "code": params["code"][0]})
    return callback["auth"]


def a_client_asking_offline_access_gets_a_refresh_token(world: World):
    """Harbor asks for offline_access to keep a user's CLI secret valid past the ID token (docs/sso.md): Authentik
    grants a scope only when the provider maps it, so each provider carries the managed offline_access mapping, and
    the authorization-code flow with that scope returns a refresh token that a refresh grant accepts."""
    callback = OVERLAY["set"]["sso_apps"][0]["redirect_uris"][0]
    client = {"client_id": "grafana", "client_secret": world.secret("sso_client_secret_grafana")}
    authorize = f"{BASE}/application/o/authorize/?" + urlencode({
        "client_id": "grafana", "response_type": "code", "redirect_uri": callback, "state": "offline",
        "scope": "openid groups offline_access"})
    answer = Browser(world.ca).login(authorize, "turnkey-viewer", world.secret("sso_password_turnkey_viewer"))
    assert answer.status_code == 302 and answer.headers["Location"].startswith(callback + "?"), answer.text
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    tokens = requests.post(f"{BASE}/application/o/token/", verify=world.ca, timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": callback, **client}).json()
    assert "offline_access" in tokens.get("scope", "").split() and tokens.get("refresh_token"), tokens
    refreshed = requests.post(f"{BASE}/application/o/token/", verify=world.ca, timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **client})
    assert refreshed.status_code == 200 and refreshed.json()["access_token"], refreshed.text


def vault_ui_logs_in_through_authentik(world: World):
    admin = vault_login(world, "turnkey-admin")
    assert "turnkey-sso-admin" in admin["identity_policies"], admin
    me = hvac.Client(url=world.bao_url, verify=world.ca, token=admin["client_token"], timeout=10)
    assert me.lookup_token()["data"]["display_name"] == "oidc-turnkey-admin"
    # The admin policy is this collection's: the applications' secrets, nothing of Vault's own configuration.
    me.secrets.kv.v2.create_or_update_secret(path="grafana/by-hand", secret={"k": "v"}, mount_point="kv")
    with pytest.raises(hvac.exceptions.Forbidden):
        me.sys.enable_auth_method("userpass", path="by-hand")
    viewer = vault_login(world, "turnkey-viewer")
    assert not {"turnkey-sso-admin", "turnkey-sso-read"} & set(viewer.get("identity_policies") or []), viewer


def rerun_and_check_change_nothing(world: World):
    for args in ((), ("--check", "--diff")):
        run = world.configure(*args)
        assert run.returncode == 0, run.stdout[-6000:]
        assert recap(run.stdout)["localhost"]["changed"] == 0, changed_tasks(run.stdout) or run.stdout[-6000:]


def one_moved_redirect_uri_changes_only_its_provider_and_role(world: World):
    """The vault app's CLI callback moves: a check run shows it on Authentik's provider and Vault's role, and
    the run changes exactly those two (Vault's configuration, and so its client secret, is not rewritten)."""
    moved = "https://vault.lab.turnkey.test/oidc/callback-moved"
    apps = [dict(app) for app in OVERLAY["set"]["sso_apps"]]
    apps[1]["redirect_uris"] = [VAULT_CB, moved]
    extra = world.tmp / "moved.yml"
    extra.write_text(yaml.safe_dump({"sso_apps": apps}))
    expected = ["turnkey.cluster.sso_apps : The OAuth2 provider of each OIDC app",
                "turnkey.cluster.vault_oidc : Authentik's provider for Vault, and the UI's role"]
    check = world.configure("-e", f"@{extra}", "--check", "--diff")
    assert check.returncode == 0, check.stdout[-6000:]
    assert changed_tasks(check.stdout) == expected, check.stdout[-6000:]
    assert moved in check.stdout
    assert [uri["url"] for uri in world.one("/providers/oauth2/", name="vault")["redirect_uris"]][1] != moved
    run = world.configure("-e", f"@{extra}", "--diff")
    assert run.returncode == 0, run.stdout[-6000:]
    assert changed_tasks(run.stdout) == expected, run.stdout[-6000:]
    assert [uri["url"] for uri in world.one("/providers/oauth2/", name="vault")["redirect_uris"]] == [VAULT_CB, moved]
    assert [uri["url"] for uri in world.one("/providers/oauth2/", name="grafana")["redirect_uris"]] == \
        OVERLAY["set"]["sso_apps"][0]["redirect_uris"]
    login = world.store().read("vault_playbook_login")["data"]
    bao = hvac.Client(url=world.bao_url, verify=world.ca, timeout=10)
    bao.auth.approle.login(role_id=login["role_id"], secret_id=login["secret_id"], mount_point=login["mount"])
    role = bao.adapter.get("/v1/auth/oidc/role/default")["data"]
    assert sorted(role["allowed_redirect_uris"]) == sorted([VAULT_CB, moved])
    assert vault_login(world, "turnkey-admin")["identity_policies"] == ["turnkey-sso-admin"]


def apps_switched_off_are_removed_and_come_back(world: World):
    """grafana (OAuth2) and kagent (proxy) switched off: their applications and providers go; vault's stay, and so
    does an application made by hand (no publisher: not this role's). Switched on again, they come back with the
    store's client secret."""
    admin_session = world.session
    made = admin_session.post(BASE + "/api/v3/core/applications/", json={"name": "by-hand", "slug": "by-hand"},
                              timeout=10)
    assert made.status_code == 201, made.text
    moved = yaml.safe_load((world.tmp / "moved.yml").read_text())
    off = [dict(app, enabled=False) if app["name"] in ("grafana", "kagent") else app for app in moved["sso_apps"]]
    extra = world.tmp / "off.yml"
    extra.write_text(yaml.safe_dump({"sso_apps": off}))
    for args in (("--check", "--diff"), ("--diff",)):
        run = world.configure("-e", f"@{extra}", *args)
        assert run.returncode == 0, run.stdout[-6000:]
        changed = changed_tasks(run.stdout)
        assert {"turnkey.cluster.sso_apps : Remove the application of each app no longer enabled",
                "turnkey.cluster.sso_apps : Remove its OAuth2 provider",
                "turnkey.cluster.sso_apps : Remove its proxy provider"} <= set(changed), changed
    slugs = {app["slug"] for app in world.get("/core/applications/", superuser_full_list="true")["results"]}
    assert slugs == {"vault", "by-hand"}, slugs
    providers = world.get("/providers/oauth2/")["results"] + world.get("/providers/proxy/")["results"]
    assert {provider["name"] for provider in providers} == {"vault"}
    rerun = world.configure("-e", f"@{extra}")
    assert rerun.returncode == 0 and recap(rerun.stdout)["localhost"]["changed"] == 0, changed_tasks(rerun.stdout)

    back = world.configure("-e", f"@{world.tmp / 'moved.yml'}")
    assert back.returncode == 0, back.stdout[-6000:]
    grafana = world.one("/providers/oauth2/", name="grafana")
    assert grafana["client_secret"] == world.secret("sso_client_secret_grafana")
    assert {app["slug"] for app in world.get("/core/applications/", superuser_full_list="true")["results"]} == {
        "grafana", "vault", "kagent", "by-hand"}


def wrong_token_is_named(world: World):
    run = world.run("playbooks/03-configuration.yml", "-e", "authentik_token=not-the-token",
                    "-e", "sso_apps_wait_retries=1", "-e", "sso_apps_wait_delay=0", "--tags", "configuration")
    assert run.returncode != 0
    assert "refused the token (HTTP 403)" in run.stdout and "deployment/authentik-server" in run.stdout, \
        run.stdout[-3000:]
    # Check mode asks once and says what it cannot show (a cluster whose Authentik is not up yet), changing nothing.
    # (with the spec as the previous step left it, so Vault's role is as it should be)
    check = world.run("playbooks/03-configuration.yml", "-e", "authentik_token=not-the-token", "--check",
                      "-e", f"@{world.tmp / 'moved.yml'}", "--tags", "configuration")
    assert check.returncode == 0, check.stdout[-3000:]
    assert "does not answer with the token yet (HTTP 403)" in check.stdout, check.stdout[-3000:]
    assert recap(check.stdout)["localhost"]["changed"] == 0, changed_tasks(check.stdout)


def wrong_pdns_key_is_named(world: World):
    """A PowerDNS API key the server refuses stops layer 03 at the zone, naming PowerDNS, the key and where to
    fix it; the key is not printed, and with the right key the next run changes nothing."""
    run = world.run("playbooks/03-configuration.yml", "-e", f"authentik_token={world.token}",
                    "-e", "dns_zone_api_key=not-the-pdns-key", "-e", f"@{world.tmp / 'moved.yml'}",
                    "--tags", "configuration")
    assert run.returncode != 0
    assert "PowerDNS refused the API key (HTTP 401" in run.stdout and "dns.api_key" in run.stdout, run.stdout[-3000:]
    assert "not-the-pdns-key" not in run.stdout + run.stderr
    again = world.configure("-e", f"@{world.tmp / 'moved.yml'}")
    assert again.returncode == 0 and recap(again.stdout)["localhost"]["changed"] == 0, changed_tasks(again.stdout)


def test_configuration_layer(make_lab, tmp_path, monkeypatch):
    require_pdns()
    handle = make_lab(NET)
    handle.run("up", "--profile", "fast", "--components", "openbao,pdns,pdns-secondary,authentik")
    world = World(handle, tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", world.ca)  # wins over a session's verify (requests #3829)
    world.session.delete(BASE + "/_lab/requests", timeout=10)  # clears the reject log too
    prepare(world)
    first_run_configures_everything(world)
    vault_ui_logs_in_through_authentik(world)
    a_client_asking_offline_access_gets_a_refresh_token(world)
    rerun_and_check_change_nothing(world)
    one_moved_redirect_uri_changes_only_its_provider_and_role(world)
    apps_switched_off_are_removed_and_come_back(world)
    wrong_token_is_named(world)
    wrong_pdns_key_is_named(world)
    rejects = world.session.get(BASE + "/_lab/rejects", timeout=10).json()
    assert rejects == [], rejects
