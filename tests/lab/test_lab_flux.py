"""The lab's Flux controllers (lab/turnkey_lab/components/flux.py): the real source-, kustomize-, helm- and
notification-controller, run by the lab against a real kube-apiserver once the cluster holds their Deployments.

The cluster is the real etcd + kube-apiserver of tests/integration/cluster (no kubelet, no controller manager:
the controllers run as the lab's processes, not as pods). The lab finds a cluster where the Talos twin keeps
it after `talosctl bootstrap` (its control plane's PKI and a control plane's config); the test puts that
control plane's CA, admin identity and endpoint there, which is all the component reads. Lab net 127.102.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.cluster.conftest import control_plane  # noqa: F401  # pylint: disable=unused-import
from tests.integration.flux.githttp import GitHTTPServer
from tests.lab.test_talos_twin import Twin, run, talosctl, twin_binary  # noqa: F401  # pylint: disable=unused-import
from tests.playbook_runner import recap, run_playbook
from tests.tools import built_tools

from .conftest import wait_for

NET = "127.102"
CONTROLLERS = ("source-controller", "kustomize-controller", "helm-controller", "notification-controller")
NEEDED = ("TURNKEY_KUBECTL", "TURNKEY_FLUX_MANIFESTS", *("TURNKEY_" + c.upper().replace("-", "_") for c in CONTROLLERS))


class Cluster:
    def __init__(self, kubeconfig: Path, kubectl: str):
        self.kubeconfig = kubeconfig
        self.kubectl = kubectl

    def run(self, *args: str, stdin: str | None = None, ok: bool = True, kubeconfig: Path | None = None):
        done = subprocess.run([self.kubectl, "--kubeconfig", str(kubeconfig or self.kubeconfig), *args], input=stdin,
                              capture_output=True, text=True, check=False)
        if ok:
            assert done.returncode == 0, "kubectl %s: %s" % (" ".join(args), done.stderr)
        return done

    def get(self, *args: str) -> dict | None:
        done = self.run("get", *args, "-o", "json", ok=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def apply(self, document: dict | str) -> None:
        text = document if isinstance(document, str) else yaml.safe_dump(document)
        self.run("apply", "--server-side", "-f", "-", stdin=text)


def condition(obj: dict | None, kind: str = "Ready") -> dict:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return item
    return {}


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=lab", "-c", "user.email=lab@example.invalid", *args], cwd=folder,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit(work: Path, files: dict[str, str], message: str) -> str:
    for relative, text in files.items():
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        (work / relative).write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message)
    git(work, "push", "-q", "origin", "main")
    return git(work, "rev-parse", "HEAD")


def configmap(name: str, value: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
                           "data": {"value": value}})


def twin_cluster(lab_root: Path, kubeconfig: Path) -> None:
    """What the Talos twin leaves after bootstrap and the component reads: _cluster/pki (CA, the twin's admin
    identity) and a control plane's config naming the endpoint."""
    pki = kubeconfig.parent / "pki"
    state = lab_root / "components" / "talos" / "state"
    target = state / "_cluster" / "pki"
    target.mkdir(parents=True)
    for source, name in (("ca.crt", "ca.crt"), ("admin.crt", "twin-admin.crt"), ("admin.key", "twin-admin.key")):
        (target / name).write_bytes((pki / source).read_bytes())
        (target / name).chmod(0o600)
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    (state / "cp1").mkdir()
    (state / "cp1" / "config.yaml").write_text(yaml.safe_dump({
        "version": "v1alpha1", "machine": {"type": "controlplane"},
        "cluster": {"controlPlane": {"endpoint": server}}}))


@contextlib.contextmanager
def controller_lab(make_lab, net: str, kubeconfig: Path, needed: tuple, logs: tuple, lines: int = 25):
    """A lab on `net` that finds the cluster behind `kubeconfig` where the Talos twin keeps it; yields (lab, cluster,
    tools) and prints the last lines of each named component's log at the end, for a failure's report."""
    tools = built_tools(*needed)
    lab = make_lab(net)
    twin_cluster(lab.root, kubeconfig)
    try:
        yield lab, Cluster(kubeconfig, tools["TURNKEY_KUBECTL"]), tools
    finally:
        for name in logs:
            log = lab.root / "logs" / ("%s.log" % name)
            if log.is_file():
                print("---- %s (last lines)\n%s" % (name, "\n".join(log.read_text().splitlines()[-lines:])))


