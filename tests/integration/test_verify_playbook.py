"""playbooks/verify.yml through the real ansible-playbook on a lab of the real OpenBao, the real PowerDNS primary
and secondary and the Authentik twin (net 127.118, its own state folder and store, brought down in the finalizer).
The zone is made by role dns_zone from the same records layer 03 derives; Authentik's group, users, provider and
application by the authentik_* modules with the store's client secret and passwords. The cluster is the real etcd +
kube-apiserver of tests/integration/cluster with the real Flux and External Secrets CRDs; no controller runs there,
so the test writes the objects' statuses as the controllers would (through the status subresource), and the
app's Secret <app>-oidc as External Secrets would.

Healthy: every check ok, the logins in real headless Chromium with screenshots, changed=0, the same in check mode;
with verify_cluster: false (a lab without a cluster) the cluster checks are skipped and the logins take the client
secret from the store. Broken: a name the secondary does not have (its zone cut off from the primary), a password
the store rotated behind Authentik's back, an ExternalSecret that failed to sync, another whose target Secret was
deleted (still Ready), a Kustomization left on an older commit, another still reconciling after verify's wait,
and a HelmRelease changed since its last reconciliation: the play fails naming exactly those seven, and every
other check still ran and passed. A Kustomization reconciling as verify reads it (as Flux does at every interval)
is read again until it settles.
One test made of steps, in order: each step starts from what the previous one left."""

from __future__ import annotations

import json
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.integration.cluster.conftest import control_plane  # noqa: F401  # pylint: disable=unused-import
from tests.lab.test_lab_pdns import require_pdns
from tests.lab.test_sso_login_check import need_browser
from tests.playbook_runner import local_inventory, recap, run_playbook
from tests.store_access import open_store
from tests.tools import built_tools

pytestmark = pytest.mark.lab

NET = "127.118"
BASE = f"https://{NET}.0.20:9443"
PRIMARY, SECONDARY = f"{NET}.0.18", f"{NET}.0.19"
ZONE = "verify.turnkey.test"
INGRESS, API_VIP = "127.2.3.2", "127.2.3.1"
CALLBACK = f"https://grafana.{ZONE}/login/generic_oauth"
STORE_NAMES = ("sso_client_secret_grafana", "sso_password_turnkey_admin", "sso_password_turnkey_viewer")
SCOPES = [f"goauthentik.io/providers/oauth2/scope-{scope}" for scope in ("openid", "email", "profile")]
CRDS = ("gitrepositories.source.toolkit.fluxcd.io", "kustomizations.kustomize.toolkit.fluxcd.io",
        "helmreleases.helm.toolkit.fluxcd.io", "externalsecrets.external-secrets.io")
HEALTHY = {
    "nodes": "ok", "flux source flux-system/flux-system": "ok", "Kustomization flux-system/platform": "ok",
    "Kustomization flux-system/apps": "ok", "HelmRelease authentik/authentik": "ok",
    "ExternalSecret grafana/grafana-oidc": "ok", "ExternalSecret authentik/authentik-bootstrap-token": "ok",
    "vault": "ok", f"dns api.{ZONE} A": "ok",
    f"dns grafana.{ZONE} A": "ok", "certificate authentik": "ok", "certificate vault": "ok",
    "sso grafana as turnkey-admin (admin)": "ok", "sso grafana as turnkey-viewer (not admin)": "ok"}


class Cluster:
    """The real API server, with the CRDs of the Flux and External Secrets the product runs."""

    def __init__(self, kubeconfig, found):
        self.kubeconfig, self.kubectl = kubeconfig, found["TURNKEY_KUBECTL"]
        tools = built_tools("TURNKEY_FLUX_MANIFESTS", "TURNKEY_LAB_CHARTS")
        flux = yaml.safe_load_all((Path(tools["TURNKEY_FLUX_MANIFESTS"]) / "install.yaml").read_text())
        charts = sorted(Path(tools["TURNKEY_LAB_CHARTS"]).glob("external-secrets-*.tgz"))
        eso = yaml.safe_load_all(subprocess.run([found["TURNKEY_HELM"], "template", "external-secrets", str(charts[0])],
                                                capture_output=True, text=True, check=True).stdout)
        crds = [doc for doc in (*flux, *eso) if doc and doc["kind"] == "CustomResourceDefinition" and doc["metadata"][
            "name"] in CRDS]
        assert len(crds) == len(CRDS), [doc["metadata"]["name"] for doc in crds]
        self.apply(*crds)
        self.run("wait", "--for", "condition=established", *(f"crd/{name}" for name in CRDS))

    def run(self, *args, stdin=None):
        done = subprocess.run([self.kubectl, "--kubeconfig", str(self.kubeconfig), *args], input=stdin,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def apply(self, *objects):
        self.run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(objects))

    def status(self, kind, name, status, namespace=None):
        """Writes the status a controller would (none runs here)."""
        self.run("patch", kind, name, *(["-n", namespace] if namespace else []), "--subresource=status",
                 "--type=merge", "-p", json.dumps({"status": status}))


