"""The authentik_* modules through the real ansible-playbook against the lab's Authentik twin (net 127.112, its own
state folder, brought down in the finalizer): everything the split provider/secret pattern needs is created, a
rerun and a check run change nothing, one changed redirect URI changes only its provider, and a wrong token or an
unreachable Authentik fail with their sentence. The token reaches the modules through AUTHENTIK_TOKEN, never argv.
At the end the twin has rejected none of the modules' requests against Authentik's OpenAPI document.
One test made of steps, in order: each step starts from what the previous one left."""

from __future__ import annotations

import json

import pytest
import requests
import yaml

from tests.playbook_runner import local_inventory, run_playbook, task_results

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]

NET = "127.112"
BASE = f"https://{NET}.0.20:9443"
API = f"{BASE}/api/v3"
SECRET = "grafana-client-secret-" + "x" * 40
PASSWORD = "operator-password-not-for-real-use"
IMPLICIT = "default-provider-authorization-implicit-consent"
INVALIDATION = "default-provider-invalidation-flow"
GRAFANA_CB = "https://grafana.cluster.example.com/login/generic_oauth"
GITEA_CB = "https://git.cluster.example.com/user/oauth2/authentik/callback"
SCOPES = [f"goauthentik.io/providers/oauth2/scope-{scope}" for scope in ("openid", "email", "profile")]


