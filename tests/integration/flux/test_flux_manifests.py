"""The Flux install manifests tools/build renders (flux-manifests): what `flux install` v2.9.5 applies, at the
controllers' pinned versions, with CRDs whose schemas are the official ones (../shared/schemas/flux)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.schemas import official_schema
from tests.tools import built_tools

REPO = Path(__file__).resolve().parents[3]
CONTROLLERS = ("source-controller", "kustomize-controller", "helm-controller", "notification-controller")
SCHEMA_FILES = (
    "source.toolkit.fluxcd.io_gitrepositories.yaml", "source.toolkit.fluxcd.io_helmrepositories.yaml",
    "source.toolkit.fluxcd.io_helmcharts.yaml", "source.toolkit.fluxcd.io_buckets.yaml",
    "source.toolkit.fluxcd.io_ocirepositories.yaml", "source.toolkit.fluxcd.io_externalartifacts.yaml",
    "kustomize.toolkit.fluxcd.io_kustomizations.yaml", "helm.toolkit.fluxcd.io_helmreleases.yaml",
    "notification.toolkit.fluxcd.io_alerts.yaml", "notification.toolkit.fluxcd.io_providers.yaml",
    "notification.toolkit.fluxcd.io_receivers.yaml",
)


def pins():
    versions = {}
    for line in (REPO / "tools" / "versions.env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            versions[key.strip()] = value.strip()
    return versions


def documents(path):
    return [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc]


def structure(schema):
    """An OpenAPI schema without its prose (description fields)."""
    if isinstance(schema, dict):
        return {key: structure(value) for key, value in schema.items()
                if not (key == "description" and isinstance(value, str))}
    if isinstance(schema, list):
        return [structure(item) for item in schema]
    return schema


def manifests():
    return Path(built_tools("TURNKEY_FLUX_MANIFESTS")["TURNKEY_FLUX_MANIFESTS"])


def test_install_yaml_deploys_the_pinned_controllers_in_flux_system():
    versions = pins()
    docs = documents(manifests() / "install.yaml")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert sorted(deployments) == sorted(CONTROLLERS)
    for name, deployment in deployments.items():
        key = "FLUX_%s_VERSION" % name.upper().replace("-", "_")
        assert deployment["metadata"]["namespace"] == "flux-system"
        assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == versions["FLUX_VERSION"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "ghcr.io/fluxcd/%s:%s" % (name, versions[key])
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name
        if name != "notification-controller":  # as `flux install` patches them
            assert "--events-addr=http://notification-controller.flux-system.svc.cluster.local./" in container["args"]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Namespace", "flux-system") in kinds
    assert ("ClusterRoleBinding", "cluster-reconciler-flux-system") in kinds
    assert ("ClusterRole", "crd-controller-flux-system") in kinds
    assert ("NetworkPolicy", "allow-egress") in kinds
    assert ("Service", "source-controller") in kinds and ("Service", "notification-controller") in kinds


def test_crds_have_the_official_schemas():
    crds = {d["metadata"]["name"]: d for d in documents(manifests() / "install.yaml")
            if d["kind"] == "CustomResourceDefinition"}
    assert len(crds) == len(SCHEMA_FILES)
    for file_name in SCHEMA_FILES:
        official = documents(official_schema("flux/v2.9.0-crds/" + file_name))[0]
        ours = crds[official["metadata"]["name"]]
        assert ours["spec"]["names"] == official["spec"]["names"]
        assert ours["spec"]["scope"] == official["spec"]["scope"]
        served = {v["name"]: v for v in ours["spec"]["versions"]}
        for version in official["spec"]["versions"]:
            assert served[version["name"]]["served"] == version["served"], (file_name, version["name"])
            assert served[version["name"]]["storage"] == version["storage"], (file_name, version["name"])
            # v2.9.0's controllers are older patches: the structure is the same, one description's wording is not
            # (source-controller v1.9.5 calls HelmChart's status.url "HelmChartStatus", v1.9.1 "BucketStatus")
            assert structure(served[version["name"]]["schema"]) == structure(version["schema"]), (
                file_name, version["name"])


def test_flux_cli_installs_from_the_folder():
    """`flux install --manifests DIR` (the built CLI has no embedded manifests) renders the same objects."""
    tools = built_tools("TURNKEY_FLUX", "TURNKEY_FLUX_MANIFESTS")
    done = subprocess.run([tools["TURNKEY_FLUX"], "install", "--export", "--manifests",
                           str(Path(tools["TURNKEY_FLUX_MANIFESTS"]) / "install")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr

    def by_name(docs):
        return {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
    rendered = by_name(doc for doc in yaml.safe_load_all(done.stdout) if doc)
    assert rendered == by_name(documents(manifests() / "install.yaml"))
