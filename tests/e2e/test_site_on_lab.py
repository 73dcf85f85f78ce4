"""The newcomer's path: the lab comes up and site.yml converges on it (layers 00-03: machines, cluster, the GitOps
platform with Vault and External Secrets, Authentik SSO and DNS) and verify passes, SSO logins in headless Chromium
included; the second run changes nothing; a spec change lands through Git; a teardown with a fresh Vault rebuilds
the same application secrets and verify passes again (destroy -> bootstrap -> verify, twice, unattended)."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import os
import signal
import subprocess
import time

import pytest
import requests
import yaml

from tests.playbook_runner import BIN, REPO, copy_inventory, recap, run_playbook
from tests.store_access import open_store
from tests.tools import built_tools

pytestmark = [pytest.mark.e2e, pytest.mark.lab]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """An isolated lab on its own loopback block and state folder, so a developer's lab is untouched."""
    state = tmp_path_factory.mktemp("lab-state")
    env = dict(os.environ, TURNKEY_LAB_DIR=str(state), TURNKEY_LAB_NET="127.90",
               PATH="%s:%s" % (BIN, os.environ["PATH"]))
    up = subprocess.run([str(BIN / "lab"), "up", "--profile", "fast"], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield state
    finally:
        subprocess.run([str(BIN / "lab"), "down"], cwd=REPO, env=env, capture_output=True, timeout=120, check=False)


PROXMOX_NODES = {"cp1": 1500, "cp2": 1501, "cp3": 1502, "worker1": 2000, "worker2": 2001, "worker3": 2002}


def proxmox_vms(lab_state):
    creds = json.loads((lab_state / "credentials.json").read_text())["proxmox"]
    answer = requests.get("https://127.90.0.3:8006/api2/json/nodes/pve/qemu", verify=str(lab_state / "pki" / "ca.pem"),
                          headers={"Authorization": "PVEAPIToken=%s=%s" % (creds["token_id"], creds["token_secret"])},
                          timeout=10)
    answer.raise_for_status()
    return {vm["vmid"]: vm for vm in answer.json()["data"]}


def hetzner_servers(lab_state):
    token = json.loads((lab_state / "credentials.json").read_text())["hetzner"]["token"]
    answer = requests.get("https://127.90.0.4:8443/v1/servers", verify=str(lab_state / "pki" / "ca.pem"),
                          headers={"Authorization": "Bearer " + token}, timeout=10)
    answer.raise_for_status()
    return {server["name"]: server for server in answer.json()["servers"]}


ALL_NODES = [*PROXMOX_NODES, "hcloud-worker1"]


def kubectl(kubeconfig, *args):
    """kubectl (the real one, built by make tools) with the fetched kubeconfig, unmodified; its stdout."""
    binary = built_tools("TURNKEY_KUBECTL")["TURNKEY_KUBECTL"]
    done = subprocess.run([binary, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def kubectl_json(kubeconfig, *args):
    return json.loads(kubectl(kubeconfig, *args, "-o", "json"))


def ready(node):
    return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready") == "True"


def changed_hosts(stdout, task):
    """Hosts a task reported changed in the default callback's output."""
    hosts, current = set(), None
    for line in stdout.splitlines():
        if line.startswith("TASK ["):
            current = task in line
        elif current and line.startswith("changed: ["):
            hosts.add(line.split("[", 1)[1].split("]", 1)[0].split(" -> ")[0])  # "cp1 -> localhost": delegated
    return hosts


def changed_tasks(stdout):
    """The tasks that reported a change, with their hosts: what a failed "changed=0" assertion shows."""
    found, task = [], None
    for line in stdout.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed: ["):
            found.append("%s %s" % (task, line))
    return found


def digests(folder):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.glob("*.vault.yml"))}


class Site:
    """A copy of the lab inventory, its state folder, and the secrets' digests after the first run."""

    def __init__(self, lab, tmp_path):
        self.lab, self.tmp = lab, tmp_path
        self.inventory = copy_inventory(tmp_path, "lab")
        self.state = tmp_path / "state"
        self.env = {"TURNKEY_LAB_DIR": str(lab), "TURNKEY_STATE_DIR": str(self.state)}
        self.stored = None

    def run(self, *args, **kwargs):
        kwargs.setdefault("timeout", 1800)  # a whole site.yml: layer 02 waits for every Kustomization
        return run_playbook("-i", str(self.inventory), *args, env=self.env, **kwargs)

    def store(self):
        return open_store(self.inventory / "secrets", (self.lab / "vault-password").read_text().strip())

    def pushed(self):
        """The commit the play pushed last (its working clone's HEAD, which it pushed)."""
        return subprocess.run(["git", "-C", str(self.state / "gitops" / "repo"), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()

    def git_log(self):
        return subprocess.run(["git", "-C", str(self.state / "gitops" / "repo"), "log", "--format=%H %s"],
                              capture_output=True, text=True, check=True).stdout.splitlines()


def condition(obj, kind="Ready"):
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def platform_is_ready_at(site, revision):
    """Flux has exactly the pushed commit, every Kustomization applied it and is Ready, every HelmRelease Ready."""
    kubeconfig = site.state / "kubeconfig"
    source = kubectl_json(kubeconfig, "-n", "flux-system", "get", "gitrepository", "flux-system")
    assert source["status"]["artifact"]["revision"] == "main@sha1:" + revision
    kustomizations = kubectl_json(kubeconfig, "-n", "flux-system", "get", "kustomizations")["items"]
    assert len(kustomizations) >= 10
    for item in kustomizations:
        assert condition(item).get("status") == "True", (item["metadata"]["name"], condition(item))
        assert item["status"]["lastAppliedRevision"] == "main@sha1:" + revision, item["metadata"]["name"]
    releases = kubectl_json(kubeconfig, "get", "helmreleases", "-A")["items"]
    wanted = {"cert-manager", "external-secrets", "sealed-secrets", "proxmox-csi-plugin", "hcloud-csi", "authentik",
              "grafana"}
    assert {r["metadata"]["name"] for r in releases} >= wanted
    for item in releases:
        assert condition(item).get("status") == "True", (item["metadata"]["name"], condition(item))
    return kustomizations


def verify_passed(site):
    """verify.yml, the last play of site.yml, found every component ok: Flux at the pushed commit, Vault, DNS on
    both servers, the certificates, and per SSO app an admin's and a non-admin's login in headless Chromium, each
    with its screenshot."""
    report = json.loads((site.state / "verify" / "report.json").read_text())
    assert report["passed"] and report["failed"] == [], json.dumps(report["checks"], indent=1)
    assert not report["check_mode"]
    components = {check["component"] for check in report["checks"]}
    for app in ("grafana", "vault"):  # the lab spec's apps, each by an admin and by a non-admin
        assert {"sso %s as turnkey-admin (admin)" % app, "sso %s as turnkey-viewer (not admin)" % app} <= components, \
            sorted(components)
    assert len(list((site.state / "verify").rglob("*.png"))) >= 4  # two apps, an admin and a viewer each
    # Vault's logins went through Vault itself (its OIDC method, then its UI) and got the mapped policies
    details = {check["component"]: check["detail"] for check in report["checks"]}
    assert "Vault token policies: default, turnkey-sso-admin" in details["sso vault as turnkey-admin (admin)"], details
    assert "turnkey-sso-admin" not in details["sso vault as turnkey-viewer (not admin)"], details


def app_secret(site):
    secret = kubectl_json(site.state / "kubeconfig", "-n", "authentik", "get", "secret", "authentik-bootstrap-token")
    return base64.b64decode(secret["data"]["token"]).decode()


@pytest.fixture(scope="module")
def site(lab, tmp_path_factory):
    return Site(lab, tmp_path_factory.mktemp("site"))


@pytest.mark.incremental
class TestSiteOnTheLab:
    """site.yml on the lab, step by step (a failed step fails the rest, see tests/conftest.py)."""

    def test_first_run_converges(self, site):
        first = site.run()
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
        assert recap(first.stdout)["localhost"]["changed"] >= 1
        assert "=== layer 00-persistent-auth ===" in first.stdout
        site.stored = digests(site.inventory / "secrets")
        assert set(site.stored) == {"sealed_secrets.vault.yml", "flux_deploy_key.vault.yml",
                                    "talos_secrets.vault.yml", "authentik_bootstrap_token.vault.yml",
                                    "proxmox_csi_token.vault.yml",
                                    # derived from the spec's authentik, dns, sso_apps and sso_users
                                    "authentik_bootstrap_password.vault.yml", "authentik_secret_key.vault.yml",
                                    "authentik_postgres_password.vault.yml", "pdns_api_key.vault.yml",
                                    "acme_dns01_tsig.vault.yml",
                                    "sso_client_secret_grafana.vault.yml", "sso_client_secret_vault.vault.yml",
                                    "sso_password_turnkey_admin.vault.yml", "sso_password_turnkey_viewer.vault.yml",
                                    # layer 02: the Vault's keys and the playbook's own Vault login
                                    "vault_keys.vault.yml", "vault_playbook_login.vault.yml"}
        verify_passed(site)

    def test_second_run_and_check_mode_change_nothing(self, site):
        # An app's synced credentials deleted by hand: External Secrets re-creates them from Vault, and the next run
        # (its verify reads every ExternalSecret's target and logs in with that Secret) passes with the same value.
        kubeconfig = site.state / "kubeconfig"
        deleted = kubectl_json(kubeconfig, "-n", "grafana", "get", "secret", "grafana-oidc")
        kubectl(kubeconfig, "-n", "grafana", "delete", "secret", "grafana-oidc")
        second = site.run()
        assert second.returncode == 0, second.stdout[-4000:]
        assert all(counts["changed"] == 0 and counts["failed"] == 0 for counts in recap(second.stdout).values())
        assert digests(site.inventory / "secrets") == site.stored
        again = kubectl_json(kubeconfig, "-n", "grafana", "get", "secret", "grafana-oidc")
        assert again["metadata"]["uid"] != deleted["metadata"]["uid"]
        assert base64.b64decode(again["data"]["client_secret"]).decode() == \
            site.store().read("sso_client_secret_grafana")["data"]["value"]

        check = site.run("--check", "--diff")
        assert check.returncode == 0, check.stdout[-4000:]
        assert all(counts["changed"] == 0 for counts in recap(check.stdout).values()), changed_tasks(check.stdout)
        assert digests(site.inventory / "secrets") == site.stored

        report = json.loads((site.state / "runs" / "last.json").read_text())
        assert {layer["name"] for layer in report["layers"]} == {
            "validation", "00-persistent-auth", "01-infrastructure", "02-services", "03-configuration", "verify"}
        assert all(layer["changed"] == 0 and layer["failed"] == 0 for layer in report["layers"])

    def test_every_node_is_a_running_machine(self, site):
        # Layer 01: every Proxmox node is a running VM that booted with its own address.
        vms = proxmox_vms(site.lab)
        for host, vmid in PROXMOX_NODES.items():
            assert vms[vmid]["name"] == host and vms[vmid]["status"] == "running", vms.get(vmid)
        # ...and the Hetzner worker is a running server at its private address.
        servers = hetzner_servers(site.lab)
        assert servers["hcloud-worker1"]["status"] == "running"
        assert [n["ip"] for n in servers["hcloud-worker1"]["private_net"]] == ["127.3.0.10"]

    def test_the_machines_are_one_kubernetes_cluster(self, site):
        # The fetched kubeconfig works with the real kubectl, every node is registered by name with its
        # config's labels and address, and Ready now that Cilium runs.
        for name in ("kubeconfig", "talos/talosconfig"):
            assert (site.state / name).stat().st_mode & 0o777 == 0o600, name
        kubeconfig = site.state / "kubeconfig"
        nodes = {n["metadata"]["name"]: n for n in kubectl_json(kubeconfig, "get", "nodes")["items"]}
        assert sorted(nodes) == sorted(ALL_NODES)
        assert all(ready(node) for node in nodes.values()), {n: ready(node) for n, node in nodes.items()}
        # topology as the Proxmox CCM and CSI plugin expect it: region (the cluster name by default), zone = the
        # PVE node, provider ID proxmox://<region>/<VM id>; the Hetzner worker: the hcloud CCM's region (its
        # location) and no provider ID of ours (the hcloud CCM sets hcloud://<server id>)
        for host, vmid in PROXMOX_NODES.items():
            labels = nodes[host]["metadata"]["labels"]
            assert (labels["topology.kubernetes.io/region"], labels["topology.kubernetes.io/zone"]) == ("lab", "pve")
            assert nodes[host]["spec"].get("providerID") == "proxmox://lab/%d" % vmid, nodes[host]["spec"]
        assert nodes["hcloud-worker1"]["metadata"]["labels"]["topology.kubernetes.io/region"] == "fsn1"
        assert "providerID" not in nodes["hcloud-worker1"]["spec"]
        assert {"type": "InternalIP", "address": "127.2.2.1"} in nodes["worker1"]["status"]["addresses"]
        assert "node-role.kubernetes.io/control-plane" in nodes["cp1"]["metadata"]["labels"]
        cilium = kubectl_json(kubeconfig, "-n", "kube-system", "get", "daemonset", "cilium")
        assert cilium["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        keys = kubectl_json(kubeconfig, "-n", "kube-system", "get", "secrets", "-l",
                            "sealedsecrets.bitnami.com/sealed-secrets-key=active")["items"]
        assert len(keys) == 1

    def test_the_platform_runs_the_pushed_commit(self, site):
        # Layer 02: Flux reconciles exactly the commit the play pushed, every Kustomization and HelmRelease Ready.
        platform_is_ready_at(site, site.pushed())
        assert site.git_log()[0].split(" ", 1)[1].startswith("turnkey.cluster: publish the platform tree")

    def test_application_secrets_flow_from_the_store_through_vault(self, site):
        kubeconfig = site.state / "kubeconfig"
        synced = kubectl_json(kubeconfig, "get", "externalsecrets", "-A")["items"]
        assert synced, "the tree syncs the store's application secrets"
        for item in synced:
            assert condition(item).get("status") == "True", (item["metadata"]["name"], condition(item))
        assert app_secret(site) == site.store().read("authentik_bootstrap_token")["data"]["value"]
        # no token with the root policy is live: the lab's own root token was revoked on adoption
        root = json.loads((site.lab / "credentials.json").read_text())["openbao"]["root_token"]
        lookup = requests.get("https://127.90.0.2:8200/v1/auth/token/lookup-self", headers={"X-Vault-Token": root},
                              verify=str(site.lab / "pki" / "ca.pem"), timeout=10)
        assert lookup.status_code == 403

    def test_a_secret_sealed_offline_is_decrypted_in_the_cluster(self, site, tmp_path):
        # Sealed with the real kubeseal and only the layer 00 certificate (no cluster access).
        kubeseal = os.path.join(built_tools("TURNKEY_SEALED_SECRETS")["TURNKEY_SEALED_SECRETS"], "kubeseal")
        certificate = tmp_path / "sealing.pem"
        certificate.write_text(site.store().read("sealed_secrets")["data"]["certificate"])
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "offline", "namespace": "default"},
                  "stringData": {"password": "sealed-offline"}}
        sealed = subprocess.run([kubeseal, "--cert", str(certificate), "--format", "yaml"], input=json.dumps(secret),
                                capture_output=True, text=True, timeout=60, check=False)
        assert sealed.returncode == 0, sealed.stderr
        kubectl = built_tools("TURNKEY_KUBECTL")["TURNKEY_KUBECTL"]
        applied = subprocess.run([kubectl, "--kubeconfig", str(site.state / "kubeconfig"), "apply", "-f", "-"],
                                 input=sealed.stdout, capture_output=True, text=True, timeout=60, check=False)
        assert applied.returncode == 0, applied.stderr
        for _attempt in range(60):
            found = subprocess.run([kubectl, "--kubeconfig", str(site.state / "kubeconfig"), "-n", "default", "get",
                                    "secret", "offline", "-o", "json"], capture_output=True, text=True, check=False)
            if found.returncode == 0:
                break
            time.sleep(2)
        assert found.returncode == 0, found.stderr
        assert base64.b64decode(json.loads(found.stdout)["data"]["password"]).decode() == "sealed-offline"

    def test_a_spec_change_shows_in_check_mode_and_lands_through_git_while_a_controller_dies(self, site):
        # One change of the spec (an LB pool) and one node's patch: check mode shows both, the tree's through Git
        # and Flux's own diff against the cluster, and changes nothing; the next run lands them, the pool through
        # a new commit on top of the last, the patch on that node only, while kustomize-controller is killed as
        # the play waits for Flux (the lab's supervisor starts it again, as a Deployment's pod would be).
        cluster = site.inventory / "group_vars" / "all" / "cluster.yml"
        spec = yaml.safe_load(cluster.read_text())
        services = next(pool for pool in spec["cluster_network"]["lb_pools"] if pool["name"] == "services")
        services["addresses"] = "127.2.3.4-127.2.3.30"
        cluster.write_text(yaml.safe_dump(spec, sort_keys=False))
        host_vars = site.inventory / "host_vars"
        host_vars.mkdir(exist_ok=True)
        (host_vars / "worker2.yml").write_text(yaml.safe_dump(
            {"talos_config_node_patches": [{"machine": {"nodeLabels": {"turnkey.test/patched": "yes"}}}]}))
        before = site.pushed()

        check = site.run("--check", "--diff")
        assert check.returncode == 0, check.stdout[-4000:]
        assert "127.2.3.30" in check.stdout and "turnkey.test/patched" in check.stdout
        # what the cluster would get: Flux's own diff of the tree against the API server's dry run
        assert changed_hosts(check.stdout, "Ask Flux what the tree would change") == {"localhost"}
        assert "CiliumLoadBalancerIPPool/services drifted" in check.stdout
        assert {host for host, counts in recap(check.stdout).items() if counts["changed"]} == {"localhost", "worker2"}
        assert site.pushed() == before  # check mode pushed nothing

        status = site.lab / "run" / "status.json"
        restarts = json.loads(status.read_text())["components"]["kustomize-controller"]["restarts"]
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            running = pool.submit(site.run)
            while site.pushed() == before and not running.done():
                time.sleep(0.5)
            os.kill(int((site.lab / "run" / "kustomize-controller.pid").read_text().split()[0]), signal.SIGKILL)
            landed = running.result()
        assert landed.returncode == 0, landed.stdout[-4000:]
        assert json.loads(status.read_text())["components"]["kustomize-controller"]["restarts"] > restarts
        after = site.pushed()
        assert after != before and site.git_log()[1].split(" ", 1)[0] == before
        platform_is_ready_at(site, after)
        pool = kubectl_json(site.state / "kubeconfig", "get", "ciliumloadbalancerippools", "services")
        assert "127.2.3.30" in json.dumps(pool["spec"])
        assert changed_hosts(landed.stdout, "Apply the machine config, dry run first") == {"worker2"}
        assert {host for host, counts in recap(landed.stdout).items() if counts["changed"]} == {"localhost", "worker2"}
        labels = kubectl_json(site.state / "kubeconfig", "get", "node", "worker2")["metadata"]["labels"]
        assert labels.get("turnkey.test/patched") == "yes"

    def test_a_workload_missing_its_secret_fails_the_wait_naming_the_cause(self, site, tmp_path):
        # A commit outside the tree (the rest of the repository is the operator's) with a Deployment whose pod needs
        # a Secret nobody makes: the kubelet (KWOK's gate) never starts it, the Kustomization's health check times
        # out, and role flux_wait names it, the missing Secret and the Kustomization blocked behind it.
        work = site.state / "gitops" / "repo"
        key = tmp_path / "deploy_key"
        key.write_text(site.store().read("flux_deploy_key")["data"]["private_key"])
        key.chmod(0o600)
        known_hosts = tmp_path / "known_hosts"  # the lab's Git host key, pinned as inventory/lab pins it
        git_host = json.loads((site.lab / "endpoints.json").read_text())["components"]["git"]["host_key"]
        known_hosts.write_text("[127.90.0.5]:2222 %s\n" % git_host)
        ssh = "ssh -F none -i %s -o IdentitiesOnly=yes -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes" % (
            key, known_hosts)
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "needs-secret",
                      "namespace": "default"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "needs"}},
                      "template": {"metadata": {"labels": {"app": "needs"}}, "spec": {"containers": [{
                          "name": "app", "image": "registry.example/app:1", "env": [{"name": "TOKEN", "valueFrom": {
                              "secretKeyRef": {"name": "absent-secret", "key": "token"}}}]}]}}}}
        (work / "broken-app").mkdir()
        (work / "broken-app" / "deployment.yaml").write_text(yaml.safe_dump(deployment))
        (work / "broken-app" / "kustomization.yaml").write_text("resources: [deployment.yaml]\n")
        git = ["git", "-C", str(work), "-c", "user.name=operator", "-c", "user.email=operator@lab.test"]
        subprocess.run([*git, "add", "broken-app"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "an app whose Secret is missing"], check=True)
        subprocess.run([*git, "push", "-q", "origin", "HEAD"], check=True, env=dict(os.environ, GIT_SSH_COMMAND=ssh))
        revision = site.pushed()
        kubectl = built_tools("TURNKEY_KUBECTL")["TURNKEY_KUBECTL"]
        objects = [{"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                    "metadata": {"name": name, "namespace": "flux-system"},
                    "spec": {"interval": "10m", "path": "./broken-app", "prune": True, "wait": True, "timeout": "1m",
                             "sourceRef": {"kind": "GitRepository", "name": "flux-system"}, **extra}}
                   for name, extra in (("broken-app", {}), ("behind-broken", {"dependsOn": [{"name": "broken-app"}]}))]
        manifest = "\n---\n".join(json.dumps(item) for item in objects)
        kubeconfig = str(site.state / "kubeconfig")
        subprocess.run([kubectl, "--kubeconfig", kubeconfig, "apply", "-f", "-"], input=manifest, text=True,
                       check=True, capture_output=True)
        playbook = tmp_path / "wait.yml"
        playbook.write_text(yaml.safe_dump([{"name": "wait", "hosts": "localhost", "gather_facts": False, "tasks": [{
            "name": "Wait", "ansible.builtin.include_role": {"name": "turnkey.cluster.flux_wait"},
            "vars": {"flux_wait_kubeconfig": kubeconfig, "flux_wait_revision": revision,
                     "flux_wait_kustomizations": [{"name": "broken-app", "timeout": 150},
                                                  {"name": "behind-broken"}]}}]}]))
        try:
            stuck = site.run(playbook=str(playbook))
            assert stuck.returncode != 0
            assert "Kustomization flux-system/broken-app is not Ready on commit %s" % revision in stuck.stdout, \
                stuck.stdout[-4000:]
            assert "Deployment/default/needs-secret" in stuck.stdout, stuck.stdout[-4000:]
            why = stuck.stdout.split("Why:", 1)
            assert len(why) == 2 and "absent-secret" in why[1].split("Blocked behind it", 1)[0], stuck.stdout[-4000:]
            assert "Blocked behind it: behind-broken." in stuck.stdout, stuck.stdout[-4000:]
        finally:
            subprocess.run([kubectl, "--kubeconfig", kubeconfig, "delete", "-f", "-", "--wait=false"], input=manifest,
                           text=True, check=False, capture_output=True)

    def test_teardown_then_site_rebuilds_the_same_cluster(self, site):
        # New machines in maintenance mode become the same cluster (same secrets, so the kept talosconfig
        # and kubeconfig still work), every node Ready, layer 00 untouched.
        secret_before = app_secret(site)
        teardown = site.run("-e", "teardown_confirm=lab", playbook="playbooks/teardown.yml")
        assert teardown.returncode == 0, teardown.stdout[-4000:]
        # ...and the lab's Vault starts over too (the fast profile's in-memory storage: a restart is a new Vault,
        # initialised by the lab with new keys), as an operator's Vault rebuilt with the homelab would
        first_keys = json.loads((site.lab / "credentials.json").read_text())["openbao"]["unseal_keys"]
        os.kill(int((site.lab / "run" / "openbao.pid").read_text().split()[0]), signal.SIGKILL)
        for _attempt in range(60):
            keys = json.loads((site.lab / "credentials.json").read_text())["openbao"]["unseal_keys"]
            if keys != first_keys:
                break
            time.sleep(1)
        assert keys != first_keys
        rebuilt = site.run()
        assert rebuilt.returncode == 0, rebuilt.stdout[-4000:] + rebuilt.stderr[-2000:]
        assert changed_hosts(rebuilt.stdout, "Bootstrap etcd") == {"cp1"}
        nodes = {n["metadata"]["name"]: n for n in kubectl_json(site.state / "kubeconfig", "get", "nodes")["items"]}
        assert sorted(nodes) == sorted(ALL_NODES) and all(ready(node) for node in nodes.values())
        vault_files = {"vault_keys.vault.yml", "vault_playbook_login.vault.yml"}  # a new Vault: new keys, new login
        kept = {name: digest for name, digest in digests(site.inventory / "secrets").items() if name not in vault_files}
        assert kept == {name: digest for name, digest in site.stored.items() if name not in vault_files}
        # the application secrets are the store's, as before; the new Vault's keys replaced the old in the store,
        # which went to its backup
        platform_is_ready_at(site, site.pushed())
        assert app_secret(site) == secret_before
        verify_passed(site)  # the second destroy -> bootstrap -> verify
        store = site.store()
        assert store.read("vault_keys")["data"]["unseal_keys"] == " ".join(keys)
        backups = sorted((site.inventory / "secrets" / ".backup").glob("vault_keys.*.vault.yml"))
        assert [store.read_file(str(path))["data"]["unseal_keys"] for path in backups] == [" ".join(first_keys)]
