"""Build the real tools the collection drives (talosctl, kube-apiserver, kubectl, etcd, helm, flux)
from the Go module proxy into the user's cache, each at the version pinned in tools/versions.env, and
copy the Helm charts the collection installs (Cilium's) out of their Go modules.

Each tool lands in ${XDG_CACHE_HOME:-~/.cache}/turnkey-cluster/tools/<name>-<version>/<name>; one that
is present is not rebuilt. A build happens in a small generated wrapper module (go.mod requiring the
upstream module at its pinned version plus the replace directives it needs), because `go install
mod@version` refuses modules whose go.mod has replace directives. Usage: see `tools/build --help`.
"""

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSIONS_FILE = HERE / "versions.env"


class StepError(Exception):
    """A build step failed; the message names the tool and the step."""


@dataclass
class Tool:
    name: str
    module: str
    version_key: str
    package: str
    version_args: list
    # Version for modules the upstream go.mod replaces with a folder of its own repository (Kubernetes'
    # staging modules are published as v0.<minor>.<patch>); None: the version the upstream requires.
    local_replace_version: object = None
    tags: str = ""
    ldflags: object = None
    # Changes a copy of the upstream module's files before building (flux's generated embedded files).
    prepare: object = None
    # Dependencies pinned upstream at versions the Go module proxy refuses (403), each mapped to the
    # nearest served "module version"; they override the upstream replace of the same module.
    substitutes: dict = None
    # A Helm chart instead of a binary: the chart's folder inside the module (nothing is compiled).
    chart: str = ""
    # A build of its own instead of the single-module one: builder(build, staging) -> path (the Flux controllers
    # share one wrapper module; the Flux install manifests are rendered, not compiled).
    builder: object = None
    # A folder of files instead of a binary (e.g. rendered manifests): its name inside the tool's cache folder.
    folder: str = ""
    # For a folder: stamp(versions) -> what it was made from; a folder whose build.json says otherwise is stale.
    stamp: object = None
    # For a binary with no version command: verify(build, path) instead of running version_args.
    verify: object = None

    @property
    def artifact(self):
        """The file or folder name inside the tool's cache folder: the binary, or the chart's folder."""
        if self.folder:
            return self.folder
        return self.chart.rstrip("/").rsplit("/", 1)[-1] if self.chart else self.name


def read_versions(path=VERSIONS_FILE):
    versions = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _sep, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


def kube_ldflags(ctx):
    version = ctx["version"]
    major, minor = version.lstrip("v").split(".")[:2]
    values = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean",
              "buildDate": ctx["module_time"]}
    flags = []
    for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        for key, value in values.items():
            flags += ["-X", "%s.%s=%s" % (pkg, key, value)]
    return flags


def helm_ldflags(ctx):
    # Helm's Makefile derives its default Kubernetes version for templates from the client-go it links.
    client_go = ctx["go_list"]("k8s.io/client-go")
    kube_minor = client_go.lstrip("v").split(".")[1]
    base = "helm.sh/helm/v3"
    return ["-X", base + "/internal/version.version=" + ctx["version"],
            "-X", base + "/internal/version.gitTreeState=clean",
            "-X", base + "/pkg/lint/rules.k8sVersionMajor=1",
            "-X", base + "/pkg/lint/rules.k8sVersionMinor=" + kube_minor,
            "-X", base + "/pkg/chartutil.k8sVersionMajor=1",
            "-X", base + "/pkg/chartutil.k8sVersionMinor=" + kube_minor]


def flux_ldflags(ctx):
    return ["-X", "main.VERSION=" + ctx["version"].lstrip("v")]


def kwok_ldflags(ctx):
    # as KWOK's hack/releases.sh sets it (the module's constant says the same for v0.8.0)
    return ["-X", "sigs.k8s.io/kwok/pkg/consts.Version=" + ctx["version"].lstrip("v")]


def kube_staging_version(version):
    return "v0." + ".".join(version.lstrip("v").split(".")[1:3])


def flux_prepare(ctx):
    """flux embeds cmd/flux/manifests/*.yaml (the controllers' install manifests, used by `flux install` and
    `flux bootstrap` at the CLI's own version). Its release process renders them from the controllers'
    GitHub release assets, which this machine cannot reach, and several controllers' modules are not on
    the Go module proxy; so the build embeds a notice instead and those commands need `--manifests DIR`."""
    manifests = ctx["source_dir"] / "cmd" / "flux" / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    (manifests / "NOT-EMBEDDED.yaml").write_text(
        "# turnkey.cluster tools/build: the Flux install manifests are not embedded in this build;\n"
        "# pass `--manifests DIR` to `flux install` / `flux bootstrap` (see docs/tools.md).\n")
    ctx["log"].write("# prepare: embedded %s (no install manifests)\n" % (manifests / "NOT-EMBEDDED.yaml"))


# The providers and generators External Secrets is built with: the platform tree's stores are Vault's (and the
# kubernetes provider costs nothing the controller does not link anyway); the generators that need no cloud SDK.
EXTERNAL_SECRETS_KEPT = {
    "pkg/provider/register/register.go": ("vault", "kubernetes"),
    "pkg/generator/register/register.go": ("password", "uuid", "vault"),
}


def external_secrets_prepare(ctx):
    """External Secrets links every provider and generator through two blank-import files (pkg/provider/register
    and pkg/generator/register), which pull in the SDKs of every cloud (AWS, Azure, GCP, Oracle, IBM, Alibaba,
    ...). The copy keeps only the imports of EXTERNAL_SECRETS_KEPT, so the binary serves the same API and CRDs, and
    a store or generator of a dropped kind is refused as one of an unknown provider ("no registered store backend
    for type"). Everything else is upstream's."""
    for relative, kept in EXTERNAL_SECRETS_KEPT.items():
        path = ctx["source_dir"] / relative
        text = path.read_text()
        pattern = r'^\s*_ "github\.com/external-secrets/external-secrets/%s/([\w/]+)"\n' % relative.rsplit("/", 2)[0]
        found = re.findall(pattern, text, re.MULTILINE)
        missing = sorted(set(kept) - set(found))
        if missing:
            raise StepError("external-secrets failed at step 'prepare': %s imports no %s" % (relative, missing))
        text = re.sub(pattern, lambda m, keep=kept: m.group(0) if m.group(1) in keep else "", text, flags=re.MULTILINE)
        path.write_text(text)
        ctx["log"].write("# prepare: %s keeps %s, drops %s\n" % (
            relative, ", ".join(kept), ", ".join(name for name in found if name not in kept)))


def verify_recorded_module(build, out):
    """For binaries with no version command: the module version the binary records (`go version -m`: `mod <module>
    <version>`) and `--help` running."""
    recorded = build.run("verify", [build.go, "version", "-m", str(out)], capture=True)
    build.log.write(recorded)
    if not re.search(r"^\s*mod\s+%s\s+%s\s" % (re.escape(build.tool.module), re.escape(build.version)), recorded,
                     re.MULTILINE):
        raise StepError("%s %s failed at step 'verify': the binary does not record %s %s"
                        % (build.tool.name, build.version, build.tool.module, build.version))
    build.run("verify", [str(out), "--help"], capture=True)


