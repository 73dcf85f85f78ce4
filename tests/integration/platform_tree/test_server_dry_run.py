"""The rendered platform tree against the real kube-apiserver (the pinned etcd and kube-apiserver of tools/build, the
control plane of tests/integration/cluster) with the official CRDs installed: every object of every component, after
Flux's substitution, passes a server-side dry-run apply, which runs the API server's own validation (structural
schemas, CEL rules, defaulting) the way the kustomize-controller's apply will."""

from __future__ import annotations

import subprocess

import yaml

from tests.integration.cluster.conftest import control_plane  # noqa: F401 # pylint: disable=unused-import
from tests.integration.platform_tree.conftest import cilium_crds
from tests.schemas import official_schema

CRDS = [
    "flux/v2.9.0-crds/kustomize.toolkit.fluxcd.io_kustomizations.yaml",
    "flux/v2.9.0-crds/helm.toolkit.fluxcd.io_helmreleases.yaml",
    "flux/v2.9.0-crds/source.toolkit.fluxcd.io_helmrepositories.yaml",
    "flux/v2.9.0-crds/source.toolkit.fluxcd.io_gitrepositories.yaml",
    "cert-manager/v1.21.1-crds/cert-manager.io_certificates.yaml",
    "cert-manager/v1.21.1-crds/cert-manager.io_clusterissuers.yaml",
    "secrets-crds/external-secrets-v2.9.0/external-secrets.io_clustersecretstores.yaml",
    "secrets-crds/external-secrets-v2.9.0/external-secrets.io_externalsecrets.yaml",
    "secrets-crds/sealed-secrets-v0.36.6/bitnami.com_sealedsecrets.yaml",
]


def run(found, kubeconfig, *args, stdin=None):
    done = subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), *args], input=stdin,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, "kubectl %s: %s" % (" ".join(args), done.stderr)
    # The API server's Pod Security admission warns about a workload whose pods its namespace's level (enforce,
    # or the stricter audit/warn level) would refuse; the tree's own workloads (PowerDNS) meet them all.
    assert "would violate PodSecurity" not in done.stderr, done.stderr
    return done.stdout


def test_every_object_passes_a_server_side_dry_run(tree, control_plane):  # noqa: F811
    kubeconfig, found = control_plane
    files = [str(official_schema(path)) for path in CRDS] + [str(path) for path in cilium_crds()]
    for path in files:
        run(found, kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", path)
    run(found, kubeconfig, "wait", "--for=condition=Established", "--timeout=120s", "crd", "--all")
    # Namespaces for real (a dry-run object needs its namespace), then every folder as a dry-run.
    run(found, kubeconfig, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}}))
    namespaces = run(found, kubeconfig, "kustomize", str(tree.dest / "platform" / "namespaces"))
    run(found, kubeconfig, "apply", "--server-side", "--field-manager", "platform-tree-test", "-f", "-",
        stdin=tree.substituted(namespaces))
    # The SSO apps' namespaces too: apps/sso-apps makes them beside the ExternalSecrets that go into them.
    sso_apps = yaml.safe_load_all(run(found, kubeconfig, "kustomize", str(tree.dest / "apps" / "sso-apps")))
    run(found, kubeconfig, "apply", "--server-side", "--field-manager", "platform-tree-test", "-f", "-",
        stdin=yaml.safe_dump_all([doc for doc in sso_apps if doc and doc["kind"] == "Namespace"]))
    folders = sorted({path.parent for path in tree.dest.rglob("kustomization.yaml")})
    applied = 0
    for folder in folders:
        built = run(found, kubeconfig, "kustomize", str(folder))
        if not built.strip():
            continue
        # Flux substitutes in the component folders; the root (settings, Kustomizations) is applied as it is.
        component = folder.relative_to(tree.dest).parts[:1] in (("platform",), ("apps",))
        text = tree.substituted(built) if component else built
        out = run(found, kubeconfig, "apply", "--server-side", "--dry-run=server", "--field-manager",
                  "platform-tree-test", "-f", "-", stdin=text)
        applied += out.count("(server dry run)")
    assert applied >= 40, applied