class Lab:
    def __init__(self, handle, tmp):
        self.handle, self.tmp = handle, tmp
        self.token = handle.json("credentials.json")["authentik"]["token"]
        self.ca = str(handle.root / "pki" / "ca.pem")
        self.env = {"AUTHENTIK_URL": BASE, "AUTHENTIK_TOKEN": self.token}
        self.inventory = local_inventory(tmp / "hosts.yml")
        self.session = requests.Session()
        self.session.verify = self.ca
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        self.runs = 0

    def play(self, tasks, *, check=False, diff=False, env=None):
        """Runs the tasks on localhost; returns (returncode, [(task, result)], stdout)."""
        self.runs += 1
        playbook = self.tmp / f"play{self.runs}.yml"
        playbook.write_text(yaml.safe_dump([{"name": "authentik", "hosts": "localhost", "gather_facts": False,
                                             "vars": {"authentik_ca": self.ca}, "tasks": tasks}], sort_keys=False))
        flags = ["-i", str(self.inventory), *(["--check"] if check else []), *(["--diff"] if diff else [])]
        run = run_playbook(*flags, playbook=str(playbook), env={**self.env, **(env or {})}, json_output=True,
                           timeout=600)
        for secret in (self.token, SECRET, PASSWORD):
            assert secret not in run.stdout + run.stderr
        return run.returncode, [(task, result) for task, _host, result in task_results(run.stdout)], run.stdout

    def get(self, path, **params):
        answer = self.session.get(API + path, params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def one(self, path, **params):
        results = self.get(path, **params)["results"]
        assert len(results) == 1, (path, params, results)
        return results[0]

    def snapshot(self):
        """Every object the modules manage, as Authentik answers (to prove a run changed nothing)."""
        return {path: self.get(path, page_size=100, ordering="pk" if "applications" not in path else "slug")["results"]
                for path in ("/core/groups/", "/core/users/", "/propertymappings/provider/scope/",
                             "/providers/oauth2/", "/providers/proxy/", "/core/applications/", "/outposts/instances/")}


def task(module, title=None, **options):
    return {"name": title or f"{module} {options.get('slug') or options.get('username') or options.get('name')}",
            f"turnkey.cluster.authentik_{module}": {"ca_path": "{{ authentik_ca }}", **options}}


def provider_task(name, client_id, callback, **extra):
    return task("oauth2_provider", name=name, client_id=client_id, redirect_uris=[{"url": callback}],
                authorization_flow=IMPLICIT, invalidation_flow=INVALIDATION,
                signing_key="authentik Self-signed Certificate", issuer_mode="per_provider",
                include_claims_in_id_token=True, property_mappings=[*SCOPES, "Groups Mapping"], **extra)


def split_pattern(grafana_callback=GRAFANA_CB):
    """The objects of two SSO apps, a user in their admin groups, and forward auth on the embedded outpost."""
    return [
        task("group", name="grafana-admins", attributes={"managed_by": "turnkey.cluster"}),
        task("group", name="gitea-admins"),
        task("user", username="operator", name="Cluster operator", email="operator@example.com",
             groups=["grafana-admins", "gitea-admins"], password=PASSWORD),
        task("scope_mapping", name="Groups Mapping", scope_name="groups", description="Your groups",
             expression="return {'groups': [group.name for group in request.user.ak_groups.all()]}"),
        provider_task("grafana-oauth2", "grafana", grafana_callback, client_secret=SECRET),
        provider_task("gitea-oauth2", "gitea", GITEA_CB),
        task("application", slug="grafana", name="Grafana", provider="grafana-oauth2",
             meta_launch_url="https://grafana.cluster.example.com", policy_engine_mode="any"),
        task("application", slug="gitea", name="Gitea", provider="gitea-oauth2"),
        task("proxy_provider", name="kagent", external_host="https://kagent.cluster.example.com",
             authorization_flow=IMPLICIT, invalidation_flow=INVALIDATION, access_token_validity="hours=1"),
        task("application", slug="kagent", name="Kagent", provider="kagent"),
        task("outpost", name="authentik Embedded Outpost", providers=["kagent"],
             config={"authentik_host": BASE}),
    ]


def create_everything(lab: Lab):
    code, results, out = lab.play(split_pattern())
    assert code == 0, out
    assert [r["operation"] for _t, r in results] == ["create"] * 10 + ["update"], out
    assert all(r["changed"] for _t, r in results)
    admins = lab.one("/core/groups/", name="grafana-admins")
    assert admins["attributes"] == {"managed_by": "turnkey.cluster"}
    gitea_admins = lab.one("/core/groups/", name="gitea-admins")
    operator = lab.one("/core/users/", username="operator")
    assert sorted(operator["groups"]) == sorted([admins["pk"], gitea_admins["pk"]])
    assert operator["email"] == "operator@example.com" and operator["name"] == "Cluster operator"
    user_result = results[2][1]
    assert user_result["password_set"] is True and "password" not in user_result["object"]
    assert operator["password_change_date"] != operator["date_joined"]  # set_password came after the creation
    groups = lab.one("/propertymappings/provider/scope/", name="Groups Mapping")
    grafana = lab.one("/providers/oauth2/", name="grafana-oauth2")
    assert grafana["client_id"] == "grafana" and grafana["client_secret"] == SECRET
    assert grafana["client_type"] == "confidential" and grafana["issuer_mode"] == "per_provider"
    assert grafana["redirect_uris"] == [{"matching_mode": "strict", "url": GRAFANA_CB,
                                         "redirect_uri_type": "authorization"}]
    keypair = lab.one("/crypto/certificatekeypairs/", name="authentik Self-signed Certificate")
    assert grafana["signing_key"] == keypair["pk"]
    flows = {flow["slug"]: flow["pk"] for flow in lab.get("/flows/instances/")["results"]}
    assert (grafana["authorization_flow"], grafana["invalidation_flow"]) == (flows[IMPLICIT], flows[INVALIDATION])
    scope_pks = {lab.one("/propertymappings/provider/scope/", managed=managed)["pk"] for managed in SCOPES}
    assert set(grafana["property_mappings"]) == scope_pks | {groups["pk"]}
    assert "client_secret" not in results[4][1]["object"]
    # Without a secret in the task, Authentik made one: kept on reruns, as the module does not manage it.
    assert lab.one("/providers/oauth2/", name="gitea-oauth2")["client_secret"]
    assert lab.get("/core/applications/grafana/")["provider"] == grafana["pk"]
    kagent = lab.one("/providers/proxy/", name__iexact="kagent")
    assert kagent["mode"] == "forward_single" and kagent["external_host"] == "https://kagent.cluster.example.com"
    outpost = lab.one("/outposts/instances/", name__iexact="authentik Embedded Outpost")
    assert outpost["providers"] == [kagent["pk"]] and outpost["config"]["authentik_host"] == BASE
    assert len(outpost["config"]) > 1, "the outpost's other settings are kept"


def rerun_changes_nothing(lab: Lab):
    before = lab.snapshot()
    code, results, out = lab.play(split_pattern())
    assert code == 0, out
    assert [t for t, r in results if r["changed"]] == [], out
    assert {r["operation"] for _t, r in results} == {"none"}
    assert results[2][1]["password_set"] is False  # set on creation only (update_password: on_create)
    assert lab.snapshot() == before


def check_mode_changes_nothing_and_shows_the_diff(lab: Lab):
    before = lab.snapshot()
    moved = "https://grafana2.cluster.example.com/login/generic_oauth"
    tasks = [*split_pattern(moved),
             task("group", name="harbor-admins"),
             provider_task("harbor-oauth2", "harbor", "https://registry.cluster.example.com/c/oidc/callback"),
             task("application", slug="harbor", name="Harbor", provider="harbor-oauth2")]
    code, results, out = lab.play(tasks, check=True, diff=True)
    assert code == 0, out
    changed = {t: r for t, r in results if r["changed"]}
    assert sorted(changed) == ["application harbor", "group harbor-admins", "oauth2_provider grafana-oauth2",
                               "oauth2_provider harbor-oauth2"], out
    grafana = changed["oauth2_provider grafana-oauth2"]
    assert grafana["operation"] == "update"
    assert grafana["diff"]["before"]["redirect_uris"] == [{"matching_mode": "strict", "url": GRAFANA_CB,
                                                           "redirect_uri_type": "authorization"}]
    assert grafana["diff"]["after"]["redirect_uris"][0]["url"] == moved
    assert grafana["diff"]["before"]["client_secret"] == grafana["diff"]["after"]["client_secret"] == "<hidden>"
    assert grafana["diff"]["after"]["property_mappings"] == sorted([*SCOPES, "Groups Mapping"])
    assert grafana["diff"]["after"]["signing_key"] == "authentik Self-signed Certificate"
    assert changed["group harbor-admins"]["diff"]["before"] == {}
    # The application's provider does not exist yet: in check mode that is a warning, not a failure.
    harbor = changed["application harbor"]
    assert harbor["operation"] == "create" and any("harbor-oauth2" in w for w in harbor.get("warnings", []))
    assert moved in out
    assert lab.snapshot() == before


def one_redirect_uri_changes_only_its_provider(lab: Lab):
    before = lab.snapshot()
    moved = "https://grafana2.cluster.example.com/login/generic_oauth"
    code, results, out = lab.play(split_pattern(moved), diff=True)
    assert code == 0, out
    assert [t for t, r in results if r["changed"]] == ["oauth2_provider grafana-oauth2"], out
    after = lab.snapshot()
    grafana_before = next(p for p in before["/providers/oauth2/"] if p["name"] == "grafana-oauth2")
    grafana_after = next(p for p in after["/providers/oauth2/"] if p["name"] == "grafana-oauth2")
    assert grafana_after["redirect_uris"] == [{"matching_mode": "strict", "url": moved,
                                               "redirect_uri_type": "authorization"}]
    assert grafana_after["client_secret"] == SECRET
    assert {k: v for k, v in grafana_after.items() if k != "redirect_uris"} == {
        k: v for k, v in grafana_before.items() if k != "redirect_uris"}
    for path in before:
        if path != "/providers/oauth2/":
            assert after[path] == before[path], path
    assert [p for p in after["/providers/oauth2/"] if p["name"] != "grafana-oauth2"] == [
        p for p in before["/providers/oauth2/"] if p["name"] != "grafana-oauth2"]
    # And back: again only that provider.
    code, results, out = lab.play(split_pattern())
    assert code == 0 and [t for t, r in results if r["changed"]] == ["oauth2_provider grafana-oauth2"], out


def wrong_token_and_unreachable_are_named(lab: Lab):
    before = lab.snapshot()
    code, results, out = lab.play([task("group", name="grafana-admins", is_superuser=True)],
                                  env={"AUTHENTIK_TOKEN": "wrong-token"})
    assert code != 0
    (_t, result), = results
    assert result["failed"] and result["msg"] == (
        "Authentik refused the token (HTTP 403: Token invalid/expired) while listing groups: check the bootstrap "
        "token in the store"), result["msg"]
    code, results, out = lab.play([task("group", name="grafana-admins", is_superuser=True)],
                                  env={"AUTHENTIK_URL": f"https://{NET}.0.99:9443"})
    assert code != 0
    (_t, result), = results
    assert result["msg"].startswith(f"Authentik unreachable at https://{NET}.0.99:9443: "), result["msg"]
    assert "Connection refused" in result["msg"]
    # Plain http while certificates are verified: refused before any request.
    code, results, out = lab.play([task("group", name="x")],
                                  env={"AUTHENTIK_URL": f"http://{NET}.0.20:9443"})
    (_t, result), = results
    assert code != 0 and "is not https: the token would travel in clear" in result["msg"]
    # A reference that does not exist, outside check mode: named with what creates it, nothing sent.
    code, results, out = lab.play([task("user", username="nobody", groups=["no-such-group"])])
    (_t, result), = results
    assert code != 0 and result["msg"] == (
        "no group with name 'no-such-group' in Authentik; create it first (turnkey.cluster.authentik_group)")
    # A provider to create without its flows: named before anything is sent.
    code, results, out = lab.play([task("oauth2_provider", name="half", redirect_uris=[{"url": GITEA_CB}])])
    (_t, result), = results
    assert code != 0 and result["msg"] == (
        "OAuth2 provider half does not exist; creating it needs authorization_flow, invalidation_flow")
    assert lab.snapshot() == before


def update_password_always_and_absent(lab: Lab):
    changed_at = lab.one("/core/users/", username="operator")["password_change_date"]
    always = task("user", username="operator", password=PASSWORD, update_password="always")
    code, results, out = lab.play([always], diff=True)
    assert code == 0 and results[0][1]["changed"] and results[0][1]["password_set"], out
    assert results[0][1]["diff"]["after"]["password"] == "<hidden, changed>"
    assert lab.one("/core/users/", username="operator")["password_change_date"] != changed_at
    gone = [task("application", slug="gitea", state="absent"),
            task("oauth2_provider", name="gitea-oauth2", state="absent")]
    for expected in (True, False):
        code, results, out = lab.play(gone)
        assert code == 0 and [r["changed"] for _t, r in results] == [expected, expected], out
    assert lab.get("/core/applications/", slug="gitea")["results"] == []
    # Authentik's own objects are not deleted.
    code, results, out = lab.play([task("outpost", name="authentik Embedded Outpost", state="absent")])
    (_t, result), = results
    assert code != 0 and "is Authentik's own (goauthentik.io/outposts/embedded)" in result["msg"]


def test_authentik_modules(make_lab, tmp_path, monkeypatch):
    handle = make_lab(NET)
    handle.run("up", "--profile", "fast", "--components", "authentik")
    lab = Lab(handle, tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", lab.ca)  # wins over a session's verify (requests #3829)
    lab.session.delete(BASE + "/_lab/requests", timeout=10)  # clears the reject log too
    create_everything(lab)
    rerun_changes_nothing(lab)
    check_mode_changes_nothing_and_shows_the_diff(lab)
    one_redirect_uri_changes_only_its_provider(lab)
    wrong_token_and_unreachable_are_named(lab)
    update_password_always_and_absent(lab)
    rejects = lab.session.get(BASE + "/_lab/rejects", timeout=10).json()
    assert rejects == [], json.dumps(rejects, indent=1)