# The Flux controllers `flux install` deploys by default, in its order: name, Go module, pin in versions.env. They
# are built from one generated wrapper module that requires all four, so Go's minimal version selection picks
# one version of every shared dependency (Kubernetes, controller-runtime, Helm, fluxcd/pkg) and each build
# after the first reuses the compiled packages of the one before.
FLUX_CONTROLLERS = (
    ("source-controller", "github.com/fluxcd/source-controller", "FLUX_SOURCE_CONTROLLER_VERSION"),
    ("kustomize-controller", "github.com/fluxcd/kustomize-controller", "FLUX_KUSTOMIZE_CONTROLLER_VERSION"),
    ("helm-controller", "github.com/fluxcd/helm-controller", "FLUX_HELM_CONTROLLER_VERSION"),
    ("notification-controller", "github.com/fluxcd/notification-controller", "FLUX_NOTIFICATION_CONTROLLER_VERSION"),
)
FLUX_CONTROLLER_SUBSTITUTES = {
    # source-controller v1.9.5 pins v0.18.3, which the proxy refuses; v0.18.1 has the same code.
    "github.com/fluxcd/pkg/artifact": "github.com/fluxcd/pkg/artifact v0.18.1",
    # v0.40.2 (a test helper the module graph names) is refused; v0.40.1 is served.
    "github.com/fluxcd/pkg/helmtestserver": "github.com/fluxcd/pkg/helmtestserver v0.40.1",
}


def module_info(build, module, version):
    """`go mod download -json` of module@version (its folder, go.mod and info files), as one step of build."""
    out = build.run("download", [build.go, "mod", "download", "-json", "%s@%s" % (module, version)], capture=True)
    info = json.loads(out)
    if info.get("Error"):
        raise StepError("%s %s failed at step 'download': %s" % (build.tool.name, build.version, info["Error"]))
    return info


def flux_controllers_wrapper(build, work):
    """The joint go.mod (and go.sum) of the four controllers: their upstream replaces merged (a conflict takes
    the newer version and is logged), the substitutes for refused versions, every upstream go.sum line."""
    versions = read_versions()
    replaces, sums, go_lines = {}, set(), set()
    for name, module, key in FLUX_CONTROLLERS:
        info = module_info(build, module, versions[key])
        upstream = json.loads(build.run("wrapper", [build.go, "mod", "edit", "-json", info["GoMod"]], capture=True))
        go_lines.add(upstream.get("Go", "1.26"))
        for line in build.replaces(upstream):
            lhs, _arrow, rhs = line.partition(" => ")
            if lhs in replaces and replaces[lhs] != rhs:
                chosen = max(replaces[lhs], rhs)
                build.log.write("# replace conflict: %s => %s, or %s (%s); taking %s\n"
                                % (lhs, replaces[lhs], rhs, name, chosen))
                rhs = chosen
            replaces[lhs] = rhs
        upstream_sum = Path(info["Dir"]) / "go.sum"
        if upstream_sum.is_file():
            sums.update(upstream_sum.read_text().splitlines())
    text = ["// Generated by tools/build: the Flux controllers, one module so they share one dependency graph.",
            "module turnkey.cluster/tools/flux-controllers", "",
            "go %s" % max(go_lines, key=lambda v: [int(p) for p in re.findall(r"\d+", v)]), "", "require ("]
    text += ["\t%s %s" % (module, versions[key]) for _name, module, key in FLUX_CONTROLLERS]
    text += [")", "", "tool ("] + ["\t%s" % module for _name, module, _key in FLUX_CONTROLLERS] + [")", ""]
    text += ["replace ("] + ["\t%s => %s" % item for item in sorted(replaces.items())] + [")", ""]
    (work / "go.mod").write_text("\n".join(text))
    (work / "go.sum").write_text("\n".join(sorted(line for line in sums if line.strip())) + "\n")
    build.log.write("\n# wrapper go.mod\n" + "\n".join(text) + "\n")


def flux_controller_build(build, staging):
    """One Flux controller, built from the joint wrapper (flux_controllers_wrapper) with upstream's flags
    (its Dockerfile: CGO_ENABLED=0, -trimpath, no tags, no version ldflags: the controllers have no version
    flag). Verified by the module version the binary records (`go version -m`: `mod <module> <version>`) and by
    `--help` running."""
    work = staging / "work"
    work.mkdir()
    flux_controllers_wrapper(build, work)
    build.run("tidy", [build.go, "mod", "tidy"], cwd=work)
    out = staging / build.tool.name
    build.run("build", [build.go, "build", "-trimpath", "-o", str(out), "-ldflags", "-s -w", build.tool.package],
              cwd=work)
    verify_recorded_module(build, out)
    shutil.rmtree(work)
    return out


# The sealed-secrets commands (Makefile and .goreleaser.yml of github.com/bitnami/sealed-secrets): the controller
# the lab runs as a process, and kubeseal, which seals offline with a certificate (e.g. the layer 00 one).
SEALED_SECRETS_COMMANDS = ("controller", "kubeseal")


def sealed_secrets_build(build, staging):
    """The controller and kubeseal in one `go build` of one wrapper module (one dependency graph, one link step
    each), with upstream's release flags (.goreleaser.yml: CGO_ENABLED=0, `-X main.VERSION=<version without v>`),
    and the module's chart (helm/sealed-secrets) beside them as chart/. Verified by each binary's `--version`."""
    info = build.download()
    work, out = staging / "work", staging / build.tool.folder
    work.mkdir()
    out.mkdir()
    build.write_wrapper(work, info)
    packages = ["%s/cmd/%s" % (build.tool.module, command) for command in SEALED_SECRETS_COMMANDS]
    for package in packages[1:]:  # write_wrapper names one tool (the controller); kubeseal's packages join it
        build.run("wrapper", [build.go, "mod", "edit", "-tool=" + package], cwd=work)
    build.run("tidy", [build.go, "mod", "tidy"], cwd=work)
    version = build.version.lstrip("v")
    build.run("build", [build.go, "build", "-trimpath", "-o", str(out) + os.sep,
                        "-ldflags", "-s -w -X main.VERSION=" + version, *packages], cwd=work)
    for command in SEALED_SECRETS_COMMANDS:
        printed = build.run("verify", [str(out / command), "--version"], capture=True)
        build.log.write(printed)
        if "%s version: %s" % (command, version) not in printed:
            raise StepError("%s %s failed at step 'verify': `%s --version` printed %r"
                            % (build.tool.name, build.version, command, printed.strip()))
    # the chart the module carries (helm/sealed-secrets), for rendering the controller's Deployment and RBAC
    writable_copy(Path(info["Dir"]) / "helm" / "sealed-secrets", out / "chart")
    shutil.rmtree(work)
    return out


