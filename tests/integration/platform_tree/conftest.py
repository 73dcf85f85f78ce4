"""Renders the platform tree (role platform_tree) from copies of the shipped inventories, with a real layer 00
store (sealed-secrets keypair, Proxmox CSI token) made by the collection's own module, for the tree tests."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from tests.playbook_runner import TEST_VAULT_PASSWORD, copy_inventory, lab_env, recap, run_playbook
from tests.schemas import official_schema
from tests.store_access import open_store

CSI_SECRET = "csi-token-secret-7f3a9c"  # recognisable, so a test can prove it never reaches a file in clear
HCLOUD_TOKEN = "hcloud-token-value-5e1d2b"
VARIABLE = re.compile(r"\$\{([^}]*)\}")


def test_ca(folder: Path) -> Path:
    """A CA certificate file (public material only) for the spec's ca_path settings."""
    import datetime  # noqa: PLC0415

    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "platform tree test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    path = folder / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


class Tree:
    """One inventory copy, its store and a destination; render() runs the role the way layer 02 includes it."""

    def __init__(self, tmp_path: Path, base: str, overlay: dict):
        self.tmp = tmp_path
        self.ca = test_ca(tmp_path)
        overlay = yaml.safe_load(yaml.safe_dump(overlay).replace("@CA@", str(self.ca)))
        self.inventory = copy_inventory(tmp_path, base, overlay)
        # Every inventory's store is the test's own, with the test's password (the example points at ~/.config).
        spec_file = self.inventory / "group_vars" / "all" / "cluster.yml"
        self.env = lab_env(tmp_path)
        spec = yaml.safe_load(spec_file.read_text())
        spec["secrets_store"] = {"path": "{{ inventory_dir }}/secrets",
                                 "vault_password_file": str(Path(self.env["TURNKEY_LAB_DIR"]) / "vault-password")}
        spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
        self.dest = tmp_path / "gitops" / "k8s"
        store_args = {"store_path": "{{ secrets_store.path }}",
                      "vault_password_file": "{{ secrets_store.vault_password_file }}"}
        layer00 = [
            {"name": "The sealed-secrets keypair", "turnkey.cluster.persistent_secret": {
                "name": "sealed_secrets", "type": "sealed_secrets_keypair", **store_args}},
            {"name": "The Proxmox CSI token", "no_log": True, "turnkey.cluster.persistent_secret": {
                "name": "proxmox_csi_token", "type": "provided", **store_args,
                "value": {"token_id": "kubernetes-csi@pve!csi", "secret": CSI_SECRET}}}]
        self.layer00 = tmp_path / "layer00.yml"
        self.layer00.write_text(yaml.safe_dump([{"name": "layer 00", "hosts": "localhost", "gather_facts": False,
                                                 "tasks": layer00}]))
        self.playbook = tmp_path / "render.yml"
        self.playbook.write_text(yaml.safe_dump([{
            "name": "platform tree", "hosts": "localhost", "gather_facts": False,
            "tasks": [{"name": "Render", "ansible.builtin.include_role": {"name": "turnkey.cluster.platform_tree"},
                       "vars": {"platform_tree_dest": str(self.dest)}},
                      # The role's fact, for the tests (not counted as a change).
                      {"name": "Record the Kustomizations in order", "check_mode": False, "changed_when": False,
                       "ansible.builtin.copy": {"content": "{{ platform_tree_kustomizations | to_json }}",
                                                "dest": str(tmp_path / "kustomizations.json"), "mode": "0600"}}]}]))

    def make_store(self):
        made = run_playbook("-i", str(self.inventory), playbook=str(self.layer00), env=self.env)
        assert made.returncode == 0, made.stdout[-3000:]

    def render(self, *args):
        return run_playbook("-i", str(self.inventory), *args, playbook=str(self.playbook), env=self.env)

    def rendered(self):
        run = self.render()
        assert run.returncode == 0, run.stdout[-5000:]
        return run

    def spec(self):
        return yaml.safe_load((self.inventory / "group_vars" / "all" / "cluster.yml").read_text())

    def set_spec(self, spec):
        (self.inventory / "group_vars" / "all" / "cluster.yml").write_text(yaml.safe_dump(spec, sort_keys=False))

    def store(self):
        return open_store(self.inventory / "secrets", TEST_VAULT_PASSWORD)

    def files(self):
        return {str(path.relative_to(self.dest)): path.read_text() for path in sorted(self.dest.rglob("*"))
                if path.is_file()}

    def settings(self):
        return yaml.safe_load((self.dest / "cluster-settings.yaml").read_text())["data"]

    def substituted(self, text):
        """The text as Flux's postBuild substitution leaves it (strict: every variable must be set)."""
        settings = self.settings()
        text = re.sub(r"^\s*#.*\n", "", text, flags=re.M)  # kustomize build drops comments before Flux substitutes
        missing = sorted({name for name in VARIABLE.findall(text) if name not in settings})
        assert not missing, "variables without a value in cluster-settings: %s" % missing
        return VARIABLE.sub(lambda match: settings[match.group(1)], text)


