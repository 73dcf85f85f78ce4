#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the collection's k8s/ tree for one cluster (role platform_tree)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: platform_tree_render
short_description: Render the platform tree (k8s/) of the collection for one cluster
description:
  - Copies the collection's C(k8s/) tree into O(dest) with the cluster's settings, the way Flux will read it from the
    GitOps repository at O(gitops_path).
  - Writes the generated C(cluster-settings) ConfigMap (Flux C(postBuild.substituteFrom)), one
    C(CiliumLoadBalancerIPPool) file per load-balancer pool, the SealedSecrets of O(sealed_secrets) (sealed with the
    layer 00 certificate), and O(extra_files).
  - Switches the optional components of O(components) on or off; a component that is off loses its Flux
    Kustomization, its folder, its namespace and every C(dependsOn) edge to it.
  - Writes only files whose content changes, and removes files of the tree that the render no longer has. It owns
    C(kustomization.yaml), C(cluster-settings.yaml), C(chart-repository-ca.yaml), C(README.md), C(flux/),
    C(platform/) and C(apps/) in O(dest); nothing else there is touched.
  - A SealedSecret is sealed again only when its current file does not decrypt (with O(sealing_private_key)) to the
    wanted values, so a rerun leaves it byte-identical.
version_added: 0.1.0
author: turnkey.cluster maintainers (!UNKNOWN)
options:
  src:
    description: The collection's k8s/ folder.
    type: path
    required: true
  dest:
    description: Where the rendered tree goes (the folder at O(gitops_path) of the GitOps working tree).
    type: path
    required: true
  gitops_path:
    description: The tree's path inside the GitOps repository; every Flux Kustomization's C(spec.path) starts with it.
    type: str
    required: true
  components:
    description:
      - Optional components by name (C(proxmox-csi), C(hetzner-csi), C(vault), C(cert-manager-acme)), on or off.
    type: dict
    required: true
  settings:
    description: The data of the C(cluster-settings) ConfigMap (non-secret strings only).
    type: dict
    required: true
  lb_pools:
    description: C(cluster_network.lb_pools) of the spec.
    type: list
    elements: dict
    default: []
  l2_announcements:
    description: Whether the tree holds the C(CiliumL2AnnouncementPolicy) for the pools.
    type: bool
    default: true
  sealed_secrets_key_secret:
    description:
      - Name of the Secret in kube-system holding the newest layer 00 sealed-secrets key (the gate's health check).
    type: str
    required: true
  sealed_secrets:
    description: SealedSecrets to write.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: File path relative to O(dest).
        type: str
        required: true
      name:
        description: Secret name.
        type: str
        required: true
      namespace:
        description: Secret namespace.
        type: str
        required: true
      data:
        description: Secret data, key to clear text.
        type: dict
        required: true
  sealing_certificate:
    description: The layer 00 sealed-secrets certificate (PEM); required with O(sealed_secrets).
    type: str
  sealing_private_key:
    description:
      - The matching private key (PEM), used only to find out whether an existing SealedSecret already holds the
        values.
    type: str
  extra_files:
    description: Further generated files; each is added to the C(resources) of the C(kustomization.yaml) beside it.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: File path relative to O(dest).
        type: str
        required: true
      content:
        description: File content.
        type: str
        required: true
  chart_ca_secret:
    description: When set, every HelmRepository verifies its server with the CA in this Secret (C(certSecretRef)).
    type: str
    default: ""
  preserve:
    description:
      - Folders of O(dest) the operator or the bootstrap owns; the root C(kustomization.yaml) includes those that
        hold one.
    type: list
    elements: str
    default: [flux-system, custom]
attributes:
  check_mode:
    support: full
    description: Computes the same files and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: One diff per changed or removed file (SealedSecrets show ciphertext only).
notes:
  - Clear text of O(sealed_secrets) never appears in the result or the diff; only ciphertext is written.
"""

EXAMPLES = r"""
- name: Render the platform tree
  turnkey.cluster.platform_tree_render:
    src: "{{ platform_tree_src }}"
    dest: /srv/gitops/k8s
    gitops_path: k8s
    components: {proxmox-csi: true, hetzner-csi: false, vault: false, cert-manager-acme: false}
    settings: {cluster_name: lab, cluster_domain: lab.turnkey.test}
    lb_pools: [{name: services, addresses: 10.2.3.4-10.2.3.20, auto_assign: true}]
    sealed_secrets_key_secret: sealed-secrets-key-turnkey-0123456789abcdef
"""

RETURN = r"""
changed_files:
  description: Files written (relative to dest).
  returned: always
  type: list
  elements: str
removed_files:
  description: Files removed (relative to dest).
  returned: always
  type: list
  elements: str
resealed:
  description: SealedSecret files sealed again (their values changed or they were sealed with another key).
  returned: always
  type: list
  elements: str
kustomizations:
  description:
    - The rendered tree's Flux Kustomizations in dependency order (each after everything it depends on), with their
      timeouts in seconds and what they depend on; what a wait for them by name, in order, needs.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: namespaces, timeout: 120, depends_on: []}
    - {name: cert-manager, timeout: 600, depends_on: [namespaces]}