# What `flux install` v2.9.5 generates around the release's manifests for its default options
# (pkg/manifestgen/install/templates.go: namespace, labels, node selector, roles, the kustomization).
FLUX_INSTALL_FILES = {
    "namespace.yaml": """---
apiVersion: v1
kind: Namespace
metadata:
  name: flux-system
  labels:
    pod-security.kubernetes.io/warn: restricted
    pod-security.kubernetes.io/warn-version: latest
""",
    "labels.yaml": """---
apiVersion: builtin
kind: LabelTransformer
metadata:
  name: labels
labels:
  app.kubernetes.io/instance: flux-system
  app.kubernetes.io/version: "{version}"
  app.kubernetes.io/part-of: flux
fieldSpecs:
  - path: metadata/labels
    create: true
  - kind: Deployment
    path: spec/template/metadata/labels
    create: true
""",
    "node-selector.yaml": """---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: all
spec:
  template:
    spec:
      nodeSelector:
        kubernetes.io/os: linux

""",
    "roles/kustomization.yaml": """---
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: flux-system
resources:
  - rbac.yaml
nameSuffix: -flux-system
""",
}
FLUX_EVENTS_ADDR = "http://notification-controller.flux-system.svc.cluster.local./"


def flux_install_kustomization():
    """The kustomization.yaml `flux install` writes for the four default components (same template)."""
    text = ["---", "apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization", "namespace: flux-system",
            "", "transformers:", "  - labels.yaml", "", "resources:", "  - namespace.yaml", "  - policies.yaml",
            "  - roles"]
    text += ["  - %s.yaml" % name for name, _module, _key in FLUX_CONTROLLERS]
    text += ["", "patches:", "- path: node-selector.yaml", "  target:", "    kind: Deployment"]
    for name, _module, _key in FLUX_CONTROLLERS:
        if name == "notification-controller":
            replaced = ["--watch-all-namespaces=true", "--log-level=info"]
        else:
            replaced = ["--events-addr=" + FLUX_EVENTS_ADDR, "--watch-all-namespaces=true", "--log-level=info"]
        text += ["- target:", "    group: apps", "    version: v1", "    kind: Deployment", "    name: " + name,
                 "  patch: |-"]
        for index, value in enumerate(replaced):
            text += ["    - op: replace", "      path: /spec/template/spec/containers/0/args/%d" % index,
                     "      value: " + value]
        if name == "source-controller":
            text += ["    - op: replace", "      path: /spec/template/spec/containers/0/args/6",
                     "      value: --storage-adv-addr=source-controller.$(RUNTIME_NAMESPACE).svc.cluster.local."]
    text += ["images:"]
    text += ["  - name: fluxcd/%s\n    newName: ghcr.io/fluxcd/%s" % (name, name) for name, _m, _k in FLUX_CONTROLLERS]
    return "\n".join(text) + "\n"


def flux_manifests_stamp(versions):
    return {"flux": versions["FLUX_VERSION"], **{name: versions[key] for name, _module, key in FLUX_CONTROLLERS}}


def flux_manifests_build(build, staging):
    """The Flux install manifests, made as Flux's release makes them but from the Go modules: each controller's
    release assets (`kustomize build config/crd` and `config/manager` of its module, at its pin), flux2's
    manifests/bases, rbac and policies built over them (its manifests/scripts/bundle.sh), and around them what
    `flux install` generates for its default options (install/, the folder for `flux install --manifests`).
    Rendered with the pinned kubectl's kustomize, the whole of install/ into install.yaml."""
    versions = read_versions()
    kubectl = binary_path(TOOLS["kubectl"], versions)
    if not os.access(kubectl, os.X_OK):
        raise StepError("%s %s failed at step 'prepare': %s is not built (tools/build kubectl)"
                        % (build.tool.name, build.version, kubectl))
    flux2 = Path(build.download()["Dir"]) / "manifests"
    out, work = staging / build.tool.folder, staging / "work"
    assets, install = out / "assets", out / "install"
    for folder in (assets, install / "roles", work):
        folder.mkdir(parents=True)

    def kustomize(folder, target):
        target.write_text(build.run("render", [str(kubectl), "kustomize", str(folder)], capture=True))

    for name, module, key in FLUX_CONTROLLERS:
        config = Path(module_info(build, module, versions[key])["Dir"]) / "config"
        kustomize(config / "crd", assets / ("%s.crds.yaml" % name))
        kustomize(config / "manager", assets / ("%s.deployment.yaml" % name))
        base = work / "bases" / name
        shutil.copytree(flux2 / "bases" / name, base)
        kustomization = (base / "kustomization.yaml").read_text()
        for kind in ("crds", "deployment"):
            asset = "%s.%s.yaml" % (name, kind)
            pattern = r"https://github\.com/fluxcd/%s/releases/download/[^/\s]+/%s" % (
                re.escape(name), re.escape(asset))
            if not re.search(pattern, kustomization):
                raise StepError("%s %s failed at step 'render': flux2's bases/%s does not name %s"
                                % (build.tool.name, build.version, name, asset))
            kustomization = re.sub(pattern, asset, kustomization)
            shutil.copyfile(assets / asset, base / asset)
        (base / "kustomization.yaml").write_text(kustomization)
        kustomize(base, install / ("%s.yaml" % name))
    kustomize(flux2 / "rbac", install / "rbac.yaml")
    kustomize(flux2 / "policies", install / "policies.yaml")
    shutil.copyfile(install / "rbac.yaml", install / "roles" / "rbac.yaml")
    for relative, text in FLUX_INSTALL_FILES.items():
        (install / relative).write_text(text.replace("{version}", build.version))
    (install / "kustomization.yaml").write_text(flux_install_kustomization())
    rendered = build.run("render", [str(kubectl), "kustomize", str(install)], capture=True)
    pins = ", ".join("%s %s" % (name, versions[key]) for name, _module, key in FLUX_CONTROLLERS)
    (out / "install.yaml").write_text("# Flux %s install manifests (%s), rendered by tools/build from the Go modules.\n"
                                      % (build.version, pins) + rendered)
    for name, _module, key in FLUX_CONTROLLERS:
        image = "ghcr.io/fluxcd/%s:%s" % (name, versions[key])
        if "image: " + image not in rendered:
            raise StepError("%s %s failed at step 'verify': install.yaml has no %s"
                            % (build.tool.name, build.version, image))
    build.log.write("# verify: install.yaml (%d bytes) deploys %s\n" % (len(rendered), ", ".join(
        "%s %s" % (name, versions[key]) for name, _module, key in FLUX_CONTROLLERS)))
    shutil.rmtree(work)
    return out


# Cilium's CRDs as its operator registers them when it starts (the chart ships none): the YAML files the operator
# embeds (pkg/k8s/apis/cilium.io/client/crds) and the schema version it labels them with, for the lab's stand-in
# for the operator (lab component cilium-operator, docs/lab.md).
CILIUM_CRDS = "pkg/k8s/apis/cilium.io/client/crds"


