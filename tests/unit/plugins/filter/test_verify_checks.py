"""Role verify's judges (filter turnkey.cluster.verify_checks): the entries the report shows, exactly."""

from __future__ import annotations

import datetime

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.turnkey.cluster.plugins.filter.verify_checks import verify_checks

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

SHA = "a" * 40
PUSHED = {"rc": 0, "stdout": SHA + "\n", "stderr": ""}
NS, SOURCE = "flux-system", "flux-system"


def ready(status="True", reason="Succeeded", message=""):
    return {"type": "Ready", "status": status, "reason": reason, "message": message}


def read(*resources):
    return {"changed": False, "resources": list(resources)}


def unread(msg):
    return {"failed": True, "msg": msg}


def obj(name, namespace, conditions=(), generation=1, observed=1, **status):
    return {"metadata": {"name": name, "namespace": namespace, "generation": generation},
            "spec": {}, "status": {"observedGeneration": observed, "conditions": list(conditions), **status}}


def node(name, *conditions):
    return {"metadata": {"name": name}, "status": {"conditions": list(conditions)}}


def test_nodes_all_ready():
    assert verify_checks(read(node("cp-1", ready()), node("w-1", ready())), "nodes") == [
        {"component": "nodes", "status": "ok", "detail": "2 nodes Ready: cp-1, w-1"}]


def test_nodes_not_ready_none_or_unreadable():
    assert verify_checks(read(node("cp-1", ready()), node("w-1", ready("False", "KubeletNotReady")), node("w-2")),
                         "nodes") == [
        {"component": "nodes", "status": "failed",
         "detail": "not Ready: w-1 (KubeletNotReady), w-2 (no Ready condition)"}]
    assert verify_checks(read(), "nodes") == [{"component": "nodes", "status": "failed", "detail": "no nodes"}]
    assert verify_checks(unread("Unauthorized"), "nodes") == [
        {"component": "nodes", "status": "failed", "detail": "cannot read the nodes: Unauthorized"}]


def source(revision, *conditions):
    return {"metadata": {"name": SOURCE, "namespace": NS},
            "status": {"artifact": {"revision": revision}, "conditions": list(conditions)}}


def test_flux_source_ready_at_the_pushed_commit():
    result = read(source("main@sha1:" + SHA, ready()))
    assert verify_checks(result, "flux_source", PUSHED, "/gitops", NS, SOURCE) == [
        {"component": "flux source flux-system/flux-system", "status": "ok",
         "detail": "Ready at the pushed commit main@sha1:" + SHA}]


def test_flux_source_behind_missing_unknown_commit_or_unreadable():
    old = read(source("main@sha1:" + "0" * 40, ready("False", "GitOperationFailed", "auth failed")))
    assert verify_checks(old, "flux_source", PUSHED, "/gitops", NS, SOURCE) == [
        {"component": "flux source flux-system/flux-system", "status": "failed",
         "detail": "has main@sha1:%s, not the pushed commit %s (Ready=False, GitOperationFailed: auth failed)"
                   % ("0" * 40, SHA)}]
    assert verify_checks(read(), "flux_source", PUSHED, "/gitops", NS, SOURCE)[0]["detail"] == "it does not exist"
    no_git = {"rc": 128, "stdout": "", "stderr": "fatal: not a git repository\n"}
    assert verify_checks(old, "flux_source", no_git, "/gitops", NS, SOURCE) == [
        {"component": "flux source flux-system/flux-system", "status": "failed",
         "detail": "no pushed commit known (/gitops: fatal: not a git repository)"}]
    assert verify_checks(unread("line one\nline two"), "flux_source", PUSHED, "/gitops", NS, SOURCE) == [
        {"component": "GitRepository", "status": "failed", "detail": "cannot read the GitRepositorys: line one"}]


def kustomization(name, revision, *conditions, generation=1, observed=1):
    item = obj(name, NS, conditions, generation, observed, lastAppliedRevision=revision)
    item["spec"] = {"sourceRef": {"kind": "GitRepository", "name": SOURCE}}
    return item


def test_kustomizations_ready_and_applied_the_pushed_commit():
    other = obj("infra", "other", [ready()])  # not on Flux's source: its revision is not judged
    assert verify_checks(read(kustomization("apps", "main@sha1:" + SHA, ready()), other), "kustomizations",
                         PUSHED, NS, SOURCE) == [
        {"component": "Kustomization flux-system/apps", "status": "ok", "detail": "Ready, applied main@sha1:" + SHA},
        {"component": "Kustomization other/infra", "status": "ok", "detail": "Ready"}]