"""

import base64
import json
import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule

try:
    import yaml
except ImportError:  # pragma: no cover - ansible-core needs PyYAML
    yaml = None

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover
    HAS_CRYPTOGRAPHY = False

OWNED_TOP = ("kustomization.yaml", "cluster-settings.yaml", "chart-repository-ca.yaml", "README.md", "flux", "platform",
             "apps")
OPTIONAL = ("proxmox-csi", "hetzner-csi", "vault", "cert-manager-acme")
POOL_LABEL = "lb.turnkey.cluster/pool"
GENERATED = "# GENERATED by role turnkey.cluster.platform_tree from the inventory; edit the inventory, not this file.\n"


# --- sealing (the format of github.com/bitnami/sealed-secrets pkg/crypto: HybridEncrypt, strict scope) ---

class IndentedDumper(yaml.SafeDumper if yaml else object):
    """Block lists indented under their key, as the rest of the tree is written (yamllint's indentation)."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def dump(document):
    return yaml.dump(document, Dumper=IndentedDumper, sort_keys=False, width=1 << 20)


def _oaep(label):
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label)


def seal(certificate_pem, namespace, name, plaintext):
    """Base64 of len(rsa)(2 bytes) || RSA-OAEP-SHA256(session key, label namespace/name) || AES-256-GCM(zero nonce)."""
    public_key = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
    label = ("%s/%s" % (namespace, name)).encode()
    session_key = os.urandom(32)
    wrapped = public_key.encrypt(session_key, _oaep(label))
    body = AESGCM(session_key).encrypt(b"\0" * 12, plaintext, None)
    return base64.b64encode(len(wrapped).to_bytes(2, "big") + wrapped + body).decode()


def unseal(private_key, namespace, name, sealed):
    """The clear text of one sealed value, or None when this key cannot open it."""
    try:
        raw = base64.b64decode(sealed, validate=True)
        size = int.from_bytes(raw[:2], "big")
        label = ("%s/%s" % (namespace, name)).encode()
        session_key = private_key.decrypt(raw[2:2 + size], _oaep(label))
        return AESGCM(session_key).decrypt(b"\0" * 12, raw[2 + size:], None)
    # Any failure (another key, another name, a damaged value) means: seal again.
    except Exception:  # pylint: disable=broad-exception-caught
        return None


def sealed_secret_text(spec, certificate, private_key, current_text):
    """The SealedSecret file for spec, reusing the current ciphertexts when they already hold the values."""
    name, namespace = spec["name"], spec["namespace"]
    wanted = {key: str(value).encode() for key, value in sorted(spec["data"].items())}
    reuse = None
    if current_text and private_key is not None:
        try:
            current = yaml.safe_load(current_text) or {}
        except yaml.YAMLError:
            current = {}
        encrypted = (current.get("spec") or {}).get("encryptedData") or {}
        if (current.get("metadata") or {}).get("name") == name and sorted(encrypted) == sorted(wanted) and all(
                unseal(private_key, namespace, name, encrypted[key]) == wanted[key] for key in wanted):
            reuse = encrypted
    encrypted = reuse or {key: seal(certificate, namespace, name, value) for key, value in wanted.items()}
    document = {
        "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"encryptedData": {key: encrypted[key] for key in wanted},
                 "template": {"metadata": {"name": name, "namespace": namespace,
                                           "labels": {"app.kubernetes.io/managed-by": "turnkey.cluster"}},
                              "type": "Opaque"}}}
    header = (GENERATED + "# Sealed with the layer 00 sealed-secrets certificate (strict scope): only the cluster's"
              " controller decrypts it.\n")
    return header + dump(document), reuse is None


