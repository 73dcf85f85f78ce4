"""The sso_login_check module through the real ansible-playbook, in real headless Chromium (Debian's chromium and
the system chromedriver), against the lab's Authentik twin (net 127.113, its own state folder): the objects of
one SSO app are made with the authentik_* modules, then an admin logs in and passes, a plain user logs in but is
not an admin, a wrong password and a wrong client secret fail at their named steps, and the screenshot is a PNG.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.lab.openbao_oidc import configure_oidc
from tests.playbook_runner import run_playbook, task_results

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]

NET = "127.113"
BASE = f"https://{NET}.0.20:9443"
UP = ("up", "--profile", "fast", "--components", "authentik")
ISSUER = f"{BASE}/application/o/grafana/"
CALLBACK = "https://grafana.sso-check.example/login/generic_oauth"  # not resolvable: the code is read from the URL
SECRET = "grafana-client-secret-" + "s" * 40
WIKI_SECRET = "wiki-client-secret-" + "w" * 40
WIKI_CB = "https://wiki.sso-check.example/auth/callback"
ADMIN_PW = "admin-password-not-for-real-use"
PLAIN_PW = "plain-password-not-for-real-use"
SCOPES = [f"goauthentik.io/providers/oauth2/scope-{scope}" for scope in ("openid", "email", "profile")]


def need_browser():
    missing = [path for path in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not os.access(path, os.X_OK)]
    missing += [] if shutil.which("certutil") else ["certutil"]
    if missing:
        reason = "missing %s (apt chromium chromium-driver libnss3-tools; make system-packages)" % ", ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI must have them", pytrace=False)
        pytest.skip(reason)


def task(module, **options):
    return {"name": f"{module} {options.get('slug') or options.get('username') or options.get('name')}",
            f"turnkey.cluster.authentik_{module}": {"ca_path": "{{ ca }}", **options}}


def app_setup(app: str, admins: str, secret: str, callback: str) -> list[dict]:
    """One app's objects: its admin group with ada in it, pat in no group, the groups claim, an RS256 provider with
    explicit consent, and the application."""
    return [
        task("group", name=admins),
        task("user", username="ada", name="Ada Admin", email="ada@example.com", groups=[admins], password=ADMIN_PW),
        task("user", username="pat", name="Pat Plain", email="pat@example.com", password=PLAIN_PW),
        task("scope_mapping", name="Groups Mapping", scope_name="groups", description="Your groups",
             expression="return {'groups': [group.name for group in request.user.ak_groups.all()]}"),
        task("oauth2_provider", name=f"{app}-oauth2", client_id=app, client_secret=secret,
             redirect_uris=[{"url": callback}], authorization_flow="default-provider-authorization-explicit-consent",
             invalidation_flow="default-provider-invalidation-flow", signing_key="authentik Self-signed Certificate",
             issuer_mode="per_provider", property_mappings=[*SCOPES, "Groups Mapping"]),
        task("application", slug=app, name=app.capitalize(), provider=f"{app}-oauth2"),
    ]


SETUP = [
    *app_setup("grafana", "grafana-admins", SECRET, CALLBACK),
    # no signing key: Authentik signs with the client secret (HS256); implicit consent: no consent page
    task("oauth2_provider", name="wiki-oauth2", client_id="wiki", client_secret=WIKI_SECRET,
         redirect_uris=[{"url": WIKI_CB}], authorization_flow="default-provider-authorization-implicit-consent",
         invalidation_flow="default-provider-invalidation-flow", issuer_mode="per_provider",
         property_mappings=SCOPES),
    task("application", slug="wiki", name="Wiki", provider="wiki-oauth2"),
]


def check(title, shot, **overrides):
    options = {"issuer": ISSUER, "client_id": "grafana", "client_secret": SECRET, "redirect_uri": CALLBACK,
               "username": "ada", "password": ADMIN_PW, "admin_group": "grafana-admins", "expect_admin": True,
               "ca_path": "{{ ca }}", "screenshot": "{{ shots }}/%s.png" % shot, **overrides}
    options = {key: value for key, value in options.items() if value is not None}
    return {"name": title, "turnkey.cluster.sso_login_check": options, "ignore_errors": True}


CHECKS = [
    check("admin", "admin"),
    check("plain user as admin", "plain", username="pat", password=PLAIN_PW),
    check("plain user not admin", "plain-ok", username="pat", password=PLAIN_PW, expect_admin=False),
    check("wrong password", "wrong-pw", password="not-the-password"),
    check("wrong secret", "wrong-secret", client_secret="not-the-secret"),
    check("unregistered redirect URI", "evil", redirect_uri=CALLBACK + "/evil"),
    check("wiki HS256", "wiki", issuer=f"{BASE}/application/o/wiki/", client_id="wiki", client_secret=WIKI_SECRET,
          redirect_uri=WIKI_CB, admin_group=None, scopes=["openid", "email", "profile"]),
]


def play(tmp_path, lab, name, tasks, *flags, base=BASE, extra_vars=None):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    playbook = tmp_path / f"{name}.yml"
    playbook.write_text(yaml.safe_dump([{"name": name, "hosts": "localhost", "gather_facts": False, "vars": {
        "ca": str(lab.root / "pki" / "ca.pem"), "shots": str(tmp_path / "shots"), **(extra_vars or {})},
        "tasks": tasks}], sort_keys=False))
    token = lab.json("credentials.json")["authentik"]["token"]
    run = run_playbook("-i", str(inventory), *flags, playbook=str(playbook), json_output=True,
                       env={"AUTHENTIK_URL": base, "AUTHENTIK_TOKEN": token})
    for secret in (token, SECRET, WIKI_SECRET, VAULT_SECRET, ADMIN_PW, PLAIN_PW, "not-the-password",
                   "not-the-secret"):
        assert secret not in run.stdout + run.stderr
    return {task_name: result for task_name, _host, result in task_results(run.stdout)}, run


def is_png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_sso_login_check(make_lab, tmp_path):
    need_browser()
    lab = make_lab(NET)
    lab.run(*UP)
    made, run = play(tmp_path, lab, "setup", SETUP)
    assert run.returncode == 0 and all(not r.get("failed") for r in made.values()), run.stdout

    results, run = play(tmp_path, lab, "checks", CHECKS)
    admin = results["admin"]
    assert not admin.get("failed") and admin["changed"] is False, admin
    assert admin["claims"]["groups"] == ["grafana-admins"] and admin["claims"]["aud"] == "grafana"
    assert admin["claims"]["iss"] == ISSUER and admin["claims"]["preferred_username"] == "ada"
    assert [s["step"] for s in admin["steps"]] == [
        "discovery", "browser", "login", "consent", "screenshot", "redirect", "token", "id_token", "groups"]
    assert all(s["ok"] for s in admin["steps"]) and "RS256" in admin["steps"][7]["detail"]
    assert "NSS db" in admin["steps"][1]["detail"]
    assert is_png(tmp_path / "shots" / "admin.png") and admin["screenshot"].endswith("admin.png")
    assert oct((tmp_path / "shots" / "admin.png").stat().st_mode & 0o777) == "0o600"

    plain = results["plain user as admin"]
    assert plain["failed"] and plain["failed_step"] == "groups", plain
    assert "pat logged in but is not an admin" in plain["msg"] and "grafana-admins" in plain["msg"]
    assert [s["step"] for s in plain["steps"]][-3:] == ["token", "id_token", "groups"]  # the login itself worked
    assert not results["plain user not admin"].get("failed"), results["plain user not admin"]
    assert results["plain user not admin"]["claims"]["groups"] == []

    wrong_pw = results["wrong password"]
    assert wrong_pw["failed"] and wrong_pw["failed_step"] == "login", wrong_pw
    assert "refused ada's credentials" in wrong_pw["msg"] and "Failed to authenticate" in wrong_pw["msg"]
    assert is_png(tmp_path / "shots" / "wrong-pw.png")  # the page that refused the login
    wrong_secret = results["wrong secret"]
    assert wrong_secret["failed"] and wrong_secret["failed_step"] == "token", wrong_secret
    assert "invalid_client" in wrong_secret["msg"] and "client secret" in wrong_secret["msg"]

    evil = results["unregistered redirect URI"]  # strict matching: the IdP refuses before any login
    assert evil["failed"] and evil["failed_step"] == "login" and "Redirect URI Error" in evil["msg"], evil
    wiki = results["wiki HS256"]
    assert not wiki.get("failed") and wiki["claims"]["aud"] == "wiki", wiki
    steps = {s["step"]: s["detail"] for s in wiki["steps"]}
    assert "HS256 with the client secret" in steps["id_token"] and "consent" not in steps and "groups" not in steps

    # check mode: the check only reads, so it runs and passes the same
    results, run = play(tmp_path, lab, "check-mode", CHECKS[:1], "--check")
    assert run.returncode == 0 and results["admin"]["changed"] is False, run.stdout
    assert results["admin"]["claims"]["groups"] == ["grafana-admins"]


# -- Vault as the relying party: the real OpenBao's OIDC auth method and UI (net 127.122) -------------------
VAULT_NET = "127.122"
VAULT_BASE = f"https://{VAULT_NET}.0.20:9443"
VAULT_CB = "https://vault.sso-check.example/ui/vault/auth/oidc/oidc/callback"  # the UI's callback, not resolvable
VAULT_SECRET = "vault-client-secret-" + "v" * 40
VAULT_SETUP = app_setup("vault", "vault-admins", VAULT_SECRET, VAULT_CB)


def configure_openbao(lab):
    """OpenBao's OIDC login against the twin's vault provider, as role vault_oidc makes it: role `default`
    for the UI's callback, the groups claim, and the external group vault-admins -> turnkey-sso-admin."""
    import hvac

    ca = str(lab.root / "pki" / "ca.pem")
    url = lab.json("endpoints.json")["components"]["openbao"]["url"]
    bao = hvac.Client(url=url, verify=ca, token=lab.json("credentials.json")["openbao"]["root_token"], timeout=10)
    configure_oidc(bao, issuer=f"{VAULT_BASE}/application/o/vault/", client_id="vault", client_secret=VAULT_SECRET,
                   ca_pem=Path(ca).read_text(), role="default", callback=VAULT_CB,
                   scopes=["email", "profile", "groups"], group="vault-admins", policy="turnkey-sso-admin",
                   policy_hcl='path "kv/*" { capabilities = ["read", "list"] }')
    return url


