"""The lab's Helm chart repository (component `charts`, <net>.0.13:8443): the real helm, trusting the lab CA,
adds it, finds and pulls every chart the lab inventory's platform tree (rendered by role platform_tree) names at
the version the tree pins, and renders each with the values the tree's HelmRelease passes; the rendered charts
are wired to what the tree provides (the Secrets its SealedSecrets make, the service account Vault trusts).
Plain HTTP and a client without the lab CA are refused, and the repository is read-only."""

from __future__ import annotations

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

from tests.integration.platform_tree.conftest import HCLOUD_TOKEN, Tree
from tests.tools import built_tools

NET = "127.105"
URL = f"https://{NET}.0.13:8443"


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


@pytest.fixture(scope="module")
def lab_tree(tmp_path_factory):
    """The lab inventory's tree, rendered with the chart repository at this test's lab address and CA."""
    tmp = tmp_path_factory.mktemp("charts-tree")
    ca = tmp / "lab-ca.pem"  # replaced by the lab's own CA before helm runs; the role only reads the path
    tree = Tree(tmp, "lab", {"set": {
        "vault": {"deploy": "external", "address": f"https://{NET}.0.2:8200", "ca_path": "@CA@"},
        "charts": {"repository_url": URL, "ca_path": str(ca)},
        "hetzner": {"token": HCLOUD_TOKEN}}})
    ca.write_text(tree.ca.read_text())
    tree.make_store()
    tree.rendered()
    return tree


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


def test_the_lab_serves_every_chart_of_the_lab_tree(make_lab, lab_tree, tmp_path):
    lab = make_lab(NET)
    lab.run("up", "--components", "charts", "--profile", "fast")
    endpoint = lab.json("endpoints.json")["components"]["charts"]
    assert endpoint["url"] == URL
    lab_ca = lab.root / "pki" / "ca.pem"
    helm = helm_runner(tmp_path)

    # The tree's HelmRepositories all point at the lab (the mirror setting), as plain Helm repositories.
    files = {path: text for path, text in lab_tree.files().items() if path.endswith(".yaml")}
    repositories = {}
    releases = []
    for path, text in files.items():
        for obj in objects(lab_tree.substituted(text)):
            if obj["kind"] == "HelmRepository":
                repositories[obj["metadata"]["name"]] = obj["spec"]
            elif obj["kind"] == "HelmRelease":
                releases.append((path, obj))
    assert repositories and all(spec["url"] == URL and spec["type"] == "default" for spec in repositories.values())
    charts = {obj["spec"]["chart"]["spec"]["chart"]: obj["spec"]["chart"]["spec"]["version"] for _path, obj in releases}
    # The lab inventory: Proxmox and Hetzner nodes, external Vault (no openbao chart).
    assert set(charts) == {"cert-manager", "sealed-secrets", "external-secrets", "proxmox-csi-plugin", "hcloud-csi"}
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
    for _path, release in releases:
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

    sealed = {(obj["spec"]["template"]["metadata"]["namespace"], obj["spec"]["template"]["metadata"]["name"]):
              set(obj["spec"]["encryptedData"]) for text in files.values() for obj in objects(text)
              if obj["kind"] == "SealedSecret"}

    # Hetzner CSI (the lab's stand-in): the controller reads the token from the Secret the tree seals.
    hcloud = rendered["hcloud-csi"]
    controller = find(hcloud, "Deployment", "hcloud-csi-controller")
    assert controller["metadata"]["labels"]["turnkey.cluster/lab-stand-in"] == "true"
    assert secret_refs(controller["spec"]["template"]["spec"]) == {("hcloud", "token")}
    assert "token" in sealed[("kube-system", "hcloud")]
    assert controller["spec"]["template"]["spec"]["serviceAccountName"] == "hcloud-csi-controller"
    find(hcloud, "ServiceAccount", "hcloud-csi-controller")
    node = find(hcloud, "DaemonSet", "hcloud-csi-node")
    region = lab_tree.settings()["proxmox_region"]
    terms = node["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "topology.kubernetes.io/region", "operator": "NotIn",
                                            "values": [region]}]}]
    volumes = find(hcloud, "StorageClass", "hcloud-volumes")
    assert volumes["reclaimPolicy"] == "Retain" and volumes["provisioner"] == "csi.hetzner.cloud"
    assert "storageclass.kubernetes.io/is-default-class" not in (volumes["metadata"].get("annotations") or {})

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


def test_the_repository_is_https_with_the_lab_ca_and_read_only(make_lab, tmp_path):
    lab = make_lab(NET)
    lab.run("up", "--components", "charts", "--profile", "fast")
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