def ready(status="True", reason="Succeeded", message="ready"):
    return {"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-01T00:00:00Z"}


def meta(name, namespace=None):
    return {"name": name, **({"namespace": namespace} if namespace else {})}


def obj(api_version, kind, name, namespace=None, **fields):
    return {"apiVersion": api_version, "kind": kind, "metadata": meta(name, namespace), **fields}


def synced_secret(name, namespace, **string_data):
    """A Secret as External Secrets writes its target: labelled as one it manages."""
    secret = obj("v1", "Secret", name, namespace, stringData=string_data)
    secret["metadata"]["labels"] = {"reconcile.external-secrets.io/managed": "true"}
    return secret


def external_secret(name, namespace, key, prop):
    return obj("external-secrets.io/v1", "ExternalSecret", name, namespace,
               spec={"secretStoreRef": {"kind": "ClusterSecretStore", "name": "vault"}, "target": {"name": name},
                     "data": [{"secretKey": prop, "remoteRef": {"key": key, "property": prop}}]})


def applied(revision, condition=None):
    """A Kustomization's status as kustomize-controller writes it, by default Ready."""
    return {"observedGeneration": 1, "lastAppliedRevision": revision,
            "conditions": [condition or ready(reason="ReconciliationSucceeded")]}


def reconciling(revision):
    """A Kustomization's status while kustomize-controller reconciles it (at every interval too)."""
    return applied(revision, ready("Unknown", "Progressing", "Reconciliation in progress"))


def populate(cluster, sha, client_secret):
    """What a healthy cluster after layers 01-03 holds, as its controllers would report it."""
    revision = f"main@sha1:{sha}"
    source = {"kind": "GitRepository", "name": "flux-system"}
    chart = {"chart": "authentik", "version": "2026.5.6", "sourceRef": {"kind": "HelmRepository", "name": "charts"}}
    cluster.apply(*(obj("v1", "Namespace", name) for name in ("flux-system", "authentik", "grafana")))
    cluster.apply(
        obj("v1", "Node", "cp-1"),
        obj("source.toolkit.fluxcd.io/v1", "GitRepository", "flux-system", "flux-system",
            spec={"interval": "1m", "url": "ssh://git@git.example/cluster.git", "ref": {"branch": "main"}}),
        *(obj("kustomize.toolkit.fluxcd.io/v1", "Kustomization", name, "flux-system",
              spec={"interval": "10m", "path": f"./k8s/{name}", "prune": True, "sourceRef": source})
          for name in ("platform", "apps")),
        obj("helm.toolkit.fluxcd.io/v2", "HelmRelease", "authentik", "authentik",
            spec={"interval": "10m", "chart": {"spec": chart}}),
        external_secret("grafana-oidc", "grafana", "sso/grafana", "client_secret"),
        synced_secret("grafana-oidc", "grafana", client_secret=client_secret),
        external_secret("authentik-bootstrap-token", "authentik", "authentik/bootstrap", "token"),
        synced_secret("authentik-bootstrap-token", "authentik", token="not-read-by-verify"))
    cluster.status("node", "cp-1", {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
        "lastHeartbeatTime": "2026-12-01T00:00:00Z", "lastTransitionTime": "2026-12-01T00:00:00Z"}]})
    cluster.status("gitrepository", "flux-system", namespace="flux-system", status={
        "artifact": {"revision": revision, "path": "gitrepository/flux-system/flux-system/x.tar.gz",
                     "url": "http://source-controller/x.tar.gz", "digest": "sha256:" + "0" * 64,
                     "lastUpdateTime": "2026-12-01T00:00:00Z"},
        "conditions": [ready(message=f"stored artifact for revision '{revision}'")]})
    for name in ("platform", "apps"):
        cluster.status("kustomization", name, namespace="flux-system", status=applied(revision))
    cluster.status("helmrelease", "authentik", namespace="authentik", status={
        "observedGeneration": 1, "lastAttemptedRevision": "2026.5.6", "conditions": [ready(reason="UpgradeSucceeded")]})
    for name, namespace in (("grafana-oidc", "grafana"), ("authentik-bootstrap-token", "authentik")):
        cluster.status("externalsecret", name, namespace=namespace, status={
            "conditions": [ready(reason="SecretSynced", message="secret synced")]})