# The renders every tree test looks at: the lab (external Vault, the lab's chart mirror with its CA, Hetzner
# and Proxmox nodes) and the example homelab (Vault in the cluster, a public domain: ACME on, upstream charts).
# Both inventories name two SSO apps (grafana, vault).
RENDERS = {
    "lab": ("lab", {"set": {
        "vault": {"deploy": "external", "address": "https://127.10.0.2:8200", "ca_path": "@CA@"},
        "charts": {"repository_url": "https://127.10.0.13:8443", "ca_path": "@CA@"},
        # The lab reaches its Authentik twin by address: the Ingress host falls back to auth.<cluster_domain>.
        "authentik": {"url": "https://127.10.0.20:9443"},
        "hetzner": {"token": HCLOUD_TOKEN}}}),
    "example": ("example", {"set": {
        "cluster_domain": "homelab.turnkey.dev",
        "gitops": {"path": "clusters/homelab"},
        "vault": {"deploy": "in_cluster"},
        "authentik": {"url": "https://sso.homelab.turnkey.dev"},
        "hetzner": {"token": HCLOUD_TOKEN}}}),
}


@pytest.fixture(scope="module", params=sorted(RENDERS))
def tree(request, tmp_path_factory):
    base, overlay = RENDERS[request.param]
    made = Tree(tmp_path_factory.mktemp("tree-" + request.param), base, overlay)
    made.name = request.param
    made.make_store()
    made.first_run = made.rendered()
    return made


def crd_index():
    """(group, version, kind) -> openAPIV3Schema of every official CRD the tree's objects use."""
    files = [official_schema("flux/v2.9.0-crds/" + name) for name in (
        "kustomize.toolkit.fluxcd.io_kustomizations.yaml", "helm.toolkit.fluxcd.io_helmreleases.yaml",
        "source.toolkit.fluxcd.io_helmrepositories.yaml")]
    files += [official_schema("cert-manager/v1.21.1-crds/" + name) for name in (
        "cert-manager.io_certificates.yaml", "cert-manager.io_clusterissuers.yaml")]
    files += [official_schema("secrets-crds/external-secrets-v2.9.0/external-secrets.io_%s.yaml" % name)
              for name in ("clustersecretstores", "externalsecrets")]
    files.append(official_schema("secrets-crds/sealed-secrets-v0.36.6/bitnami.com_sealedsecrets.yaml"))
    files += cilium_crds()
    index = {}
    for path in files:
        crd = yaml.safe_load(Path(path).read_text())
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                index[(crd["spec"]["group"], version["name"], crd["spec"]["names"]["kind"])] = \
                    version["schema"]["openAPIV3Schema"]
    return index


def cilium_crds():
    """Cilium's CRDs for LB IPAM and L2 announcements, from the Go module github.com/cilium/cilium at the pinned
    version (the module tools/build copies the chart out of; Cilium ships its CRDs there, not in the chart)."""
    version = re.search(r"^CILIUM_VERSION=(\S+)$", (Path(__file__).resolve().parents[3] / "tools" / "versions.env")
                        .read_text(), re.M).group(1)
    caches = [Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "turnkey-cluster" / "go" / "mod",
              Path(os.environ.get("GOMODCACHE") or Path.home() / "go" / "pkg" / "mod")]
    relative = Path("github.com/cilium/cilium@%s/pkg/k8s/apis/cilium.io/client/crds" % version)
    for cache in caches:
        folder = cache / relative
        if folder.is_dir():
            return [folder / "v2" / "ciliumloadbalancerippools.yaml",
                    folder / "v2alpha1" / "ciliuml2announcementpolicies.yaml"]
    reason = "Cilium's CRDs (%s) are in no Go module cache (%s); run `make tools`" % (
        relative, ", ".join(map(str, caches)))
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


__all__ = ["CSI_SECRET", "HCLOUD_TOKEN", "RENDERS", "Tree", "crd_index", "recap", "tree"]