# --- text edits that keep the tree's comments ---

def set_resources(text, resources):
    """Replace the resources list of a kustomization.yaml."""
    block = "resources:\n" + "".join("  - %s\n" % item for item in resources) if resources else "resources: []\n"
    new, count = re.subn(r"^resources:(?: \[\])?\n(?:  - .*\n)*", block, text, flags=re.M)
    if not count:
        new = text.rstrip("\n") + "\n" + block
    return new


def resources_of(text):
    return list((yaml.safe_load(text) or {}).get("resources") or [])


def drop_dependencies(text, names):
    """Remove dependsOn entries naming one of names (and an emptied dependsOn)."""
    for name in names:
        text = re.sub(r"^    - name: %s\n" % re.escape(name), "", text, flags=re.M)
    return re.sub(r"^  dependsOn:\n(?!    - )", "", text, flags=re.M)


def pool_text(pool):
    name, addresses = pool["name"], str(pool["addresses"]).strip()
    if "-" in addresses:
        first, last = (part.strip() for part in addresses.split("-", 1))
        block = {"start": first, "stop": last}
    elif "/" in addresses:
        block = {"cidr": addresses}
    else:
        block = {"start": addresses, "stop": addresses}
    if pool.get("auto_assign"):
        selector = {"matchExpressions": [{"key": POOL_LABEL, "operator": "DoesNotExist"}]}
        why = "any LoadBalancer Service that names no pool (label %s) draws from it" % POOL_LABEL
    else:
        selector = {"matchLabels": {POOL_LABEL: name}}
        why = "only Services labelled %s=%s draw from it" % (POOL_LABEL, name)
    document = {"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "turnkey.cluster"}},
                "spec": {"blocks": [block], "serviceSelector": selector}}
    return (GENERATED + "# cluster_network.lb_pools %s (auto_assign %s):\n# %s.\n"
            % (name, "true" if pool.get("auto_assign") else "false", why)
            + dump(document))


def settings_text(settings):
    lines = [GENERATED, "# Flux substitutes ${name} in every component's manifests with these values\n",
             "# (postBuild.substituteFrom).\n",
             "# Non-secret values only.\n", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cluster-settings\n",
             "  namespace: flux-system\ndata:\n"]
    lines += ["  %s: %s\n" % (key, json.dumps(str(settings[key]))) for key in sorted(settings)]
    return "".join(lines)


