"""The lab's Helm chart repository (component `charts`, <net>.0.13:8443): the real helm, trusting the lab CA,
adds it, finds and pulls every chart the lab inventory's platform tree (rendered by role platform_tree) names at
the version the tree pins, and renders each with the values the tree's HelmRelease passes; the rendered charts
are wired to what the tree provides (the Secrets its SealedSecrets make, the service account Vault trusts).
Plain HTTP and a client without the lab CA are refused, and the repository is read-only. The real
source-controller fetches every chart through the tree's HelmRepositories and CA Secret."""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.integration.cluster.conftest import control_plane  # noqa: F401  # pylint: disable=unused-import
from tests.integration.platform_tree.conftest import HCLOUD_TOKEN, Tree
from tests.lab.conftest import isolated_labs, wait_for
from tests.lab.test_lab_flux import Cluster, condition, twin_cluster
from tests.tools import built_tools

NET = "127.105"
URL = f"https://{NET}.0.13:8443"
GITEA = {"name": "gitea", "admin_group": "gitea-admins", "groups": ["gitea-admins", "gitea-users"],
         "redirect_uris": ["https://git.lab.turnkey.test/user/oauth2/authentik/callback"]}
HARBOR = {"name": "harbor", "admin_group": "harbor-admins", "groups": ["harbor-admins", "harbor-users"],
          "redirect_uris": ["https://registry.lab.turnkey.test/c/oidc/callback"]}
SYNAPSE = {"name": "synapse", "admin_group": "synapse-admins", "groups": ["synapse-admins", "synapse-users"],
           "redirect_uris": ["https://matrix.lab.turnkey.test/_synapse/client/oidc/callback"]}
STAND_INS = Path(__file__).resolve().parents[2] / "lab" / "charts"