@pytest.fixture
def flux_lab(control_plane, make_lab, tmp_path):  # noqa: F811 - pytest's fixture by name
    kubeconfig, _found = control_plane
    tools = built_tools(*NEEDED)
    cluster = Cluster(kubeconfig, tools["TURNKEY_KUBECTL"])
    lab = make_lab(NET)
    twin_cluster(lab.root, kubeconfig)
    # the Git host: a bare repository served over smart HTTP on the lab net
    repos = tmp_path / "git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repos / "platform.git")], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(repos / "platform.git"), str(work)], check=True, capture_output=True)
    git(work, "symbolic-ref", "HEAD", "refs/heads/main")
    server = GitHTTPServer(repos, NET + ".0.20")
    try:
        yield lab, cluster, work, server.url + "/platform.git", Path(tools["TURNKEY_FLUX_MANIFESTS"])
    finally:
        server.close()
        for name in CONTROLLERS:  # what the controllers said, for a failure's report
            log = lab.root / "logs" / ("%s.log" % name)
            if log.is_file():
                print("---- %s (last lines)\n%s" % (name, "\n".join(log.read_text().splitlines()[-15:])))


def supervised(lab) -> dict:
    """The supervisor's view (run/status.json): the detail of each component's last reconcile()."""
    return lab.json("run/status.json")["components"]


def flux_wait(tmp_path: Path, kubeconfig: Path, revision: str, kustomizations: list, source_timeout: int = 60):
    """Role flux_wait in a playbook on localhost; the completed process."""
    playbook = tmp_path / "flux-wait.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "flux wait", "hosts": "localhost", "gather_facts": False, "connection": "local",
        "vars": {"ansible_python_interpreter": sys.executable},
        "tasks": [{"name": "Wait", "ansible.builtin.include_role": {"name": "turnkey.cluster.flux_wait"},
                   "vars": {"flux_wait_kubeconfig": str(kubeconfig), "flux_wait_source_name": "platform",
                            "flux_wait_revision": revision, "flux_wait_source_timeout": source_timeout,
                            "flux_wait_kustomizations": kustomizations, "flux_wait_delay": 1}}]}]))
    return run_playbook("-i", "localhost,", playbook=str(playbook), timeout=900)