def test_kustomizations_behind_not_ready_stale_or_none():
    old = "main@sha1:" + "0" * 40
    assert verify_checks(read(kustomization("apps", old, ready(reason="ReconciliationSucceeded"))),
                         "kustomizations", PUSHED, NS, SOURCE) == [
        {"component": "Kustomization flux-system/apps", "status": "failed",
         "detail": "Ready, applied %s, not the pushed commit %s" % (old, SHA)}]
    stale = kustomization("apps", None, generation=3, observed=2)
    assert verify_checks(read(stale), "kustomizations", {"rc": 1}, NS, SOURCE) == [
        {"component": "Kustomization flux-system/apps", "status": "failed",
         "detail": "not Ready (Ready=Unknown, no condition yet: ), applied nothing, not the pushed commit (unknown), "
                   "not reconciled since its last change (generation 3, observed 2)"}]
    assert verify_checks(read(), "kustomizations", PUSHED, NS, SOURCE) == [
        {"component": "Kustomization", "status": "failed", "detail": "none in the cluster"}]


def test_helmreleases_ready_with_their_chart():
    assert verify_checks(read(obj("authentik", "authentik", [ready()], lastAttemptedRevision="2026.5.6")),
                         "helmreleases") == [
        {"component": "HelmRelease authentik/authentik", "status": "ok", "detail": "Ready, chart 2026.5.6"}]
    assert verify_checks(read(), "helmreleases") == []


def test_helmreleases_changed_since_reconciled_or_failed():
    changed = obj("authentik", "authentik", [ready()], generation=2, observed=1, lastAttemptedRevision="2026.5.6")
    failing = obj("grafana", "grafana", [ready("False", "InstallFailed", "timeout")])
    assert verify_checks(read(changed, failing), "helmreleases") == [
        {"component": "HelmRelease authentik/authentik", "status": "failed",
         "detail": "Ready, chart 2026.5.6, not reconciled since its last change (generation 2, observed 1)"},
        {"component": "HelmRelease grafana/grafana", "status": "failed",
         "detail": "not Ready (Ready=False, InstallFailed: timeout)"}]
    assert verify_checks(unread("404"), "helmreleases") == [
        {"component": "HelmRelease", "status": "failed", "detail": "cannot read the HelmReleases: 404"}]


def test_external_secrets_synced():
    # no observedGeneration on ExternalSecrets: never judged stale
    synced = obj("grafana-oidc", "grafana", [ready(reason="SecretSynced")], generation=4, observed=None)
    del synced["status"]["observedGeneration"]
    assert verify_checks(read(synced), "external_secrets", read(secret("grafana-oidc", "grafana"))) == [
        {"component": "ExternalSecret grafana/grafana-oidc", "status": "ok", "detail": "Synced"}]


def test_external_secrets_not_synced():
    broken = obj("grafana-oidc", "grafana", [ready("False", "SecretSyncedError",
                                                   "could not get secret data from provider")])
    ready_but_not_synced = obj("x", "grafana", [ready("True", "Other")])
    managed = read(secret("grafana-oidc", "grafana"), secret("x", "grafana"))
    assert verify_checks(read(broken, ready_but_not_synced), "external_secrets", managed) == [
        {"component": "ExternalSecret grafana/grafana-oidc", "status": "failed",
         "detail": "not Synced (Ready=False, SecretSyncedError: could not get secret data from provider)"},
        {"component": "ExternalSecret grafana/x", "status": "failed", "detail": "not Synced (Ready=True, Other: )"}]


def secret(name, namespace):
    return {"metadata": {"name": name, "namespace": namespace}, "data": {"client_secret": "c2VjcmV0"}}