class Render:
    def __init__(self, params):
        self.p = params
        self.files = {}  # relative path -> text

    def load(self):
        src = self.p["src"]
        for root, dirs, names in os.walk(src):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(root, name)
                with open(full, encoding="utf-8") as handle:
                    self.files[os.path.relpath(full, src)] = handle.read()

    def render(self, current):
        components = {name: bool(self.p["components"].get(name)) for name in OPTIONAL}
        off = [name for name, enabled in components.items() if not enabled]
        files = self.files
        for name in off:  # a component that is off: no folder, no Kustomization, no namespace
            for path in [path for path in files if path.startswith("platform/%s/" % name)
                         or path == "flux/optional/%s.yaml" % name]:
                del files[path]
        tree_path = re.sub(r"^(\./)+", "", self.p["gitops_path"]).strip("/")
        prefix = "./%s/" % tree_path if tree_path not in ("", ".") else "./"
        for path in [path for path in files if path.startswith("flux/") and path.endswith(".yaml")]:
            text = files[path].replace("  path: ./k8s/", "  path: " + prefix)
            files[path] = drop_dependencies(text, off)
        flux = "flux/kustomization.yaml"
        enabled = ["optional/%s.yaml" % name for name in OPTIONAL if components[name]]
        files[flux] = set_resources(files[flux], resources_of(files[flux]) + enabled)
        namespaces = "platform/namespaces/kustomization.yaml"
        kept = [item for item in resources_of(files[namespaces]) if item[:-5] not in off]
        files[namespaces] = set_resources(files[namespaces], kept)
        for path in [path for path in files if path.startswith("platform/namespaces/")
                     and path.rsplit("/", 1)[1][:-5] in off]:
            del files[path]
        files["flux/sealed-secrets-key.yaml"] = re.sub(r"name: sealed-secrets-key-turnkey-[0-9a-f]+",
                                                       "name: " + self.p["sealed_secrets_key_secret"],
                                                       files["flux/sealed-secrets-key.yaml"])
        # Load-balancer pools: one file per pool, so a change to one pool changes exactly that object.
        for path in [path for path in files if path.startswith("platform/cilium-lb/pool-")]:
            del files[path]
        pools = []
        for pool in self.p["lb_pools"]:
            pools.append("pool-%s.yaml" % pool["name"])
            files["platform/cilium-lb/" + pools[-1]] = pool_text(pool)
        if not self.p["l2_announcements"] or not pools:
            files.pop("platform/cilium-lb/l2-policy.yaml", None)
        files["platform/cilium-lb/kustomization.yaml"] = set_resources(
            files["platform/cilium-lb/kustomization.yaml"],
            (["l2-policy.yaml"] if "platform/cilium-lb/l2-policy.yaml" in files else []) + pools)
        files["cluster-settings.yaml"] = settings_text(self.p["settings"])
        if self.p["settings"].get("vault_ca_kind") == "none":  # a Vault with a publicly trusted certificate
            store = "platform/external-secrets-store/clustersecretstore.yaml"
            files[store] = re.sub(r"^      caProvider:\n(?:        .*\n)+", "", files[store], flags=re.M)
        for extra in self.p["extra_files"]:
            self.add(extra["path"], extra["content"])
        if self.p["chart_ca_secret"]:  # every HelmRepository, the tree's and those of the files the role adds
            for path in [path for path in files if "kind: HelmRepository" in files[path]]:
                files[path] = "\n---\n".join(
                    re.sub(r"^(  type: .*)$", r"\1\n  certSecretRef:\n    name: %s" % self.p["chart_ca_secret"], doc,
                           flags=re.M) if "\nkind: HelmRepository\n" in "\n" + doc else doc
                    for doc in files[path].split("\n---\n"))
        resealed = []
        if self.p["sealed_secrets"]:
            private_key = None
            if self.p["sealing_private_key"]:
                private_key = serialization.load_pem_private_key(self.p["sealing_private_key"].encode(), None)
            for spec in self.p["sealed_secrets"]:
                text, fresh = sealed_secret_text(spec, self.p["sealing_certificate"], private_key,
                                                 current.get(spec["path"]))
                if fresh:
                    resealed.append(spec["path"])
                self.add(spec["path"], text)
        root = resources_of(files["kustomization.yaml"])
        root += [folder for folder in self.p["preserve"]
                 if os.path.isfile(os.path.join(self.p["dest"], folder, "kustomization.yaml")) and folder not in root]
        files["kustomization.yaml"] = set_resources(files["kustomization.yaml"], root)
        return resealed

    def add(self, path, content):
        self.files[path] = content if content.endswith("\n") else content + "\n"
        folder, name = os.path.split(path)
        kustomization = os.path.join(folder, "kustomization.yaml")
        if kustomization in self.files and name not in resources_of(self.files[kustomization]):
            self.files[kustomization] = set_resources(self.files[kustomization],
                                                      resources_of(self.files[kustomization]) + [name])