def objects(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(rendered: list[dict], kind: str, name: str) -> dict:
    found = [obj for obj in rendered if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(found) == 1, "%s %s: %d rendered (%s)" % (kind, name, len(found), sorted(
        "%s/%s" % (obj["kind"], obj["metadata"]["name"]) for obj in rendered))
    return found[0]


def secret_refs(pod_spec: dict) -> set[tuple[str, str]]:
    """(secret, key) pairs a pod template reads: env secretKeyRefs and secret volumes' items (key '*': all)."""
    refs = set()
    for container in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                refs.add((ref["name"], ref["key"]))
    for volume in pod_spec.get("volumes") or []:
        secret = volume.get("secret")
        if secret:
            items = secret.get("items") or [{"key": "*"}]
            refs.update((secret["secretName"], item["key"]) for item in items)
    return refs


def lab_tree(folder: Path, lab_root: Path, net: str) -> Tree:
    """The lab inventory's tree rendered by role platform_tree with its charts from the chart repository of the lab on
    `net` (its address and CA) and the lab's OpenBao as the external Vault."""
    tree = Tree(folder, "lab", {"set": {
        "vault": {"deploy": "external", "address": f"https://{net}.0.2:8200", "ca_path": "@CA@"},
        "charts": {"repository_url": f"https://{net}.0.13:8443", "ca_path": str(lab_root / "pki" / "ca.pem")},
        "hetzner": {"token": HCLOUD_TOKEN}}})
    tree.make_store()
    # Gitea, Harbor and Synapse, whose releases the collection ships, are not in the lab inventory (no logins to them
    # in the e2e): added here, so that their stand-in charts are served, fetched and rendered with the tree's values
    # as every other.
    spec = tree.spec()
    spec["sso_apps"] = [*spec["sso_apps"], GITEA, HARBOR, SYNAPSE]
    tree.set_spec(spec)
    tree.rendered()
    return tree


@pytest.fixture(scope="module")
def charts_lab(tmp_path_factory):
    """One lab state folder for the module (each test starts and stops it with its components), and the lab
    inventory's tree rendered with the chart repository at this lab's address and its CA (made first: a lab
    keeps its CA for good)."""
    from turnkey_lab import pki  # noqa: PLC0415
    from turnkey_lab.state import Lab  # noqa: PLC0415

    with isolated_labs(tmp_path_factory) as make:
        lab = make(NET)
        pki.ensure_ca(Lab.at(lab.root, NET))
        yield lab, lab_tree(tmp_path_factory.mktemp("charts-tree"), lab.root, NET)


def tree_objects(tree) -> tuple[dict, list, dict]:
    """The rendered tree's HelmRepositories {name: object}, HelmReleases and SealedSecrets {(ns, name): keys}, as
    Flux's substitution leaves them."""
    repositories, releases, sealed = {}, [], {}
    for path, text in tree.files().items():
        if not path.endswith(".yaml"):
            continue
        for obj in objects(tree.substituted(text)):
            if obj["kind"] == "HelmRepository":
                repositories[obj["metadata"]["name"]] = obj
            elif obj["kind"] == "HelmRelease":
                releases.append(obj)
            elif obj["kind"] == "SealedSecret":
                meta = obj["spec"]["template"]["metadata"]
                sealed[(meta["namespace"], meta["name"])] = set(obj["spec"]["encryptedData"])
    return repositories, releases, sealed


@pytest.fixture
def running(charts_lab):
    """Starts the module's lab with the components asked for; stops it after the test."""
    lab, _tree = charts_lab
    started = []

    def up(components: str):
        lab.run("up", "--components", components, "--profile", "fast")
        started.append(components)
        return lab

    yield up
    if started:
        lab.run("down", ok=False)


def helm_runner(tmp_path: Path):
    helm = built_tools("TURNKEY_HELM")["TURNKEY_HELM"]
    home = tmp_path / "helm-home"
    env = {**os.environ, "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_DATA_HOME": str(home / "data")}

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([helm, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
        if ok:
            assert result.returncode == 0, "helm %s:\n%s%s" % (" ".join(args), result.stdout, result.stderr)
        return result

    return run


def test_the_lab_serves_every_chart_of_the_lab_tree(charts_lab, running, tmp_path):
    lab, tree = charts_lab
    running("charts")
    endpoint = lab.json("endpoints.json")["components"]["charts"]
    assert endpoint["url"] == URL
    lab_ca = lab.root / "pki" / "ca.pem"
    helm = helm_runner(tmp_path)

    # The tree's HelmRepositories all point at the lab (the mirror setting), as plain Helm repositories verified
    # with the lab CA.
    repositories, releases, sealed = tree_objects(tree)
    assert repositories and all(repo["spec"]["url"] == URL and repo["spec"]["type"] == "default"
                                and repo["spec"]["certSecretRef"] == {"name": "chart-repository-ca"}
                                for repo in repositories.values())
    charts = {obj["spec"]["chart"]["spec"]["chart"]: obj["spec"]["chart"]["spec"]["version"] for obj in releases}
    # The lab inventory: Proxmox and Hetzner nodes, external Vault (no openbao chart).
    assert set(charts) == {"cert-manager", "sealed-secrets", "external-secrets", "proxmox-csi-plugin", "hcloud-csi",
                           "authentik", "grafana", "gitea", "harbor", "matrix-synapse"}
    assert charts["authentik"] == "2026.5.6"  # the stand-in carries the pinned release's version
    assert set(endpoint["charts"]) >= set(charts)

    # helm trusts the repository with the lab CA and finds each chart at exactly the pinned version.
    helm("repo", "add", "lab", URL, "--ca-file", str(lab_ca))
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    for chart, version in charts.items():
        found = json.loads(helm("search", "repo", f"lab/{chart}", "--version", version, "-o", "json").stdout)
        assert [entry["version"] for entry in found] == [version], (chart, found)
        helm("pull", f"lab/{chart}", "--version", version, "--destination", str(pulled))
        assert (pulled / f"{chart}-{version}.tgz").is_file()
    # The role's default for Proxmox CSI (0.5.3) is not in the lab: the inventory's pin is what makes it work.
    missing = helm("pull", "lab/proxmox-csi-plugin", "--version", "0.5.3", "--destination", str(pulled), ok=False)
    assert missing.returncode != 0 and "0.5.3" in missing.stderr

    # Each chart renders with the values the tree's HelmRelease passes, under its release name and namespace.
    rendered = {}
    for release in releases:
        spec = release["spec"]["chart"]["spec"]
        values = tmp_path / f"{spec['chart']}-values.yaml"
        values.write_text(yaml.safe_dump(release["spec"].get("values") or {}))
        out = helm("template", release["metadata"]["name"], str(pulled / f"{spec['chart']}-{spec['version']}.tgz"),
                   "--namespace", release["metadata"]["namespace"], "--include-crds", "-f", str(values))
        rendered[spec["chart"]] = objects(out.stdout)
        for obj in rendered[spec["chart"]]:
            # cert-manager's leader-election Roles live in kube-system by design (global.leaderElection.namespace).
            allowed = (None, release["metadata"]["namespace"]) + (
                ("kube-system",) if obj["kind"] in ("Role", "RoleBinding") else ())
            assert obj["metadata"].get("namespace") in allowed, (spec["chart"], obj["kind"], obj["metadata"])

    # Hetzner CSI (the lab's stand-in): the controller reads the token from the Secret the tree seals.
    hcloud = rendered["hcloud-csi"]
    controller = find(hcloud, "Deployment", "hcloud-csi-controller")
    assert controller["metadata"]["labels"]["turnkey.cluster/lab-stand-in"] == "true"
    assert secret_refs(controller["spec"]["template"]["spec"]) == {("hcloud", "token")}
    assert "token" in sealed[("kube-system", "hcloud")]
    assert controller["spec"]["template"]["spec"]["serviceAccountName"] == "hcloud-csi-controller"
    find(hcloud, "ServiceAccount", "hcloud-csi-controller")
    node = find(hcloud, "DaemonSet", "hcloud-csi-node")
    region = tree.settings()["proxmox_region"]
    terms = node["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "topology.kubernetes.io/region", "operator": "NotIn",
                                            "values": [region]}]}]
    volumes = find(hcloud, "StorageClass", "hcloud-volumes")
    assert volumes["reclaimPolicy"] == "Retain" and volumes["provisioner"] == "csi.hetzner.cloud"
    assert "storageclass.kubernetes.io/is-default-class" not in (volumes["metadata"].get("annotations") or {})

    # Authentik (the lab's stand-in): server and worker read exactly the contract's Secrets by secretKeyRef (which
    # app-secrets syncs), the chart's own Secret holds the settings but no secret, PostgreSQL reads its password Secret.
    authentik = rendered["authentik"]
    contract = {("authentik-bootstrap-token", "token"), ("authentik-bootstrap-password", "password"),
                ("authentik-secret-key", "secret_key"), ("authentik-postgres-password", "password")}
    for component in ("server", "worker"):
        deployment = find(authentik, "Deployment", f"authentik-{component}")
        assert deployment["metadata"]["labels"]["turnkey.cluster/lab-stand-in"] == "true"
        pod = deployment["spec"]["template"]["spec"]
        assert secret_refs(pod) == contract, component
        env = {entry["name"]: entry["valueFrom"]["secretKeyRef"] for entry in pod["containers"][0]["env"]}
        assert set(env) == {"AUTHENTIK_BOOTSTRAP_TOKEN", "AUTHENTIK_BOOTSTRAP_PASSWORD", "AUTHENTIK_SECRET_KEY",
                            "AUTHENTIK_POSTGRESQL__PASSWORD"}
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "authentik"}}]
        assert pod["containers"][0]["args"] == [component]
    settings = find(authentik, "Secret", "authentik")["data"]
    assert {key for key in settings if "PASSWORD" in key or "SECRET" in key or "TOKEN" in key} == set()
    assert base64.b64decode(settings["AUTHENTIK_POSTGRESQL__HOST"]).decode() == "authentik-postgresql"
    database = find(authentik, "StatefulSet", "authentik-postgresql")
    assert secret_refs(database["spec"]["template"]["spec"]) == {("authentik-postgres-password", "password")}
    find(authentik, "Service", "authentik-server")
    ingress = find(authentik, "Ingress", "authentik-server")
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["auth.lab.turnkey.test"]
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "cluster-ca"}

    # Grafana (the lab's stand-in, an SSO app's own release): the pod reads only its client secret, from the Secret
    # grafana-oidc that External Secrets syncs; grafana.ini names Authentik's endpoints and the admin group's role;
    # no local admin, so no admin Secret.
    grafana = rendered["grafana"]
    deployment = find(grafana, "Deployment", "grafana")
    assert deployment["metadata"]["labels"]["turnkey.cluster/lab-stand-in"] == "true"
    pod = deployment["spec"]["template"]["spec"]
    assert secret_refs(pod) == {("grafana-oidc", "client_secret")}
    env = {entry["name"]: entry for entry in pod["containers"][0]["env"]}
    assert env["GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET"]["valueFrom"] == {
        "secretKeyRef": {"name": "grafana-oidc", "key": "client_secret"}}
    assert env["GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION"]["value"] == "true"
    assert not [obj for obj in grafana if obj["kind"] == "Secret"]
    ini = find(grafana, "ConfigMap", "grafana")["data"]["grafana.ini"]
    section = ini.split("[auth.generic_oauth]")[1].split("\n[")[0]
    assert "client_id = grafana" in section and "client_secret" not in section, ini
    assert "auth_url = https://auth.lab.turnkey.test/application/o/authorize/" in section
    assert ("role_attribute_path = contains(groups, 'grafana-admins') && 'Admin' || "
            "contains(groups, 'grafana-editors') && 'Editor' || 'Viewer'") in section
    assert "root_url = https://grafana.lab.turnkey.test/" in ini and "disable_login_form = true" in ini
    ingress = find(grafana, "Ingress", "grafana")
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["grafana.lab.turnkey.test"]

    # Gitea (the lab's stand-in): only the init container that registers the OAuth source reads credentials, the
    # client id and secret from the chart's keys of Secret gitea-oauth (which the tree's ExternalSecret templates from
    # kv/sso/gitea); the source's flags name Authentik's discovery URL and the admin group; no admin, no admin Secret.
    gitea = rendered["gitea"]
    deployment = find(gitea, "Deployment", "gitea")
    assert deployment["metadata"]["labels"]["turnkey.cluster/lab-stand-in"] == "true"
    pod = deployment["spec"]["template"]["spec"]
    assert secret_refs(pod) - {("gitea-init", "*"), ("gitea-inline-config", "*")} == {
        ("gitea-oauth", "key"), ("gitea-oauth", "secret")}
    assert not [obj for obj in gitea if obj["kind"] == "Secret" and obj["metadata"]["name"] == "gitea-admin"]
    script = find(gitea, "Secret", "gitea-init")["stringData"]["configure_gitea.sh"]
    assert '--auto-discover-url "https://auth.lab.turnkey.test/application/o/gitea/.well-known/openid-configuration"' \
        in script and '--admin-group "gitea-admins"' in script and '--group-claim-name "groups"' in script
    assert '--secret "${GITEA_OAUTH_SECRET_0}"' in script
    server = find(gitea, "Secret", "gitea-inline-config")["stringData"]["server"]
    assert "ROOT_URL=https://git.lab.turnkey.test/" in server.splitlines()
    ingress = find(gitea, "Ingress", "gitea")
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["git.lab.turnkey.test"]

    # Harbor (the lab's stand-in): harbor-core reads the admin's initial password, its encryption key and its OIDC
    # settings only from the Secrets the tree's ExternalSecrets make from Vault; the chart's own Secret has none of
    # them, and the Ingress sends Harbor's paths (the OIDC callback /c/ among them) to harbor-core on the app's host.
    harbor = rendered["harbor"]
    deployment = find(harbor, "Deployment", "harbor-core")
    assert deployment["metadata"]["labels"]["turnkey.cluster/lab-stand-in"] == "true"
    pod = deployment["spec"]["template"]["spec"]
    assert secret_refs(pod) - {("harbor-core", "*"), ("harbor-core", "secret"),
                               ("harbor-jobservice", "JOBSERVICE_SECRET")} == {
        ("harbor-admin-password", "admin_password"), ("harbor-oidc-config", "CONFIG_OVERWRITE_JSON"),
        ("harbor-secret-key", "secretKey")}
    assert not {"HARBOR_ADMIN_PASSWORD", "secretKey"} & set(find(harbor, "Secret", "harbor-core")["stringData"])
    assert find(harbor, "ConfigMap", "harbor-core")["data"]["EXT_ENDPOINT"] == "https://registry.lab.turnkey.test"
    ingress = find(harbor, "Ingress", "harbor-ingress")
    assert ingress["spec"]["tls"] == [{"secretName": "harbor-tls", "hosts": ["registry.lab.turnkey.test"]}]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "registry.lab.turnkey.test"
    assert {path["path"]: path["backend"]["service"]["name"] for path in rule["http"]["paths"]} == {
        "/api/": "harbor-core", "/service/": "harbor-core", "/v2/": "harbor-core", "/c/": "harbor-core",
        "/": "harbor-portal"}

    # Synapse (the lab's stand-in): the pod reads the client secret as a file from synapse-oidc (which External
    # Secrets syncs) and its database's and Redis' passwords from the tree's Secrets; homeserver.yaml names Authentik's
    # issuer and the file, and the Ingress serves /_synapse (the SSO callback) on the app's host.
    synapse = rendered["matrix-synapse"]
    deployment = find(synapse, "Deployment", "synapse")
    assert deployment["metadata"]["labels"]["turnkey.cluster/lab-stand-in"] == "true"
    pod = deployment["spec"]["template"]["spec"]
    assert secret_refs(pod) - {("synapse", "*"), ("synapse-signingkey", "signing.key")} == {
        ("synapse-oidc", "client_secret"), ("synapse-postgres-password", "password"),
        ("synapse-redis-password", "redis-password")}
    homeserver = yaml.safe_load(find(synapse, "ConfigMap", "synapse")["data"]["homeserver.yaml"])
    assert homeserver["server_name"] == "matrix.lab.turnkey.test"
    [provider] = homeserver["oidc_providers"]
    assert provider["issuer"] == "https://auth.lab.turnkey.test/application/o/synapse/"
    assert provider["client_secret_path"] == "/synapse/oidc/client_secret" and "client_secret" not in provider
    mounts = {mount["name"]: mount["mountPath"] for mount in pod["containers"][0]["volumeMounts"]}
    assert mounts["oidc"] == "/synapse/oidc"
    config = find(synapse, "Secret", "synapse")["stringData"]["config.yaml"]
    assert 'password: "@@POSTGRES_PASSWORD@@"' in config and 'password: "@@REDIS_PASSWORD@@"' in config
    ingress = find(synapse, "Ingress", "synapse")
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "matrix.lab.turnkey.test"
    assert [path["path"] for path in rule["http"]["paths"]] == ["/_matrix", "/_synapse", "/.well-known/matrix"]

    # Proxmox CSI (the real chart 0.5.0): its pods read the config the tree seals, and no class of its own.
    proxmox = rendered["proxmox-csi-plugin"]
    reads = set()
    for obj in proxmox:
        if obj["kind"] in ("Deployment", "DaemonSet"):
            reads |= secret_refs(obj["spec"]["template"]["spec"])
    assert reads and {name for name, _key in reads} == {"proxmox-csi-plugin"}, reads
    assert "config.yaml" in sealed[("csi-proxmox", "proxmox-csi-plugin")]
    assert not [obj for obj in proxmox if obj["kind"] == "StorageClass"]

    # sealed-secrets: the controller the tree names, never renewing a key of its own, reading key Secrets.
    controller = find(rendered["sealed-secrets"], "Deployment", "sealed-secrets-controller")
    args = " ".join(controller["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "--key-renew-period 0" in args and "--watch-for-secrets" in args, args
    find(rendered["sealed-secrets"], "CustomResourceDefinition", "sealedsecrets.bitnami.com")

    # External Secrets 0.16.2: the CRDs its release generates (v1 served), the service account Vault trusts.
    eso = rendered["external-secrets"]
    crds = {obj["metadata"]["name"]: obj for obj in eso if obj["kind"] == "CustomResourceDefinition"}
    assert len(crds) == 20, sorted(crds)
    served = [version["name"] for version in crds["clustersecretstores.external-secrets.io"]["spec"]["versions"]
              if version["served"]]
    assert "v1" in served
    find(eso, "ServiceAccount", "external-secrets")
    assert find(eso, "Deployment", "external-secrets")["spec"]["template"]["spec"]["serviceAccountName"] == \
        "external-secrets"
    # The lab's overlay: no dependency on the bitwarden-sdk-server chart (oci://ghcr.io), which cannot be fetched.
    shown = yaml.safe_load(helm("show", "chart", str(pulled / "external-secrets-0.16.2.tgz")).stdout)
    assert shown["version"] == "0.16.2" and shown["appVersion"] == "v0.16.2" and "dependencies" not in shown

    # cert-manager: the release version (package --version/--app-version) reaches the images; CRDs from the chart.
    manager = rendered["cert-manager"]
    image = find(manager, "Deployment", "cert-manager")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(":v1.21.1"), image
    assert {"certificates.cert-manager.io", "clusterissuers.cert-manager.io"} <= {
        obj["metadata"]["name"] for obj in manager if obj["kind"] == "CustomResourceDefinition"}


@pytest.mark.parametrize(("chart", "values", "refused"), [
    # harbor-core fails on an encryption key that is not 16 characters
    ("harbor", {"secretKey": "short-key"}, "secretKey is 9 characters, not 16"),
    # matrix-synapse asks for the bundled PostgreSQL's password even beside existingSecret, for a server name, and
    # for an external Redis without the bundled one
    ("matrix-synapse", {"postgresql": {"auth": {"password": "", "existingSecret": "synapse-postgres-password"}}},
     "A valid postgresql.auth.password is required"),
    ("matrix-synapse", {"serverName": ""}, "You need to specify a serverName"),
    ("matrix-synapse", {"redis": {"enabled": False}}, "A valid externalRedis.host is required"),
    # gitea's init container fails making an admin without a password
    ("gitea", {"gitea": {"admin": {"username": "gitea_admin"}}}, "no password is given"),
])
def test_the_stand_ins_refuse_what_the_real_charts_fail_on(chart, values, refused, tmp_path):
    """A stand-in renders with its own defaults (and a server name for Synapse, no admin for Gitea, as the tree gives
    them), and fails to render the values on which the real chart fails to render, or its app to start."""
    helm = helm_runner(tmp_path)
    base = {"matrix-synapse": {"serverName": "matrix.example.com"},
            "gitea": {"gitea": {"admin": {"username": ""}}}}.get(chart, {})
    for name, given in (("base", base), ("refused", {**base, **values})):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(given))
    assert objects(helm("template", "app", str(STAND_INS / chart), "-f", str(tmp_path / "base.yaml")).stdout)
    failed = helm("template", "app", str(STAND_INS / chart), "-f", str(tmp_path / "refused.yaml"), ok=False)
    assert failed.returncode != 0 and refused in failed.stderr, failed.stderr


def test_the_repository_is_https_with_the_lab_ca_and_read_only(running, tmp_path):
    lab = running("charts")
    helm = helm_runner(tmp_path)

    # Plain HTTP gets no chart repository; a client without the lab CA does not trust it.
    plain = helm("repo", "add", "plain", URL.replace("https://", "http://"), ok=False)
    assert plain.returncode != 0 and "is not a valid chart repository or cannot be reached" in plain.stderr
    untrusted = helm("repo", "add", "untrusted", URL, ok=False)
    assert untrusted.returncode != 0 and "certificate signed by unknown authority" in untrusted.stderr

    # Static files only: GET of index.yaml and the packages; no listing, no writes.
    context = ssl.create_default_context(cafile=str(lab.root / "pki" / "ca.pem"))
    with urllib.request.urlopen(f"{URL}/index.yaml", context=context, timeout=10) as answer:
        index = yaml.safe_load(answer.read())
    tgz = index["entries"]["sealed-secrets"][0]["urls"][0]
    assert re.fullmatch(r"sealed-secrets-[0-9.]+\.tgz", tgz)  # relative: the folder serves from any address
    with urllib.request.urlopen(f"{URL}/{tgz}", context=context, timeout=10) as answer:
        assert answer.read(2) == b"\x1f\x8b"
    for method, path, code in (("GET", "/", 404), ("PUT", "/index.yaml", 405), ("DELETE", f"/{tgz}", 405),
                               ("POST", "/api/charts", 405), ("GET", "/../pki/ca-key.pem", 404)):
        request = urllib.request.Request(f"{URL}{path}", data=b"x" if method in ("PUT", "POST") else None,
                                         method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, context=context, timeout=10)
        assert refused.value.code == code, (method, path)
    with urllib.request.urlopen(f"{URL}/index.yaml", context=context, timeout=10) as answer:
        assert yaml.safe_load(answer.read())["entries"].keys() == index["entries"].keys()
    assert lab.status()["components"]["charts"]["healthy"]


def test_flux_source_controller_fetches_every_chart_of_the_lab_tree(charts_lab, running, control_plane):  # noqa: F811
    """The real source-controller (a lab component) against a real kube-apiserver: the tree's CA Secret and
    HelmRepositories, and for each HelmRelease the HelmChart helm-controller would make from it
    (`<namespace>-<name>` in the source's namespace): each repository Ready, each chart's artifact at exactly the
    pinned version. A HelmRepository without the CA is not Ready, naming the certificate."""
    lab, tree = charts_lab
    kubeconfig, _found = control_plane
    tools = built_tools("TURNKEY_KUBECTL", "TURNKEY_FLUX_MANIFESTS", "TURNKEY_SOURCE_CONTROLLER")
    cluster = Cluster(kubeconfig, tools["TURNKEY_KUBECTL"])
    if not (lab.root / "components" / "talos" / "state" / "_cluster").exists():
        twin_cluster(lab.root, kubeconfig)
    running("charts,source-controller")
    cluster.run("apply", "--server-side", "-f", str(Path(tools["TURNKEY_FLUX_MANIFESTS"]) / "install.yaml"))
    wait_for(lambda: lab.status()["components"]["source-controller"]["detail"] == "source-controller ready",
             timeout=300, interval=1)

    repositories, releases, _sealed = tree_objects(tree)
    cluster.apply(tree.substituted(tree.files()["chart-repository-ca.yaml"]))
    for repository in repositories.values():
        cluster.apply(repository)
    untrusted = {**repositories["jetstack"], "metadata": {"name": "no-ca", "namespace": "flux-system"}}
    untrusted["spec"] = {key: value for key, value in untrusted["spec"].items() if key != "certSecretRef"}
    cluster.apply(untrusted)
    wanted = {}
    for release in releases:
        spec = release["spec"]["chart"]["spec"]
        name = "%s-%s" % (release["metadata"]["namespace"], release["metadata"]["name"])
        wanted[name] = spec["version"]
        cluster.apply({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmChart",
                       "metadata": {"name": name, "namespace": "flux-system"},
                       "spec": {"chart": spec["chart"], "version": spec["version"], "interval": "10m",
                                "sourceRef": {"kind": "HelmRepository", "name": spec["sourceRef"]["name"]}}})

    def settled(kind, name):
        def check():
            ready = condition(cluster.get(kind, name, "-n", "flux-system"))
            return ready if ready.get("status") in ("True", "False") else None
        return check

    for name in repositories:
        ready = wait_for(settled("helmrepository", name), timeout=180, interval=1)
        assert ready["status"] == "True", (name, ready)
    for name, version in wanted.items():
        ready = wait_for(settled("helmchart", name), timeout=180, interval=1)
        assert ready["status"] == "True", (name, ready)
        artifact = cluster.get("helmchart", name, "-n", "flux-system")["status"]["artifact"]
        assert artifact["revision"] == version, (name, artifact)
    refused = wait_for(settled("helmrepository", "no-ca"), timeout=180, interval=1)
    assert refused["status"] == "False" and "certificate signed by unknown authority" in refused["message"], refused