def cilium_crds_build(build, staging):
    """The CRD files of github.com/cilium/cilium at the chart's pin, and schema-version: the module's
    CustomResourceDefinitionSchemaVersion (pkg/k8s/apis/cilium.io/register.go), by which the operator decides
    whether a CRD the cluster holds needs an update."""
    module = Path(build.download()["Dir"])
    out = staging / build.tool.folder
    shutil.copytree(module / CILIUM_CRDS, out, ignore=shutil.ignore_patterns("*.go"))
    for path in [out, *out.rglob("*")]:  # the module cache is read-only
        path.chmod(path.stat().st_mode | 0o200)
    found = re.search(r'CustomResourceDefinitionSchemaVersion\s*=\s*"([^"]+)"',
                      (module / "pkg/k8s/apis/cilium.io/register.go").read_text())
    if not found or not list(out.glob("v2/*.yaml")):
        raise StepError("%s %s failed at step 'verify': no CRD files or schema version in %s"
                        % (build.tool.name, build.version, module))
    (out / "schema-version").write_text(found.group(1) + "\n")
    return out


# The Helm charts the lab's chart repository serves (lab component `charts`, docs/lab.md "The chart repository"):
# chart name, Go module, pin in versions.env, the chart's folder in the module, how upstream's release makes the
# package from it. Layer 02's platform tree fetches every chart of the lab inventory from there.
LAB_CHARTS = (
    ("cert-manager", "github.com/cert-manager/cert-manager", "LAB_CHART_CERT_MANAGER_VERSION",
     "deploy/charts/cert-manager"),
    ("sealed-secrets", "github.com/bitnami/sealed-secrets", "SEALED_SECRETS_VERSION", "helm/sealed-secrets"),
    ("external-secrets", "github.com/external-secrets/external-secrets", "EXTERNAL_SECRETS_VERSION",
     "deploy/charts/external-secrets"),
    ("proxmox-csi-plugin", "github.com/sergelogvinov/proxmox-csi-plugin", "LAB_CHART_PROXMOX_CSI_VERSION",
     "charts/proxmox-csi-plugin"),
)
# Charts no module on the proxy has: the lab's own stand-ins (same names, namespace and secret references).
LAB_STAND_IN_CHARTS = HERE.parent / "lab" / "charts"


def lab_charts_stamp(versions):
    """The modules' pins and a digest of the stand-ins' files: a change of either makes the folder stale."""
    digest = hashlib.sha256()
    for path in sorted(LAB_STAND_IN_CHARTS.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(LAB_STAND_IN_CHARTS)).encode() + b"\0" + path.read_bytes() + b"\0")
    return {**{name: versions[key] for name, _module, key, _folder in LAB_CHARTS},
            "helm": versions["HELM_VERSION"], "stand-ins": digest.hexdigest()[:16]}


def writable_copy(source, target):
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:  # the module cache is read-only
        path.chmod(path.stat().st_mode | 0o200)
    return target


def chart_yaml_field(text, field):
    found = re.search(r"^%s:\s*['\"]?([^'\"\s#]+)" % re.escape(field), text, re.MULTILINE)
    return found.group(1) if found else None


def cert_manager_release_folder(build, source, work, version):
    """What cert-manager's make/manifests.mk assembles in _bin/helm/cert-manager before `helm package
    --app-version=VERSION --version=VERSION`: Chart.yaml, values.yaml, values.schema.json, the templates,
    .helmignore and README.md from README.template.md with the release version (not its tests or linter
    exceptions). Its Chart.yaml says v0.0.0 until the package flags set the version. Not added: the
    artifacthub.io signKey annotation (this repository serves no provenance file to check it against)."""
    out = work / "cert-manager"
    (out / "templates").mkdir(parents=True)
    for name in ("Chart.yaml", "values.yaml", "values.schema.json", ".helmignore"):
        shutil.copyfile(source / name, out / name)
    for template in (source / "templates").iterdir():
        if template.suffix == ".yaml" or template.name in ("_helpers.tpl", "NOTES.txt"):
            shutil.copyfile(template, out / "templates" / template.name)
    readme = (source / "README.template.md").read_text().replace("{{RELEASE_VERSION}}", version)
    (out / "README.md").write_text(readme)
    build.log.write("# release folder: %s (%d templates)\n" % (out, len(list((out / "templates").iterdir()))))
    return out, ["--version", version, "--app-version", version]


# external-secrets' hack/helm.generate.sh puts after the first `annotations` line of every CRD template (its
# `sed '0,/annotations/!b;//a\...'`).
ESO_CRD_ANNOTATIONS = """\
    {{- with .Values.crds.annotations }}
    {{- toYaml . | nindent 4}}
    {{- end }}
    {{- if and .Values.crds.conversion.enabled .Values.webhook.certManager.enabled \
.Values.webhook.certManager.addInjectorAnnotations }}
    cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "external-secrets.fullname" . }}-webhook
    {{- end }}
"""


def eso_crd_template(document):
    """One CRD of deploy/crds/bundle.yaml as `make helm.generate` (hack/helm.generate.sh) writes it into the
    chart's templates/crds: wrapped in the installCRDs condition (plus crds.create<Kind> for cluster-scoped kinds
    and PushSecret), its webhook service named after the release, the annotation block added. The v1alpha1
    conversion wrapper and the `- |-` cleanup it applies to ExternalSecret/SecretStore kinds need a v1alpha1
    version, which v0.16.2's CRDs do not serve any more (checked: it raises if one shows up)."""
    kind = re.search(r"^    kind: (\S+)$", document, re.MULTILINE).group(1)
    flag = "create" + kind
    if ("ExternalSecret" in flag or "SecretStore" in flag) and re.search(r"^\s+- name: v1alpha1$", document,
                                                                         re.MULTILINE):
        raise ValueError("%s serves v1alpha1: helm.generate.sh's conversion wrapper is not reproduced" % kind)
    if "Cluster" in flag or "PushSecret" in flag:
        header = "{{- if and (.Values.installCRDs) (.Values.crds.%s) }}" % flag
    else:
        header = "{{- if .Values.installCRDs }}"
    lines = (header + "\n" + document + "{{- end }}\n").splitlines(keepends=True)
    lines = [line.replace("name: kubernetes", 'name: {{ include "external-secrets.fullname" . }}-webhook')
                 .replace("namespace: default", "namespace: {{ .Release.Namespace | quote }}") for line in lines]
    first = next(index for index, line in enumerate(lines) if "annotations" in line)
    lines.insert(first + 1, ESO_CRD_ANNOTATIONS)
    singular = re.search(r"^    singular: (\S+)$", document, re.MULTILINE).group(1)
    return singular, "".join(lines)