def test_external_secrets_target_deleted_is_named():
    # Ready outlives a deleted target until the next sync; Merge and None keep no target of their own
    kept = obj("grafana-oidc", "grafana", [ready(reason="SecretSynced")])
    deleted = obj("gitea-oidc", "gitea", [ready(reason="SecretSynced")])
    renamed = obj("harbor-oidc", "harbor", [ready(reason="SecretSynced")])
    renamed["spec"]["target"] = {"name": "harbor-credentials", "creationPolicy": "Orphan"}
    merged = obj("extra", "gitea", [ready(reason="SecretSynced")])
    merged["spec"]["target"] = {"creationPolicy": "Merge"}
    managed = read(secret("grafana-oidc", "grafana"), secret("harbor-oidc", "harbor"))
    assert verify_checks(read(kept, deleted, renamed, merged), "external_secrets", managed) == [
        {"component": "ExternalSecret grafana/grafana-oidc", "status": "ok", "detail": "Synced"},
        {"component": "ExternalSecret gitea/gitea-oidc", "status": "failed",
         "detail": "Synced, but its target Secret gitea/gitea-oidc is missing (External Secrets re-creates it at its "
                   "next sync: is its controller running?)"},
        {"component": "ExternalSecret harbor/harbor-oidc", "status": "failed",
         "detail": "Synced, but its target Secret harbor/harbor-credentials is missing (External Secrets re-creates "
                   "it at its next sync: is its controller running?)"},
        {"component": "ExternalSecret gitea/extra", "status": "ok", "detail": "Synced"}]
    assert verify_checks(read(kept), "external_secrets", unread("403 Forbidden\nsecrets is forbidden")) == [
        {"component": "ExternalSecret grafana/grafana-oidc", "status": "ok", "detail": "Synced"},
        {"component": "Secret", "status": "failed",
         "detail": "cannot read the Secrets External Secrets manages: 403 Forbidden"}]


SERVERS = [{"name": "primary", "address": "127.0.0.18"}, {"name": "secondary", "address": "127.0.0.19", "port": 5353}]
RECORDS = [{"name": "grafana.example.com.", "type": "A", "content": "127.2.3.10"},
           {"name": "extra", "type": "A", "content": ["127.2.3.9", "127.2.3.8"]},
           {"name": "extra", "type": "A", "content": "127.2.3.9"},
           {"name": "@", "type": "AAAA", "content": "fd00::1"},
           {"name": "www", "type": "CNAME", "content": "grafana"}]


def test_dns_expected_queries():
    assert verify_checks(RECORDS, "dns_expected", "example.com") == {
        "grafana.example.com./A": ["127.2.3.10"],
        "extra.example.com./A": ["127.2.3.8", "127.2.3.9"],
        "example.com./AAAA": ["fd00::1"]}


def answers(expected, replies):
    """The registered results of the role's loop over queries x servers."""
    pairs = [(key, server) for key in expected for server in SERVERS]
    return [{"item": [key, server], "ansible_facts": {"verify_dns_answer": reply}}
            for (key, server), reply in zip(pairs, replies, strict=True)]


def test_dns_every_server_answers_the_expected_records():
    expected = verify_checks(RECORDS[:2], "dns_expected", "example.com")
    replies = [["127.2.3.10"], ["127.2.3.10"], ["127.2.3.9", "127.2.3.8"], ["127.2.3.8", "127.2.3.9"]]
    assert verify_checks(answers(expected, replies), "dns", expected, SERVERS) == [
        {"component": "dns grafana.example.com A", "status": "ok",
         "detail": "primary 127.0.0.18:53: 127.2.3.10; secondary 127.0.0.19:5353: 127.2.3.10"},
        {"component": "dns extra.example.com A", "status": "ok",
         "detail": "primary 127.0.0.18:53: 127.2.3.8, 127.2.3.9; secondary 127.0.0.19:5353: 127.2.3.8, 127.2.3.9"}]


def test_dns_wrong_missing_or_no_server():
    expected = verify_checks(RECORDS[:1], "dns_expected", "example.com")
    assert verify_checks(answers(expected, [["127.2.3.11"], ["NXDOMAIN"]]), "dns", expected, SERVERS) == [
        {"component": "dns grafana.example.com A", "status": "failed",
         "detail": "wrong or missing on primary and secondary (expected 127.2.3.10): primary 127.0.0.18:53: "
                   "127.2.3.11; secondary 127.0.0.19:5353: NXDOMAIN"}]
    assert verify_checks(answers(expected, [["127.2.3.10"], [""]]), "dns", expected, SERVERS)[0]["detail"] == (
        "wrong or missing on secondary (expected 127.2.3.10): primary 127.0.0.18:53: 127.2.3.10; "
        "secondary 127.0.0.19:5353: no answer")
    assert verify_checks([], "dns", expected, []) == [
        {"component": "dns grafana.example.com A", "status": "failed",
         "detail": "no DNS server to ask (dns.api_url, verify_dns_servers)"}]


def test_answers_out_of_step_and_unknown_checks_are_refused():
    expected = verify_checks(RECORDS[:1], "dns_expected", "example.com")
    with pytest.raises(AnsibleFilterError, match="one answer per host and server"):
        verify_checks([], "dns", expected, SERVERS)
    with pytest.raises(AnsibleFilterError, match="unknown check 'pods'"):
        verify_checks({}, "pods")
    with pytest.raises(AnsibleFilterError, match="flux_source"):
        verify_checks(read(), "flux_source")