def test_flux_controllers_reconcile_a_git_revision(flux_lab, tmp_path):
    lab, cluster, work, url, manifests = flux_lab
    lab.run("up", "--components", ",".join(CONTROLLERS))
    status = lab.status()["components"]
    for name in CONTROLLERS:  # nothing installed yet: healthy and waiting, no controller runs
        assert status[name]["healthy"], status[name]
        assert status[name]["detail"].startswith("waiting"), status[name]
    wait_for(lambda: all("(no Deployment flux-system/" in supervised(lab)[name]["detail"] for name in CONTROLLERS), 30)

    # `flux install`'s manifests, as the collection applies them: the controllers start in the lab
    cluster.run("apply", "--server-side", "-f", str(manifests / "install.yaml"))

    def all_ready():
        current = lab.status()["components"]
        return all(current[name]["detail"] == "%s ready" % name for name in CONTROLLERS) and current
    wait_for(all_ready, timeout=300, interval=1)

    # each runs as its ServiceAccount (a token the API server issued), not as an administrator
    kubeconfig = lab.root / "components" / "kustomize-controller" / "kubeconfig"
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    whoami = json.loads(cluster.run("auth", "whoami", "-o", "json", kubeconfig=kubeconfig).stdout)
    assert whoami["status"]["userInfo"]["username"] == "system:serviceaccount:flux-system:kustomize-controller"
    source_kubeconfig = lab.root / "components" / "source-controller" / "kubeconfig"
    assert cluster.run("auth", "can-i", "create", "secrets", "-n", "default", ok=False,
                       kubeconfig=source_kubeconfig).stdout.strip() == "no"

    first = commit(work, {"apps/kustomization.yaml": "resources: [settings.yaml]\n",
                          "apps/settings.yaml": configmap("lab-settings", "one"),
                          "broken/kustomization.yaml": "resources: [missing.yaml]\n"}, "first")
    cluster.apply({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                   "metadata": {"name": "platform", "namespace": "flux-system"},
                   "spec": {"url": url, "ref": {"branch": "main"}, "interval": "1m"}})

    def artifact_revision():
        repository = cluster.get("gitrepository", "platform", "-n", "flux-system")
        return ((repository or {}).get("status") or {}).get("artifact", {}).get("revision")
    assert wait_for(artifact_revision, timeout=180, interval=1) == "main@sha1:" + first

    for name, path in (("apps", "./apps"), ("broken", "./broken")):
        cluster.apply({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                       "metadata": {"name": name, "namespace": "flux-system"},
                       "spec": {"interval": "1m", "path": path, "prune": True, "timeout": "1m",
                                "sourceRef": {"kind": "GitRepository", "name": "platform"}}})

    def settled(name):
        def check():
            ready = condition(cluster.get("kustomization", name, "-n", "flux-system"))
            return ready if ready.get("status") in ("True", "False") else None
        return check
    apps = wait_for(settled("apps"), timeout=180, interval=1)
    assert apps["status"] == "True", apps
    assert apps["reason"] == "ReconciliationSucceeded"
    assert first in apps["message"]
    assert cluster.get("configmap", "lab-settings", "-n", "default")["data"] == {"value": "one"}

    broken = wait_for(settled("broken"), timeout=180, interval=1)
    assert broken["status"] == "False", broken
    assert broken["reason"] == "BuildFailed", broken
    assert "missing.yaml" in broken["message"], broken

    # a new commit, asked for at once (as `flux reconcile source git` does): exactly that revision, then applied
    second = commit(work, {"apps/settings.yaml": configmap("lab-settings", "two")}, "second")
    cluster.run("annotate", "--overwrite", "gitrepository/platform", "-n", "flux-system",
                "reconcile.fluxcd.io/requestedAt=%s" % time.time())
    wait_for(lambda: artifact_revision() == "main@sha1:" + second, timeout=180, interval=1)
    wait_for(lambda: (cluster.get("configmap", "lab-settings", "-n", "default") or {}).get("data") == {"value": "two"},
             timeout=180, interval=1)

    # role flux_wait against the live controllers: the exact commit, then Kustomizations in dependency order
    cluster.apply({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                   "metadata": {"name": "after-broken", "namespace": "flux-system"},
                   "spec": {"interval": "1m", "path": "./broken", "prune": True, "dependsOn": [{"name": "broken"}],
                            "sourceRef": {"kind": "GitRepository", "name": "platform"}}})
    waited = flux_wait(tmp_path, cluster.kubeconfig, second, [{"name": "apps", "timeout": 120}])
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert recap(waited.stdout)["localhost"]["failed"] == 0
    stuck = flux_wait(tmp_path, cluster.kubeconfig, second, [
        {"name": "apps", "timeout": 120}, {"name": "broken", "timeout": 120}, {"name": "after-broken"}])
    assert stuck.returncode != 0
    assert "Kustomization flux-system/broken is not Ready on commit %s" % second in stuck.stdout, stuck.stdout
    assert "BuildFailed" in stuck.stdout and "missing.yaml" in stuck.stdout, stuck.stdout
    assert "Blocked behind it: after-broken." in stuck.stdout, stuck.stdout
    stale = flux_wait(tmp_path, cluster.kubeconfig, first, [{"name": "apps"}], source_timeout=2)
    assert stale.returncode != 0
    assert "reports main@sha1:%s after 2s, not the pushed commit %s" % (second, first) in stale.stdout, stale.stdout

    # uninstalled: the controllers stop and the components wait again
    cluster.run("delete", "deployment", "-n", "flux-system", *CONTROLLERS)

    def all_waiting():
        current = supervised(lab)
        return all("(no Deployment flux-system/" in current[name]["detail"] for name in CONTROLLERS)
    wait_for(all_waiting, timeout=60, interval=1)

    # installed again with new ServiceAccounts (as on a cluster rebuilt with the same CA and endpoint): each
    # controller starts as a new pod would, with a token of its new ServiceAccount, not the dead one's
    cluster.run("delete", "serviceaccount", "-n", "flux-system", *CONTROLLERS)
    cluster.run("apply", "--server-side", "-f", str(manifests / "install.yaml"))
    wait_for(all_ready, timeout=300, interval=1)
    whoami = cluster.run("auth", "whoami", "-o", "json", kubeconfig=kubeconfig, ok=False)
    assert whoami.returncode == 0, whoami.stderr
    lab.run("down")
    assert lab.processes() == []