def external_secrets_release_folder(build, source, work, version):
    """external-secrets' release: `make helm.generate` (hack/helm.generate.sh) splits deploy/crds/bundle.yaml
    (the CRDs of config/crds/bases, made by hack/crd.generate.sh) into templates/crds/<singular>.yaml wrapped in
    the chart's CRD conditions, and the release sets the chart's version (the tag's Chart.yaml still says the
    previous one). The lab's overlay: the optional dependency bitwarden-sdk-server (oci://ghcr.io, disabled by
    its condition) is dropped from Chart.yaml and Chart.lock, since it cannot be fetched here."""
    out = writable_copy(source, work / "external-secrets")
    bundle = (source.parents[2] / "deploy" / "crds" / "bundle.yaml").read_text()
    documents = [doc.lstrip("\n") for doc in re.split(r"^---\n", bundle, flags=re.MULTILINE) if doc.strip()]
    for document in documents:
        singular, text = eso_crd_template(document)
        (out / "templates" / "crds" / ("%s.yaml" % singular)).write_text(text)
    chart = (out / "Chart.yaml").read_text()
    chart, dropped = re.subn(r"^dependencies:\n(?:[ -].*\n)*", "", chart, flags=re.MULTILINE)
    if dropped != 1 or "bitwarden" in chart:
        raise ValueError("external-secrets' Chart.yaml: expected one dependencies block (bitwarden-sdk-server)")
    (out / "Chart.yaml").write_text(chart)
    (out / "Chart.lock").unlink()
    build.log.write("# release folder: %s (%d CRD templates; bitwarden-sdk-server dependency dropped)\n"
                    % (out, len(documents)))
    return out, ["--version", version.lstrip("v"), "--app-version", version]


def plain_release_folder(_build, source, work, _version):
    """Charts whose folder in the tagged module is the released chart (its Chart.yaml carries the version)."""
    return writable_copy(source, work / source.name), []


LAB_CHART_RELEASES = {"cert-manager": cert_manager_release_folder, "external-secrets": external_secrets_release_folder}


def lab_charts_build(build, staging):
    """The lab's Helm chart repository: each chart made as its project's release makes it, from the Go module at
    its pin, plus the stand-ins of lab/charts; `helm package` (the pinned helm) into one folder and `helm repo
    index` over it (relative URLs, so the folder can be served from any address)."""
    versions = read_versions()
    helm = binary_path(TOOLS["helm"], versions)
    if not os.access(helm, os.X_OK):
        raise StepError("%s %s failed at step 'prepare': %s is not built (tools/build helm)"
                        % (build.tool.name, build.version, helm))
    out, work = staging / build.tool.folder, staging / "work"
    out.mkdir()
    work.mkdir()
    build.env.update({"HELM_CACHE_HOME": str(work / ".helm" / "cache"), "HELM_CONFIG_HOME": str(work / ".helm"),
                      "HELM_DATA_HOME": str(work / ".helm" / "data")})
    expected = {}
    folders = []
    for name, module, key, folder in LAB_CHARTS:
        version = versions[key]
        source = Path(module_info(build, module, version)["Dir"]) / folder
        release = LAB_CHART_RELEASES.get(name, plain_release_folder)
        try:
            chart_dir, flags = release(build, source, work, version)
        except (OSError, ValueError, AttributeError, StopIteration) as exc:
            raise StepError("%s %s failed at step 'prepare' (%s %s): %s"
                            % (build.tool.name, build.version, name, version, exc)) from exc
        folders.append((name, chart_dir, flags))
    for chart_dir in sorted(path for path in LAB_STAND_IN_CHARTS.iterdir() if (path / "Chart.yaml").is_file()):
        folders.append((chart_dir.name, writable_copy(chart_dir, work / "stand-ins" / chart_dir.name), []))
    for name, chart_dir, flags in folders:
        build.run("package", [str(helm), "package", str(chart_dir), "--destination", str(out), *flags])
        chart = (chart_dir / "Chart.yaml").read_text()
        version = flags[flags.index("--version") + 1] if "--version" in flags else chart_yaml_field(chart, "version")
        if chart_yaml_field(chart, "name") != name or not (out / ("%s-%s.tgz" % (name, version))).is_file():
            raise StepError("%s %s failed at step 'verify': no package %s-%s.tgz"
                            % (build.tool.name, build.version, name, version))
        expected[name] = version
    build.run("index", [str(helm), "repo", "index", str(out)])
    index = (out / "index.yaml").read_text()
    for name, version in expected.items():
        shown = build.run("verify", [str(helm), "show", "chart", str(out / ("%s-%s.tgz" % (name, version)))],
                          capture=True)
        if chart_yaml_field(shown, "version") != version or "%s-%s.tgz" % (name, version) not in index:
            raise StepError("%s %s failed at step 'verify': %s %s is not what index.yaml and its package say"
                            % (build.tool.name, build.version, name, version))
    build.log.write("# verify: index.yaml serves %s\n" % ", ".join("%s %s" % item for item in expected.items()))
    shutil.rmtree(work)
    return out


def folder_is_current(tool, path):
    """A folder tool is built when its folder exists and its build.json records what stamp() says now."""
    if not path.is_dir():
        return False
    if not tool.stamp:
        return True
    try:
        recorded = json.loads((path.parent / "build.json").read_text()).get("stamp")
    except (OSError, ValueError):
        return False
    return recorded == tool.stamp(read_versions())