def settle_after_read(world, name, status):
    """Writes the Kustomization's status a few seconds after the play starts reading Flux's objects (its log names
    the task as it starts), as kustomize-controller finishes a reconcile: the play's first read sees it mid-way."""
    log = world.tmp / f"ansible{world.runs + 1}.log"
    world.env["ANSIBLE_LOG_PATH"] = str(log)

    def settle():
        deadline = time.monotonic() + 600
        while "Read Flux's source" not in (log.read_text() if log.exists() else ""):
            if time.monotonic() > deadline:
                return
            time.sleep(0.5)
        time.sleep(8)
        world.cluster.status("kustomization", name, namespace="flux-system", status=status)

    thread = threading.Thread(target=settle, daemon=True)
    thread.start()
    return thread


def pushed_commit(state):
    """The working clone role gitops_publish leaves: its HEAD is the commit layer 02 pushed."""
    clone = state / "gitops" / "repo"
    clone.mkdir(parents=True)
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    (clone / "README").write_text("tree\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tree"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


class World:
    def __init__(self, handle, tmp, kubeconfig):
        self.handle, self.tmp = handle, tmp
        creds = handle.json("credentials.json")
        self.token, self.ca = creds["authentik"]["token"], str(handle.root / "pki" / "ca.pem")
        self.keys = creds["pdns"]["api_key"], creds["pdns-secondary"]["api_key"]
        self.password = (handle.root / "vault-password").read_text().strip()
        self.state = tmp / "state"
        self.report_dir = self.state / "verify"
        self.env = {"TURNKEY_STATE_DIR": str(self.state), "TURNKEY_VAULT_PASSWORD": self.password,
                    "AUTHENTIK_URL": BASE, "AUTHENTIK_TOKEN": self.token}
        self.spec = {
            "cluster_name": "verify", "cluster_domain": ZONE,
            "cluster_network": {"api_vip": API_VIP, "lb_pools": [{"name": "ingress", "addresses": INGRESS}]},
            "authentik": {"url": BASE, "ca_path": self.ca},
            "sso_users": [{"name": "turnkey-admin", "email": "admin@example.com", "groups": ["grafana-admins"]},
                          {"name": "turnkey-viewer", "email": "viewer@example.com", "groups": ["grafana-viewers"]}],
            "sso_apps": [{"name": "grafana", "redirect_uris": [CALLBACK], "admin_group": "grafana-admins",
                          "groups": ["grafana-admins", "grafana-viewers"]},
                         # disabled: neither its host nor its login is checked
                         {"name": "wiki", "enabled": False, "redirect_uris": [f"https://wiki.{ZONE}/cb"]}],
            "dns": {"zone": ZONE, "api_url": f"http://{PRIMARY}:8081", "validate_certs": False,
                    "nameservers": [{"name": f"ns1.{ZONE}", "address": PRIMARY},
                                    {"name": f"ns2.{ZONE}", "address": SECONDARY}],
                    "secondary": {"api_url": f"http://{SECONDARY}:8081", "masters": [PRIMARY]}},
            "vault": {"address": handle.json("endpoints.json")["components"]["openbao"]["url"], "ca_path": self.ca},
            "secrets_store": {"path": str(tmp / "secrets"), "vault_password_env": "TURNKEY_VAULT_PASSWORD"},
            "verify_kubeconfig": str(kubeconfig),
        }
        self.runs = 0

    def inventory(self, **overrides):
        return str(local_inventory(self.tmp / f"hosts{self.runs}.yml", variables={**self.spec, **overrides}))

    def secrets(self):
        store = open_store(self.tmp / "secrets", self.password)
        return [store.read(name)["data"]["value"] for name in STORE_NAMES if store.read(name)]

    def play(self, playbook, *args, **overrides):
        self.runs += 1
        run = run_playbook("-i", self.inventory(**overrides), *args, playbook=playbook, env=self.env, timeout=900)
        for secret in (self.token, *self.keys, *self.secrets()):
            assert secret not in run.stdout + run.stderr, "a secret was printed"
        return run

    def setup(self, tasks):
        playbook = self.tmp / f"setup{self.runs}.yml"
        playbook.write_text(yaml.safe_dump([{"name": "setup", "hosts": "localhost", "gather_facts": False,
                                             "tasks": tasks}], sort_keys=False))
        run = self.play(str(playbook))
        assert run.returncode == 0, run.stdout[-4000:]

    def verify(self, *args, **overrides):
        run = self.play("playbooks/verify.yml", *args, **overrides)
        report = json.loads((self.report_dir / "report.json").read_text())
        for secret in (self.token, *self.keys, *self.secrets()):
            assert secret not in json.dumps(report) + (self.report_dir / "report.html").read_text()
        return run, report, {check["component"]: check for check in report["checks"]}

    def pdns(self, api, method, path, body=None):
        server = {"primary": (PRIMARY, self.keys[0]), "secondary": (SECONDARY, self.keys[1])}[api]
        url, key = f"http://{server[0]}:8081", server[1]
        answer = requests.request(method, f"{url}/api/v1/servers/localhost/zones/{ZONE}.{path}", json=body,
                                  headers={"X-API-Key": key}, timeout=10)
        assert answer.status_code < 300, answer.text


def store_secret(name, **options):
    return {"name": f"store {name}", "turnkey.cluster.persistent_secret": {
        "name": name, "type": "token", "length": 40, "store_path": "{{ secrets_store.path }}",
        "vault_password_env": "TURNKEY_VAULT_PASSWORD", **options}}


def stored(name):
    return "{{ lookup('turnkey.cluster.persistent_secret', '%s', field='value') }}" % name


def authentik(module, **options):
    return {"name": f"authentik {module}",
            f"turnkey.cluster.authentik_{module}": {"ca_path": "{{ authentik.ca_path }}", **options}}


SETUP = [
    *(store_secret(name) for name in STORE_NAMES),
    {"name": "zone", "ansible.builtin.include_role": {"name": "turnkey.cluster.dns_zone"}, "vars": {
        "dns_zone_name": "{{ dns.zone }}", "dns_zone_api_url": "{{ dns.api_url }}",
        "dns_zone_api_key": "{{ lookup('env', 'PDNS_KEY') }}", "dns_zone_validate_certs": False,
        "dns_zone_nameservers": "{{ dns.nameservers }}",
        "dns_zone_records": "{{ dns | turnkey.cluster.dns_records(cluster_network, authentik, sso_apps, dns.zone) }}",
        "dns_zone_secondary_api_url": "{{ dns.secondary.api_url }}",
        "dns_zone_secondary_api_key": "{{ lookup('env', 'PDNS_SECONDARY_KEY') }}",
        "dns_zone_secondary_validate_certs": False, "dns_zone_secondary_masters": "{{ dns.secondary.masters }}"}},
    authentik("group", name="grafana-admins"),
    authentik("group", name="grafana-viewers"),
    authentik("user", username="turnkey-admin", name="turnkey-admin", email="admin@example.com",
              groups=["grafana-admins"], password=stored("sso_password_turnkey_admin")),
    authentik("user", username="turnkey-viewer", name="turnkey-viewer", email="viewer@example.com",
              groups=["grafana-viewers"], password=stored("sso_password_turnkey_viewer")),
    authentik("scope_mapping", name="turnkey groups", scope_name="groups", description="Your groups",
              expression="return {'groups': [group.name for group in request.user.ak_groups.all()]}"),
    authentik("oauth2_provider", name="grafana", client_id="grafana", client_secret=stored("sso_client_secret_grafana"),
              redirect_uris=[{"url": CALLBACK}], authorization_flow="default-provider-authorization-explicit-consent",
              invalidation_flow="default-provider-invalidation-flow", signing_key="authentik Self-signed Certificate",
              issuer_mode="per_provider", property_mappings=[*SCOPES, "turnkey groups"]),
    authentik("application", slug="grafana", name="Grafana", provider="grafana"),
]


@pytest.fixture
def world(make_lab, tmp_path, control_plane):  # noqa: F811
    require_pdns()
    need_browser()
    handle = make_lab(NET)
    handle.run("up", "--profile", "fast", "--components", "openbao,pdns,pdns-secondary,authentik")
    world = World(handle, tmp_path, control_plane[0])
    world.env.update({"PDNS_KEY": world.keys[0], "PDNS_SECONDARY_KEY": world.keys[1]})
    world.cluster = Cluster(*control_plane)
    return world


def is_png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_verify_playbook(world):
    world.setup(SETUP)
    sha = pushed_commit(world.state)
    populate(world.cluster, sha, world.secrets()[0])

    # Healthy: every check passes, the report says so, nothing changed.
    run, report, checks = world.verify()
    assert run.returncode == 0, run.stdout[-6000:]
    assert {name: check["status"] for name, check in checks.items()} == HEALTHY, report
    assert recap(run.stdout)["localhost"]["changed"] == 0
    assert report["passed"] is True and report["failed"] == [] and report["check_mode"] is False
    assert f"verify passed: {len(HEALTHY)} checks ok. Report" in run.stdout
    assert checks["Kustomization flux-system/apps"]["detail"] == f"Ready, applied main@sha1:{sha}"
    assert checks["flux source flux-system/flux-system"]["detail"] == f"Ready at the pushed commit main@sha1:{sha}"
    assert checks["nodes"]["detail"] == "1 nodes Ready: cp-1"
    assert checks["HelmRelease authentik/authentik"]["detail"] == "Ready, chart 2026.5.6"
    assert checks["vault"]["detail"].startswith("unsealed")
    grafana_dns = checks[f"dns grafana.{ZONE} A"]["detail"]
    assert grafana_dns == f"primary {PRIMARY}:53: {INGRESS}; secondary {SECONDARY}:53: {INGRESS}"
    assert "days left" in checks["certificate authentik"]["detail"]
    admin, viewer = checks["sso grafana as turnkey-admin (admin)"], checks["sso grafana as turnkey-viewer (not admin)"]
    assert "groups: grafana-admins" in admin["detail"] and "groups: grafana-viewers" in viewer["detail"]
    for check in (admin, viewer):
        assert is_png(world.report_dir / check["screenshot"])
        assert stat.S_IMODE((world.report_dir / check["screenshot"]).stat().st_mode) == 0o600
    html = (world.report_dir / "report.html").read_text()
    assert f'href="{admin["screenshot"]}"' in html and "passed" in html
    assert stat.S_IMODE(world.report_dir.stat().st_mode) == 0o700
    for name in ("report.json", "report.html"):
        assert stat.S_IMODE((world.report_dir / name).stat().st_mode) == 0o600

    # Check mode runs every check the same (nothing is skipped) and still writes the report. Flux is reconciling
    # a Kustomization as verify reads it (Ready=Unknown, as at every interval): the read is taken again until it
    # settles, not judged mid-way (a CI run once failed so).
    revision = f"main@sha1:{sha}"
    world.cluster.status("kustomization", "apps", namespace="flux-system", status=reconciling(revision))
    settled = settle_after_read(world, "apps", applied(revision))
    run, report, checks = world.verify("--check", "--diff")
    settled.join()
    del world.env["ANSIBLE_LOG_PATH"]
    assert run.returncode == 0, run.stdout[-6000:]
    assert "FAILED - RETRYING: [localhost]: Read Flux's source" in run.stdout
    assert {name: check["status"] for name, check in checks.items()} == HEALTHY and report["check_mode"] is True
    assert recap(run.stdout)["localhost"]["changed"] == 0

    # A certificate with fewer days left than asked is a warning, which does not fail verify. A lab without a
    # cluster (verify_cluster: false, never the product's): the cluster checks are skipped and the logins take the
    # client secret from the store, the Secret's origin.
    run, report, checks = world.verify(verify_cert_warn_days=100000, verify_cluster=False)
    assert run.returncode == 0 and checks["certificate vault"]["status"] == "warning", report
    assert "renew it" in checks["certificate vault"]["detail"]
    assert checks["cluster"]["status"] == "skipped" and "nodes" not in checks
    assert checks["sso grafana as turnkey-admin (admin)"]["status"] == "ok"

    # Broken: the secondary is cut off from its primary, then a record is added on the primary only; the store
    # rotates the viewer's password, which Authentik does not know.
    world.pdns("secondary", "PUT", "", {"masters": [f"{NET}.0.77"]})
    world.pdns("primary", "PATCH", "", {"rrsets": [{
        "name": f"extra.{ZONE}.", "type": "A", "ttl": 300, "changetype": "REPLACE",
        "records": [{"content": "127.2.3.9", "disabled": False}]}]})
    world.setup([store_secret("sso_password_turnkey_viewer", rotate=True)])
    world.cluster.status("externalsecret", "grafana-oidc", namespace="grafana", status={"conditions": [ready(
        "False", "SecretSyncedError", "could not get secret data from provider")]})
    # a target Secret deleted while its ExternalSecret still says Ready (the controller has not synced since)
    world.cluster.run("delete", "secret", "authentik-bootstrap-token", "-n", "authentik")
    world.cluster.status("kustomization", "apps", namespace="flux-system", status={
        "lastAppliedRevision": "main@sha1:" + "0" * 40, "conditions": [ready(reason="ReconciliationSucceeded")]})
    # a Kustomization that stays mid-reconcile longer than verify waits for it to settle
    world.cluster.status("kustomization", "platform", namespace="flux-system", status=reconciling(revision))
    # a HelmRelease whose spec changed after its last reconciliation (generation 2, observed 1)
    world.cluster.run("patch", "helmrelease", "authentik", "-n", "authentik", "--type=merge", "-p",
                      json.dumps({"spec": {"interval": "5m"}}))
    dns = {**world.spec["dns"], "records": [{"name": "extra", "type": "A", "content": "127.2.3.9"}]}
    run, report, checks = world.verify(dns=dns, verify_settle_timeout=10)
    broken = ["Kustomization flux-system/apps", "Kustomization flux-system/platform", "HelmRelease authentik/authentik",
              "ExternalSecret authentik/authentik-bootstrap-token", "ExternalSecret grafana/grafana-oidc",
              f"dns extra.{ZONE} A", "sso grafana as turnkey-viewer (not admin)"]
    assert run.returncode != 0 and report["passed"] is False and report["failed"] == broken, report
    assert f"verify failed: {', '.join(broken)}." in run.stdout
    extra = checks[f"dns extra.{ZONE} A"]["detail"]
    assert extra.startswith("wrong or missing on secondary (expected 127.2.3.9)"), extra
    assert f"primary {PRIMARY}:53: 127.2.3.9" in extra and f"secondary {SECONDARY}:53: NXDOMAIN" in extra
    assert checks["Kustomization flux-system/apps"]["detail"] == (
        f"Ready, applied main@sha1:{'0' * 40}, not the pushed commit {sha}")
    assert checks["Kustomization flux-system/platform"]["detail"] == (
        f"not Ready (Ready=Unknown, Progressing: Reconciliation in progress), applied {revision}")
    assert run.stdout.count("FAILED - RETRYING: [localhost]: Read Flux's source") == 2  # 10 s: two more reads
    assert checks["HelmRelease authentik/authentik"]["detail"] == (
        "Ready, chart 2026.5.6, not reconciled since its last change (generation 2, observed 1)")
    assert checks["ExternalSecret grafana/grafana-oidc"]["detail"] == (
        "not Synced (Ready=False, SecretSyncedError: could not get secret data from provider)")
    assert checks["ExternalSecret authentik/authentik-bootstrap-token"]["detail"] == (
        "Synced, but its target Secret authentik/authentik-bootstrap-token is missing (External Secrets re-creates it "
        "at its next sync: is its controller running?)")
    viewer = checks["sso grafana as turnkey-viewer (not admin)"]
    assert "failed at step login" in viewer["detail"] and "turnkey-viewer" in viewer["detail"], viewer
    assert is_png(world.report_dir / viewer["screenshot"])  # the page that refused the login
    # every other check still ran, after the failures too
    assert {name: check["status"] for name, check in checks.items() if name not in broken} == {
        name: status for name, status in HEALTHY.items() if name not in broken}
    assert recap(run.stdout)["localhost"]["changed"] == 0