NOW = datetime.datetime(2029, 12, 1, 12, 0, 0)
ENDPOINTS = [{"name": "vault", "url": "https://Vault.Example.com:8200/v1"}, {"name": "auth", "url": "https://auth.test"}]


def test_certificates_valid_or_near_expiry():
    certs = [{"not_after": "20300101120000Z", "expired": False, "issuer": {"commonName": "lab CA"}},
             {"not_after": "20300101120000Z", "expired": False, "issuer": {"O": "lab"}}]
    tls = [{"status": 200}, {"status": 302}]
    assert verify_checks(ENDPOINTS, "certificates", tls, certs, 30, now=NOW) == [
        {"component": "certificate vault", "status": "ok",
         "detail": "valid for vault.example.com, issued by lab CA, expires 2030-01-01 12:00:00 UTC, 31 days left"},
        {"component": "certificate auth", "status": "ok",
         "detail": "valid for auth.test, issued by {'O': 'lab'}, expires 2030-01-01 12:00:00 UTC, 31 days left"}]
    assert verify_checks(ENDPOINTS[:1], "certificates", tls[:1], certs[:1], 100, now=NOW) == [
        {"component": "certificate vault", "status": "warning",
         "detail": "valid for vault.example.com, issued by lab CA, expires 2030-01-01 12:00:00 UTC, 31 days left "
                   "(under 100: renew it)"}]


def test_certificates_unreachable_unreadable_or_expired():
    endpoints = ENDPOINTS + [{"name": "old", "url": "https://old.test"}]
    tls = [{"status": -1, "msg": "Status code was -1: refused"}, {"status": 200}, {"status": 200}]
    certs = [{"not_after": "20300101120000Z", "expired": False}, {"failed": True, "msg": "no certificate"},
             {"not_after": "20200101120000Z", "expired": True}]
    assert verify_checks(endpoints, "certificates", tls, certs, 30, now=NOW) == [
        {"component": "certificate vault", "status": "failed",
         "detail": "TLS to https://Vault.Example.com:8200/v1 failed: Status code was -1: refused"},
        {"component": "certificate auth", "status": "failed", "detail": "cannot read the certificate: no certificate"},
        {"component": "certificate old", "status": "failed", "detail": "expired on 20200101120000Z"}]


APPS = [{"name": "grafana", "redirect_uris": ["https://grafana.test/cb"], "admin_group": "grafana-admins"},
        {"name": "wiki-js", "namespace": "wiki"}]
USERS = [{"name": "turnkey-admin", "groups": ["grafana-admins"]}, {"name": "turnkey-viewer", "groups": ["viewers"]}]
SECRETS = {"client:grafana": "s", "client:wiki-js": "s", "password:turnkey-admin": "p", "password:turnkey-viewer": "p"}


NO_VAULT = {"vault": False, "vault_expect_policies": [], "vault_forbid_policies": []}


def test_sso_plan_an_admin_and_a_user_per_app():
    assert verify_checks(APPS, "sso_plan", USERS, SECRETS, [{"resources": [{}]}] * 2, True) == [
        {"app": "grafana", "redirect_uri": "https://grafana.test/cb", "namespace": "grafana", "user": "turnkey-admin",
         "expect_admin": True, "admin_group": "grafana-admins", "problem": "", **NO_VAULT},
        {"app": "grafana", "redirect_uri": "https://grafana.test/cb", "namespace": "grafana", "user": "turnkey-viewer",
         "expect_admin": False, "admin_group": "grafana-admins", "problem": "", **NO_VAULT},
        {"app": "wiki-js", "redirect_uri": "", "namespace": "wiki", "user": "turnkey-admin", "expect_admin": False,
         "admin_group": "", "problem": "", **NO_VAULT}]


def test_sso_plan_logs_in_to_vault_through_its_ui_callback_with_the_mapped_policies():
    vault = {"name": "vault", "admin_group": "vault-admins", "redirect_uris": [
        "http://localhost:8250/oidc/callback", "https://vault.test/ui/vault/auth/oidc/oidc/callback"],
        "vault_policies": {"vault-admins": ["turnkey-sso-admin"], "vault-readers": ["turnkey-sso-read"]}}
    users = [{"name": "ops", "groups": ["vault-admins", "vault-readers"]}, {"name": "dev", "groups": ["vault-readers"]}]
    secrets = {"client:vault": "s", "password:ops": "p", "password:dev": "p"}
    plan = verify_checks([vault], "sso_plan", users, secrets, [{"resources": [{}]}], True)
    assert [(login["user"], login["redirect_uri"], login["vault"], login["vault_expect_policies"],
             login["vault_forbid_policies"]) for login in plan] == [
        ("ops", "https://vault.test/ui/vault/auth/oidc/oidc/callback", True, ["turnkey-sso-admin"], []),
        ("dev", "https://vault.test/ui/vault/auth/oidc/oidc/callback", True, ["turnkey-sso-read"],
         ["turnkey-sso-admin"])]