TOOLS = {tool.name: tool for tool in (
    # talosctl embeds its version from pkg/machinery/gendata/data, which the module carries.
    Tool("talosctl", "github.com/siderolabs/talos", "TALOS_VERSION", "github.com/siderolabs/talos/cmd/talosctl",
         ["version", "--client"], tags="grpcnotrace", substitutes={
             # Talos' fork of containerd (a pseudo-version of github.com/smira/containerd/v2); the
             # version Talos requires before its replace is the upstream release.
             "github.com/containerd/containerd/v2": "github.com/containerd/containerd/v2 v2.2.4",
             # v0.2.38 is refused; v0.2.39 is the next patch release, on the same Kubernetes 1.36 libraries.
             "github.com/siderolabs/go-kubernetes": "github.com/siderolabs/go-kubernetes v0.2.39",
             # v3.6.12 is refused (the etcd server module is served); v3.6.14 is the nearest patch served.
             "go.etcd.io/etcd/etcdutl/v3": "go.etcd.io/etcd/etcdutl/v3 v3.6.14",
         }),
    Tool("kube-apiserver", "k8s.io/kubernetes", "KUBERNETES_VERSION", "k8s.io/kubernetes/cmd/kube-apiserver",
         ["--version"], local_replace_version=kube_staging_version, ldflags=kube_ldflags),
    Tool("kubectl", "k8s.io/kubernetes", "KUBERNETES_VERSION", "k8s.io/kubernetes/cmd/kubectl",
         ["version", "--client"], local_replace_version=kube_staging_version, ldflags=kube_ldflags),
    # The lab's control loop (the Talos twin runs both next to its kube-apiserver): same module and flags, so
    # they reuse most of the API server's build cache.
    Tool("kube-controller-manager", "k8s.io/kubernetes", "KUBERNETES_VERSION",
         "k8s.io/kubernetes/cmd/kube-controller-manager", ["--version"], local_replace_version=kube_staging_version,
         ldflags=kube_ldflags),
    Tool("kube-scheduler", "k8s.io/kubernetes", "KUBERNETES_VERSION", "k8s.io/kubernetes/cmd/kube-scheduler",
         ["--version"], local_replace_version=kube_staging_version, ldflags=kube_ldflags),
    Tool("etcd", "go.etcd.io/etcd/server/v3", "ETCD_VERSION", "go.etcd.io/etcd/server/v3", ["--version"]),
    # KWOK plays the kubelets of the lab's Talos nodes (pods Running/Ready without containers).
    Tool("kwok", "sigs.k8s.io/kwok", "KWOK_VERSION", "sigs.k8s.io/kwok/cmd/kwok", ["--version"], ldflags=kwok_ldflags),
    Tool("helm", "helm.sh/helm/v3", "HELM_VERSION", "helm.sh/helm/v3/cmd/helm", ["version"], ldflags=helm_ldflags),
    Tool("flux", "github.com/fluxcd/flux2/v2", "FLUX_VERSION", "github.com/fluxcd/flux2/v2/cmd/flux",
         ["version", "--client"], ldflags=flux_ldflags, prepare=flux_prepare),
    # Cilium's Helm chart as released: the module's install/kubernetes/cilium is the chart published to
    # helm.cilium.io (same Chart.yaml version, templates and values.schema.json).
    Tool("cilium-chart", "github.com/cilium/cilium", "CILIUM_VERSION", "", [], chart="install/kubernetes/cilium"),
    # The sealed-secrets controller (a lab component) and kubeseal, one build into one folder (docs/tools.md).
    Tool("sealed-secrets", "github.com/bitnami/sealed-secrets", "SEALED_SECRETS_VERSION",
         "github.com/bitnami/sealed-secrets/cmd/controller", [], builder=sealed_secrets_build, folder="sealed-secrets"),
    # Cilium's CRDs and their schema version, from the same module (the lab's stand-in for the operator registers them).
    Tool("cilium-crds", "github.com/cilium/cilium", "CILIUM_VERSION", "", [], builder=cilium_crds_build,
         folder="cilium-crds"),
    # External Secrets Operator, which the lab runs as a process (docs/lab.md "External Secrets"): the module's
    # root package (main.go, the controller with its certcontroller and webhook subcommands), with only the
    # providers and generators the platform tree uses (external_secrets_prepare). No version command.
    Tool("external-secrets", "github.com/external-secrets/external-secrets", "EXTERNAL_SECRETS_VERSION",
         "github.com/external-secrets/external-secrets", [], prepare=external_secrets_prepare,
         verify=verify_recorded_module),
    # The Flux controllers, for the lab (docs/tools.md "The Flux controllers"): one joint wrapper module.
    *(Tool(name, module, key, module, [], substitutes=FLUX_CONTROLLER_SUBSTITUTES, builder=flux_controller_build)
      for name, module, key in FLUX_CONTROLLERS),
    # Their install manifests (what `flux install` applies), rendered from the controllers' and flux2's modules.
    Tool("flux-manifests", "github.com/fluxcd/flux2/v2", "FLUX_VERSION", "", [], builder=flux_manifests_build,
         folder="flux-manifests", stamp=flux_manifests_stamp),
    # The lab's Helm chart repository (lab component `charts`): the platform tree's charts from their Go modules,
    # packaged as their releases package them, plus the lab's stand-ins (lab/charts), with an index.yaml.
    Tool("lab-charts", "(the charts' Go modules)", "LAB_CHARTS_VERSION", "", [], builder=lab_charts_build,
         folder="lab-charts", stamp=lab_charts_stamp),
)}


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "turnkey-cluster"


def tools_dir():
    return cache_root() / "tools"


def binary_path(tool, versions):
    """The tool's binary, or for a chart its folder."""
    version = versions[tool.version_key]
    return tools_dir() / ("%s-%s" % (tool.name, version)) / tool.artifact


def is_built(tool, path):
    if tool.folder:
        return folder_is_current(tool, path)
    if tool.chart:
        return (path / "Chart.yaml").is_file()
    return path.is_file() and os.access(path, os.X_OK)


def go_env():
    env = dict(os.environ)
    root = cache_root() / "go"
    env.update({
        "GOMODCACHE": str(root / "mod"),
        "GOCACHE": str(root / "build"),
        "GOWORK": "off",
        "CGO_ENABLED": "0",
        # -dwarf=false: every build links with -s -w, which drops the debug info anyway; not making it cuts the
        # compile's processor time by a fifth (etcd on 2 cores: 135 s -> 110 s). Commands without -gcflags ignore it.
        "GOFLAGS": (env.get("GOFLAGS", "") + " -modcacherw -mod=mod -gcflags=all=-dwarf=false").strip(),
        # The compiler collects its garbage 4x less often: etcd from an empty build cache on 2 cores, 124 s -> 113 s
        # of processor time (GOGC=800 no better), a tenth more memory per compile.
        "GOGC": env.get("GOGC", "400"),
    })
    return env


def go_binary():
    found = os.environ.get("GO") or shutil.which("go")
    if found:
        return found
    if os.access("/usr/local/go/bin/go", os.X_OK):
        return "/usr/local/go/bin/go"
    raise StepError("no Go toolchain found (set GO or put go on PATH)")