def seconds(duration):
    """A Go duration of the forms Flux's timeouts use (1h, 10m, 90s, 1m30s) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(value) * units[unit] for value, unit in re.findall(r"(\d+)([hms])", duration))


def dependency_order(files):
    """The Flux Kustomizations listed in flux/kustomization.yaml, each after its dependencies (stable order)."""
    found = {}
    for entry in resources_of(files["flux/kustomization.yaml"]):
        for doc in yaml.safe_load_all(files["flux/" + entry]):
            if doc and doc.get("kind") == "Kustomization":
                spec = doc["spec"]
                found[doc["metadata"]["name"]] = {
                    "name": doc["metadata"]["name"], "timeout": seconds(str(spec.get("timeout", "5m"))),
                    "depends_on": [item["name"] for item in spec.get("dependsOn") or []]}
    ordered, placed = [], set()
    while len(ordered) < len(found):
        ready = [item for name, item in found.items() if name not in placed
                 and all(dependency in placed or dependency not in found for dependency in item["depends_on"])]
        if not ready:
            raise ValueError("dependency cycle among %s" % ", ".join(sorted(set(found) - placed)))
        ordered.append(ready[0])
        placed.add(ready[0]["name"])
    return ordered


def read_current(dest):
    """The files of dest that the render owns."""
    current = {}
    for top in OWNED_TOP:
        full = os.path.join(dest, top)
        if os.path.isfile(full):
            with open(full, encoding="utf-8") as handle:
                current[top] = handle.read()
        for root, _dirs, names in os.walk(full):
            for name in names:
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as handle:
                    current[os.path.relpath(path, dest)] = handle.read()
    return current


def write(module, dest, path, text):
    full = os.path.join(dest, path)
    os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(full), prefix=".platform-tree-")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(temporary, 0o644)
    module.atomic_move(temporary, full)


def main():
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "gitops_path": {"type": "str", "required": True},
            "components": {"type": "dict", "required": True},
            "settings": {"type": "dict", "required": True},
            "lb_pools": {"type": "list", "elements": "dict", "default": []},
            "l2_announcements": {"type": "bool", "default": True},
            "sealed_secrets_key_secret": {"type": "str", "required": True, "no_log": False},
            "sealed_secrets": {"type": "list", "elements": "dict", "default": [], "no_log": True, "options": {
                "path": {"type": "str", "required": True},
                "name": {"type": "str", "required": True},
                "namespace": {"type": "str", "required": True},
                "data": {"type": "dict", "required": True, "no_log": True}}},
            "sealing_certificate": {"type": "str"},
            "sealing_private_key": {"type": "str", "no_log": True},
            "extra_files": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "str", "required": True},
                "content": {"type": "str", "required": True}}},
            "chart_ca_secret": {"type": "str", "default": "", "no_log": False},
            "preserve": {"type": "list", "elements": "str", "default": ["flux-system", "custom"]},
        },
        required_if=[],
        supports_check_mode=True,
    )
    if yaml is None or not HAS_CRYPTOGRAPHY:
        module.fail_json(msg="platform_tree_render needs PyYAML and cryptography on the controller")
    params = module.params
    if params["sealed_secrets"] and not params["sealing_certificate"]:
        module.fail_json(msg="sealed_secrets needs sealing_certificate (the layer 00 sealed-secrets certificate)")
    if not os.path.isfile(os.path.join(params["src"], "flux", "kustomization.yaml")):
        module.fail_json(msg="%s is not the collection's k8s/ tree (no flux/kustomization.yaml)" % params["src"])
    unknown = sorted(set(params["components"]) - set(OPTIONAL))
    if unknown:
        module.fail_json(msg="unknown components %s; known: %s" % (", ".join(unknown), ", ".join(OPTIONAL)))
    dest = params["dest"]
    current = read_current(dest)
    renderer = Render(params)
    renderer.load()
    resealed = renderer.render(current)
    wanted = renderer.files
    try:  # before anything is written
        order = dependency_order(wanted)
    except ValueError as exc:
        module.fail_json(msg="the tree's Kustomizations have a %s" % exc)
    changed_files = sorted(path for path in wanted if current.get(path) != wanted[path])
    removed_files = sorted(path for path in current if path not in wanted)
    diff = [{"before_header": path, "after_header": path, "before": current.get(path, ""),
             "after": wanted.get(path, "")} for path in changed_files + removed_files]
    if not module.check_mode:
        for path in changed_files:
            write(module, dest, path, wanted[path])
        for path in removed_files:
            os.remove(os.path.join(dest, path))
        for root, dirs, _names in os.walk(dest, topdown=False):
            for folder in dirs:
                full = os.path.join(root, folder)
                if os.path.relpath(full, dest).split(os.sep)[0] in OWNED_TOP and not os.listdir(full):
                    os.rmdir(full)
    module.exit_json(changed=bool(changed_files or removed_files), changed_files=changed_files,
                     removed_files=removed_files, resealed=resealed, kustomizations=order, diff=diff)


if __name__ == "__main__":
    main()