def test_controller_args_are_the_deployments_with_the_labs_addresses(tmp_path):
    """The command line is the Deployment's container args (kubelet's `$(VAR)` expansion), with every address
    and path of the pod replaced by the component's own: nothing listens on a port another controller has."""
    from turnkey_lab.components.flux import NotificationController, SourceController
    from turnkey_lab.state import Lab

    lab = Lab.at(tmp_path / "state", NET)
    deployment = {"spec": {"template": {"spec": {"containers": [{"name": "manager", "args": [
        "--events-addr=http://notification-controller.flux-system.svc.cluster.local./", "--watch-all-namespaces=true",
        "--log-level=info", "--log-encoding=json", "--enable-leader-election", "--storage-path=/data",
        "--storage-adv-addr=source-controller.$(RUNTIME_NAMESPACE).svc.cluster.local."]}]}}}}
    assert SourceController(lab).args(deployment) == [
        "--watch-all-namespaces=true", "--log-level=info", "--log-encoding=json",
        "--metrics-addr=127.102.0.9:8080", "--health-addr=127.102.0.9:9440",
        "--events-addr=http://127.102.0.12:9090/",
        "--storage-path=%s" % (tmp_path / "state" / "components" / "source-controller" / "storage"),
        "--storage-addr=127.102.0.9:9090", "--storage-adv-addr=127.102.0.9:9090"]
    notification = {"spec": {"template": {"spec": {"containers": [{"name": "manager", "args": [
        "--watch-all-namespaces=true", "--log-level=debug"]}]}}}}
    assert NotificationController(lab).args(notification) == [
        "--watch-all-namespaces=true", "--log-level=debug", "--metrics-addr=127.102.0.12:8080",
        "--health-addr=127.102.0.12:9440", "--events-addr=127.102.0.12:9090", "--receiverAddr=127.102.0.12:9292"]


def test_flux_controllers_find_the_talos_twins_cluster(make_lab, twin_binary, talosctl, tmp_path):  # noqa: F811
    """Against the Talos twin's own cluster (a bootstrapped control plane: real etcd + kube-apiserver), found
    where the twin keeps it: the controllers start once `install.yaml` is applied, as their ServiceAccounts."""
    tools = built_tools("TURNKEY_ETCD", "TURNKEY_KUBE_APISERVER", *NEEDED)
    lab = make_lab(NET)
    cp1, endpoint = NET + ".1.1", "https://%s.1.100:6443" % NET
    gen = tmp_path / "gen"
    run(talosctl, "gen", "config", "flux-lab", endpoint, "-o", str(gen), "--with-docs=false", "--with-examples=false")
    (lab.root / "components" / "talos").mkdir(parents=True)
    twin = Twin(twin_binary, lab.root / "components" / "talos", {"cp1": cp1})  # the talos component's folder
    twin.extra_args = ["--etcd", tools["TURNKEY_ETCD"], "--kube-apiserver", tools["TURNKEY_KUBE_APISERVER"]]
    twin.start(cp1)
    try:
        lab.run("up", "--components", ",".join(CONTROLLERS))
        run(talosctl, "apply-config", "--insecure", "-n", cp1, "-e", cp1, "-f", str(gen / "controlplane.yaml"))
        run(talosctl, "--talosconfig", str(gen / "talosconfig"), "-n", cp1, "-e", cp1, "bootstrap")
        kubeconfig = tmp_path / "kubeconfig"
        run(talosctl, "--talosconfig", str(gen / "talosconfig"), "-n", cp1, "-e", cp1, "kubeconfig", str(kubeconfig),
            "--force", "--merge=false")
        cluster = Cluster(kubeconfig, tools["TURNKEY_KUBECTL"])
        wait_for(lambda: cluster.run("get", "--raw", "/readyz", ok=False).returncode == 0, timeout=120, interval=1)
        wait_for(lambda: all("(no Deployment flux-system/" in supervised(lab)[name]["detail"]
                             for name in CONTROLLERS), 60)
        cluster.run("apply", "--server-side", "-f", str(Path(tools["TURNKEY_FLUX_MANIFESTS"]) / "install.yaml"))
        wait_for(lambda: all(lab.status()["components"][name]["detail"] == "%s ready" % name
                             for name in CONTROLLERS), timeout=300, interval=1)
        launch = json.loads((lab.root / "components" / "source-controller" / "launch.json").read_text())
        assert "--storage-adv-addr=%s.0.9:9090" % NET in launch["args"]
        server = yaml.safe_load((lab.root / "components" / "helm-controller" / "kubeconfig").read_text())
        assert server["clusters"][0]["cluster"]["server"] == endpoint
        lab.run("down")
    finally:
        twin.stop()