class Build:
    """One tool's build, each command logged to its log file."""

    def __init__(self, tool, versions, log):
        self.tool = tool
        self.version = versions[tool.version_key]
        self.log = log
        self.env = go_env()
        self.go = go_binary()

    def run(self, step, args, cwd=None, capture=False):
        self.log.write("\n$ (%s) %s\n" % (step, " ".join(args)))
        self.log.flush()
        started = time.monotonic()
        proc = subprocess.run(args, cwd=cwd, env=self.env, check=False, text=True,
                              stdout=subprocess.PIPE if capture else self.log, stderr=self.log)
        self.log.write("# %s: exit %d after %.1fs\n" % (step, proc.returncode, time.monotonic() - started))
        self.log.flush()
        if proc.returncode != 0:
            if capture:  # e.g. `go mod download -json` reports its error on stdout
                self.log.write(proc.stdout or "")
                self.log.flush()
            raise StepError("%s %s failed at step '%s' (`%s`, exit %d)"
                            % (self.tool.name, self.version, step, " ".join(args), proc.returncode))
        return proc.stdout

    def download(self):
        return module_info(self, self.tool.module, self.version)

    def replaces(self, upstream):
        """The upstream replace directives, with its own-repository folders mapped to published versions."""
        required = {req["Path"]: req["Version"] for req in upstream.get("Require") or []}
        lines = []
        for rep in upstream.get("Replace") or []:
            old, new = rep["Old"], rep["New"]
            if new.get("Version"):
                lhs = old["Path"] + (" " + old["Version"] if old.get("Version") else "")
                lines.append("%s => %s %s" % (lhs, new["Path"], new["Version"]))
                continue
            # A folder of the upstream repository: only modules the upstream requires matter (others,
            # like etcd's ./FORBIDDEN_DEPENDENCY guards, exist to make a wrong import fail).
            if old["Path"] not in required:
                continue
            if self.tool.local_replace_version:
                version = self.tool.local_replace_version(self.version)
            else:
                version = required[old["Path"]]
            if version.startswith("v0.0.0"):
                raise StepError("%s %s failed at step 'wrapper': no published version for %s (replaced by %s)"
                                % (self.tool.name, self.version, old["Path"], new["Path"]))
            lines.append("%s => %s %s" % (old["Path"], old["Path"], version))
        for module, target in (self.tool.substitutes or {}).items():
            lines = [line for line in lines if line.split()[0] != module]
            lines.append("%s => %s" % (module, target))
            self.log.write("# substitute (not served by the Go module proxy at the upstream version): %s => %s\n"
                           % (module, target))
        return lines

    def write_wrapper(self, work, info, source_dir=None):
        upstream = json.loads(self.run("wrapper", [self.go, "mod", "edit", "-json", info["GoMod"]], capture=True))
        replaces = self.replaces(upstream)
        if source_dir:
            replaces.append("%s => %s" % (self.tool.module, source_dir))
        godebug = ["godebug %s=%s" % (item["Key"], item["Value"]) for item in upstream.get("Godebug") or []]
        header = "// Generated by tools/build: builds %s from %s@%s." % (
            self.tool.package, self.tool.module, self.version)
        text = [header,
                "module turnkey.cluster/tools/%s" % self.tool.name, "",
                "go %s" % upstream.get("Go", "1.26"), ""]
        text += godebug + ([""] if godebug else [])
        text += ["require %s %s" % (self.tool.module, self.version), "", "tool %s" % self.tool.package, ""]
        if replaces:
            text += ["replace ("] + ["\t" + line for line in replaces] + [")", ""]
        (work / "go.mod").write_text("\n".join(text))
        # The upstream go.sum vouches for modules the checksum database does not know (Talos' forks, e.g.
        # siderolabs/wgctrl-go); `go mod tidy` drops the lines the wrapper does not need.
        upstream_sum = Path(info["Dir"]) / "go.sum"
        if upstream_sum.is_file():
            shutil.copyfile(upstream_sum, work / "go.sum")
        self.log.write("\n# wrapper go.mod\n" + "\n".join(text) + "\n")

    def go_list(self, work):
        def lookup(module):
            return self.run("resolve", [self.go, "list", "-m", "-f", "{{.Version}}", module], cwd=work,
                            capture=True).strip()
        return lookup

    def copy_chart(self, staging):
        """Copy the chart folder out of the module into staging/<chart>; returns the path."""
        info = self.download()
        source = Path(info["Dir"]) / self.tool.chart
        out = staging / self.tool.artifact
        self.log.write("\n$ (copy) %s -> %s\n" % (source, out))
        if not (source / "Chart.yaml").is_file():
            raise StepError("%s %s failed at step 'copy': %s has no Chart.yaml"
                            % (self.tool.name, self.version, source))
        shutil.copytree(source, out)
        for path in [out, *out.rglob("*")]:  # the module cache is read-only
            path.chmod(path.stat().st_mode | 0o200)
        chart_yaml = (out / "Chart.yaml").read_text()
        self.log.write("# verify: Chart.yaml\n" + chart_yaml[:200] + "\n")
        found = re.search(r"^version:\s*['\"]?([^'\"\s]+)", chart_yaml, re.MULTILINE)
        if not found or found.group(1) != self.version.lstrip("v"):
            raise StepError("%s %s failed at step 'verify': Chart.yaml says version %s"
                            % (self.tool.name, self.version, found.group(1) if found else "(none)"))
        return out

    def build(self, staging):
        """Build into staging/<name>; returns the path."""
        if self.tool.chart:
            return self.copy_chart(staging)
        if self.tool.builder:
            return self.tool.builder(self, staging)
        info = self.download()
        work = staging / "work"
        work.mkdir()
        source_dir = None
        ctx = {"version": self.version, "module_dir": info["Dir"], "work": work, "log": self.log,
               "run": self.run, "go": self.go, "module_time": module_time(info), "go_list": self.go_list(work)}
        if self.tool.prepare:
            source_dir = work / "src"
            shutil.copytree(info["Dir"], source_dir)
            for path in [source_dir, *source_dir.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)
            ctx["source_dir"] = source_dir
            try:
                self.tool.prepare(ctx)
            except StepError:
                raise
            except Exception as exc:  # the preparation is tool-specific; any failure is that step's
                raise StepError("%s %s failed at step 'prepare': %s" % (self.tool.name, self.version, exc)) from exc
        self.write_wrapper(work, info, source_dir)
        self.run("tidy", [self.go, "mod", "tidy"], cwd=work)
        ldflags = ["-s", "-w"] + (self.tool.ldflags(ctx) if self.tool.ldflags else [])
        out = staging / self.tool.name
        args = [self.go, "build", "-trimpath", "-o", str(out), "-ldflags", " ".join(quote_flag(f) for f in ldflags)]
        if self.tool.tags:
            args += ["-tags", self.tool.tags]
        self.run("build", args + [self.tool.package], cwd=work)
        if self.tool.verify:  # no version command to run
            self.tool.verify(self, out)
            shutil.rmtree(work)
            return out
        version_out = self.run("verify", [str(out)] + self.tool.version_args, capture=True)
        self.log.write(version_out)
        if self.version.lstrip("v") not in version_out:
            raise StepError("%s %s failed at step 'verify': `%s` printed no %s:\n%s"
                            % (self.tool.name, self.version, " ".join([self.tool.name] + self.tool.version_args),
                               self.version, version_out))
        shutil.rmtree(work)
        return out


def quote_flag(flag):
    return "'%s'" % flag if re.search(r"\s", flag) else flag


# What a build takes on a 2-core machine from empty Go caches, in the order `make tools` builds them
# (docs/tools.md, "How long it takes"): said before each build, unless this machine built the tool before.
TYPICAL_SECONDS = {"talosctl": 456, "kube-apiserver": 746, "kubectl": 75, "etcd": 151, "helm": 140, "flux": 369,
                   "cilium-chart": 5}
TYPICAL_SECONDS.update({"kube-controller-manager": 406, "kube-scheduler": 40, "kwok": 669})
TYPICAL_SECONDS.update({"external-secrets": 200})
TYPICAL_SECONDS.update({"sealed-secrets": 95})  # both commands, docs/tools.md
TYPICAL_SECONDS.update({"cilium-crds": 5})  # a copy out of the module cilium-chart downloads


def expected_seconds(tool):
    """This machine's own last build of the tool (any version, from its build.json), else the typical time."""
    measured = []
    for record in tools_dir().glob("%s-*/build.json" % tool.name):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            info = json.loads(record.read_text())
            if info["name"] == tool.name:
                measured.append((info.get("built_at", ""), float(info["seconds"])))
    return max(measured)[1] if measured else TYPICAL_SECONDS.get(tool.name, 60)


# The Flux controllers from one wrapper module (docs/tools.md "The Flux controllers and their install manifests"):
# the first pays for the shared dependencies, the others mostly for their own packages and the link.
TYPICAL_SECONDS.update({"source-controller": 310, "kustomize-controller": 45, "helm-controller": 15,
                        "notification-controller": 45, "flux-manifests": 5})