def test_sso_plan_names_what_stops_each_login():
    secrets = {"client:grafana": "", "client:wiki-js": "", "password:turnkey-viewer": ""}
    reads = [{"failed": True, "msg": "forbidden\nmore"}, {"resources": []}]
    plan = verify_checks(APPS, "sso_plan", USERS[1:], secrets, reads, True)
    assert [(login["user"], login["problem"]) for login in plan] == [
        ("", "no sso_users entry is in its admin group grafana-admins"),
        ("turnkey-viewer", "cannot read Secret grafana/grafana-oidc: forbidden"),
        ("turnkey-viewer",
         "Secret wiki/wiki-js-oidc does not exist (External Secrets syncs it from Vault kv/sso/wiki-js)")]
    plan = verify_checks(APPS[1:], "sso_plan", USERS, {"client:wiki-js": "s"}, [], False)
    assert [login["problem"] for login in plan] == ["the store has no sso_password_turnkey_admin"]
    plan = verify_checks(APPS[1:], "sso_plan", [], {"client:wiki-js": ""}, [], False)
    assert [login["problem"] for login in plan] == ["sso_users is empty: nobody to log in"]
    plan = verify_checks(APPS[1:], "sso_plan", USERS, {"client:wiki-js": "", "password:turnkey-admin": "p"}, [], False)
    assert [login["problem"] for login in plan] == ["the store has no sso_client_secret_wiki_js"]


def login(user, expect_admin, problem="", **result):
    return {"item": {"app": "grafana", "user": user, "expect_admin": expect_admin, "admin_group": "grafana-admins",
                     "problem": problem, "redirect_uri": "https://grafana.test/cb"}, **result}


def test_sso_logins_logged_in_with_their_groups():
    claims = {"aud": "grafana", "iss": "https://auth.test/application/o/grafana/", "groups": ["grafana-admins"]}
    assert verify_checks([login("turnkey-admin", True, claims=claims, screenshot="/r/sso-grafana-turnkey-admin.png")],
                         "sso_logins", "/r") == [
        {"component": "sso grafana as turnkey-admin (admin)", "status": "ok",
         "detail": "logged in at https://grafana.test/cb, ID token for grafana from "
                   "https://auth.test/application/o/grafana/, groups: grafana-admins",
         "screenshot": "sso-grafana-turnkey-admin.png"}]


def test_sso_logins_into_vault_name_the_token_policies():
    claims = {"aud": "vault", "iss": "https://auth.test/application/o/vault/", "vault_user": "ops",
              "vault_policies": ["default", "turnkey-sso-admin"]}
    assert verify_checks([login("ops", True, claims=claims)], "sso_logins", "/r")[0]["detail"] == (
        "logged in to Vault's UI through https://auth.test/application/o/vault/ as ops, Vault token policies: "
        "default, turnkey-sso-admin")


def test_sso_logins_refused_or_not_tried():
    logins = [login("turnkey-viewer", False, failed=True, msg="failed at step login", screenshot="/other/x.png"),
              login("", True, "no sso_users entry is in its admin group grafana-admins", skipped=True)]
    assert verify_checks(logins, "sso_logins", "/r") == [
        {"component": "sso grafana as turnkey-viewer (not admin)", "status": "failed",
         "detail": "failed at step login", "screenshot": ""},
        {"component": "sso grafana as (nobody) (admin)", "status": "failed",
         "detail": "no sso_users entry is in its admin group grafana-admins", "screenshot": ""}]


def test_sso_logins_a_failure_without_a_message_says_where_its_error_is():
    # ansible-core 2.19 keeps a module's unhandled exception in `exception`, with no `msg`
    assert verify_checks([login("turnkey-viewer", False, failed=True, exception="...")], "sso_logins", "/r")[0] == {
        "component": "sso grafana as turnkey-viewer (not admin)", "status": "failed",
        "detail": "the login check ended without a message (its error is in the run's output above)", "screenshot": ""}