def vault_check(title, shot, **overrides):
    return check(title, shot, issuer=f"{VAULT_BASE}/application/o/vault/", client_id="vault", client_secret=None,
                 redirect_uri=VAULT_CB, admin_group=None, vault_url="{{ vault }}", **overrides)


VAULT_CHECKS = [
    vault_check("vault admin", "vault-admin", vault_expect_policies=["turnkey-sso-admin"]),
    vault_check("vault plain user as admin", "vault-plain", username="pat", password=PLAIN_PW,
                vault_expect_policies=["turnkey-sso-admin"]),
    vault_check("vault plain user not admin", "vault-plain-ok", username="pat", password=PLAIN_PW,
                vault_forbid_policies=["turnkey-sso-admin"]),
    vault_check("vault role without the redirect URI", "vault-role", vault_role="nope"),
]


def test_sso_login_check_into_vaults_ui(make_lab, tmp_path):
    """Vault (the real OpenBao) is the relying party: the admin's login through the twin gets the policy its
    group maps to and lands in OpenBao's UI (the screenshot is the UI's console); a plain user does not get
    it; a role Vault does not have fails at Vault's step, named."""
    need_browser()
    lab = make_lab(VAULT_NET)
    lab.run("up", "--profile", "fast", "--components", "openbao,authentik")
    made, run = play(tmp_path, lab, "setup", VAULT_SETUP, base=VAULT_BASE)
    assert run.returncode == 0 and all(not r.get("failed") for r in made.values()), run.stdout
    bao_url = configure_openbao(lab)

    results, run = play(tmp_path, lab, "vault-checks", VAULT_CHECKS, base=VAULT_BASE, extra_vars={"vault": bao_url})
    admin = results["vault admin"]
    assert not admin.get("failed") and admin["changed"] is False, admin
    assert admin["claims"]["vault_user"] == "oidc-ada" and "turnkey-sso-admin" in admin["claims"]["vault_policies"]
    assert [s["step"] for s in admin["steps"]] == [
        "discovery", "vault_auth_url", "browser", "login", "consent", "redirect", "vault_callback",
        "vault_policies", "vault_ui", "screenshot"], admin["steps"]
    assert "/ui/vault/" in admin["steps"][8]["detail"] and "user menu naming oidc-ada" in admin["steps"][8]["detail"]
    assert is_png(tmp_path / "shots" / "vault-admin.png")
    assert oct((tmp_path / "shots" / "vault-admin.png").stat().st_mode & 0o777) == "0o600"

    plain = results["vault plain user as admin"]
    assert plain["failed"] and plain["failed_step"] == "vault_policies", plain
    assert "pat logged in to Vault without the mapped policies turnkey-sso-admin" in plain["msg"]
    assert is_png(tmp_path / "shots" / "vault-plain.png")  # a failure after the login keeps its picture
    plain_ok = results["vault plain user not admin"]
    assert not plain_ok.get("failed") and "turnkey-sso-admin" not in plain_ok["claims"]["vault_policies"], plain_ok
    role = results["vault role without the redirect URI"]
    assert role["failed"] and role["failed_step"] == "vault_auth_url" and "nope" in role["msg"], role

    # every Vault token the checks got was revoked: only the root token's own accessor is left
    import hvac

    bao = hvac.Client(url=bao_url, verify=str(lab.root / "pki" / "ca.pem"),
                      token=lab.json("credentials.json")["openbao"]["root_token"], timeout=10)
    accessors = bao.adapter.list("/v1/auth/token/accessors")["data"]["keys"]
    logins = [bao.lookup_token(accessor, accessor=True)["data"] for accessor in accessors]
    assert not [login for login in logins if login.get("path", "").startswith("auth/oidc/")], logins