# The lab's chart repository: module downloads (the module cache is shared) and six `helm package` runs.
TYPICAL_SECONDS.update({"lab-charts": 5})


def duration(seconds):
    """3s, 4m 05s, 1h 02m: short, and exact enough to plan a coffee."""
    seconds = int(round(seconds))
    if seconds < 60:
        return "%ds" % seconds
    if seconds < 3600:
        return "%dm %02ds" % divmod(seconds, 60)
    return "%dh %02dm" % (seconds // 3600, seconds % 3600 // 60)


def say(text, stream=None):
    """One progress line, flushed at once: `make bootstrap` output is often piped to a log."""
    print("tools/build: " + text, file=stream or sys.stdout, flush=True)


def module_time(info):
    try:
        return json.loads(Path(info["Info"]).read_text())["Time"]
    except (KeyError, OSError, ValueError):
        return "1970-01-01T00:00:00Z"


@contextlib.contextmanager
def locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build_tool(tool, versions, force=False):
    """Build one tool unless present; returns (path, seconds or None when skipped)."""
    final = binary_path(tool, versions)
    if is_built(tool, final) and not force:
        return final, None
    logs = tools_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / ("%s-%s.log" % (tool.name, versions[tool.version_key]))
    staging = Path(tempfile.mkdtemp(prefix=".build-%s-" % tool.name, dir=tools_dir()))
    staging.chmod(0o755)  # mkdtemp's 0700 would stay on the installed folder
    started = time.monotonic()
    try:
        with open(log_path, "w") as log:
            log.write("# tools/build %s %s at %s\n" % (tool.name, versions[tool.version_key], time.ctime()))
            try:
                Build(tool, versions, log).build(staging)
            except StepError as exc:
                log.write("\n# FAILED: %s\n" % exc)
                log.flush()
                raise StepError("%s; log: %s\n%s" % (exc, log_path, tail(log_path))) from None
            seconds = time.monotonic() - started
            (staging / "build.json").write_text(json.dumps({
                "name": tool.name, "module": tool.module, "version": versions[tool.version_key],
                "package": tool.package or None, "chart": tool.chart or None, "seconds": round(seconds, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **({"stamp": tool.stamp(versions)} if tool.stamp else {}),
            }, indent=2) + "\n")
            log.write("\n# built in %.1fs\n" % seconds)
        if final.parent.exists():  # --force: replace the old build
            shutil.rmtree(final.parent)
        os.rename(staging, final.parent)  # atomic: the folder appears complete or not at all
        return final, seconds
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def tail(path, lines=25):
    text = Path(path).read_text(errors="replace").splitlines()
    return "\n".join("    " + line for line in text[-lines:])


def write_index(versions):
    """Symlinks in ~/.cache/turnkey-cluster/bin (a folder for PATH; tools/bin is the shellcheck venv of
    tests/sanity/run.sh) and tools/tools.env (TURNKEY_<NAME>=path lines) for the tools that are built."""
    bin_dir = cache_root() / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for tool in TOOLS.values():
        path = binary_path(tool, versions)
        if not is_built(tool, path):
            continue
        lines.append("%s=%s" % (env_name(tool.name), path))
        if tool.chart or tool.folder:  # a chart or a folder is no command: tools.env only
            continue
        link = bin_dir / tool.name
        tmp_link = bin_dir / (".%s.tmp" % tool.name)
        with contextlib.suppress(FileNotFoundError):
            tmp_link.unlink()
        tmp_link.symlink_to(path)
        os.replace(tmp_link, link)
    env_file = tools_dir() / "tools.env"
    tmp = env_file.with_suffix(".tmp")
    tmp.write_text("# Written by tools/build.\n" + "\n".join(lines) + "\n")
    os.replace(tmp, env_file)


def env_name(name):
    return "TURNKEY_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tools/build", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="tools to build (default: all): %s"
                        % ", ".join(TOOLS))
    parser.add_argument("--print-path", metavar="NAME", choices=sorted(TOOLS),
                        help="print the path of NAME's binary or chart folder (exit 1 when it is not built)")
    parser.add_argument("--list", action="store_true", help="list the tools, versions, modules and states")
    parser.add_argument("--force", action="store_true", help="rebuild even when present")
    parser.add_argument("--check", action="store_true",
                        help="exit 0 when every tool named (default: all) is built at its pin, 1 naming those not")
    args = parser.parse_args(argv)
    versions = read_versions()

    unknown = [name for name in args.names if name not in TOOLS]
    if unknown:
        parser.error("unknown tool(s): %s" % ", ".join(unknown))
    if args.check:
        missing = [name for name in args.names or TOOLS
                   if not is_built(TOOLS[name], binary_path(TOOLS[name], versions))]
        if missing:
            print("not built: %s" % ", ".join(missing))
        return 1 if missing else 0

    if args.print_path:
        path = binary_path(TOOLS[args.print_path], versions)
        if not is_built(TOOLS[args.print_path], path):
            sys.stderr.write("tools/build: %s is not built (%s missing); run `make tools`\n" % (args.print_path, path))
            return 1
        print(path)
        return 0
    if args.list:
        for tool in TOOLS.values():
            path = binary_path(tool, versions)
            print("%-15s %-9s %-30s %s" % (tool.name, versions[tool.version_key], tool.module,
                                           path if is_built(tool, path) else "(not built)"))
        return 0

    os.nice(int(os.environ.get("TURNKEY_TOOLS_NICE", "15")))  # 2 cores, shared with others' work
    failures = []
    started = time.monotonic()
    built = present = 0
    with locked(tools_dir() / ".lock"):
        names = args.names or list(TOOLS)
        missing = [name for name in names
                   if args.force or not is_built(TOOLS[name], binary_path(TOOLS[name], versions))]
        if missing:
            say("%d of %d to build (%s), about %s in all; each is announced with what it usually takes"
                % (len(missing), len(names), ", ".join(missing),
                   duration(sum(expected_seconds(TOOLS[name]) for name in missing))))
        for name in names:
            tool = TOOLS[name]
            version = versions[tool.version_key]
            if name in missing:
                say("building %s %s (%d of %d), usually about %s; log: %s" % (
                    name, version, missing.index(name) + 1, len(missing), duration(expected_seconds(tool)),
                    tools_dir() / "logs" / ("%s-%s.log" % (name, version))))
            try:
                path, seconds = build_tool(tool, versions, force=args.force)
            except StepError as exc:
                failures.append(str(exc))
                say("FAILED %s" % exc, sys.stderr)
                continue
            if seconds is None:
                present += 1
                say("%-15s %-9s present  %s" % (name, version, path))
            else:
                built += 1
                say("%-15s %-9s built in %s  %s" % (name, version, duration(seconds), path))
        write_index(versions)
    if missing:
        took = duration(time.monotonic() - started)
        say("done in %s: %d built, %d present, %d failed" % (took, built, present, len(failures)))
    if failures:
        print("tools/build: %d tool(s) failed; see the logs named above" % len(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
