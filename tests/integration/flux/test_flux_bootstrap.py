"""Role flux_bootstrap end to end, as layer 02 runs it: the layer 00 deploy key, the tree published over SSH to the
lab's Git host (real sshd + git-shell, deploy keys), Flux installed from the pinned manifests and pointed at the
repository, then role flux_wait on the exact pushed commit. The four real Flux controllers run as the lab's
processes against a real etcd + kube-apiserver (tests/lab/test_lab_flux.py); the real source-controller fetches
over ssh:// with the deploy key. Lab net 127.104."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import yaml

from tests.integration.cluster.conftest import control_plane  # noqa: F401  # pylint: disable=unused-import
from tests.lab.conftest import wait_for
from tests.lab.test_lab_flux import CONTROLLERS, NEEDED, Cluster, condition, supervised, twin_cluster
from tests.playbook_runner import TEST_VAULT_PASSWORD, recap, run_playbook
from tests.store_access import open_store
from tests.tools import built_tools

NET = "127.104"
REPO_NAME = "turnkey/cluster.git"
TREE = {
    "kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                          "resources: [settings.yaml]\n",
    "settings.yaml": yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "bootstrap-settings", "namespace": "default"},
                                     "data": {"greeting": "from git over ssh"}}),
}

PLAY = """
- name: Layer 02's Flux steps on the controller
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The deploy key in the store (as layer 00 makes it)
      turnkey.cluster.persistent_secret:
        name: flux_deploy_key
        type: ssh_ed25519
        comment: flux@lab
        store_path: "{{ secrets_store.path }}"
        vault_password_env: TURNKEY_VAULT_PASSWORD
    - name: Publish the tree
      ansible.builtin.include_role:
        name: turnkey.cluster.gitops_publish
    - name: Bootstrap Flux
      ansible.builtin.include_role:
        name: turnkey.cluster.flux_bootstrap
    - name: Wait for the pushed commit
      ansible.builtin.include_role:
        name: turnkey.cluster.flux_wait
      vars:
        flux_wait_revision: "{{ gitops_publish_revision | regex_replace('^.*:', '') }}"
      # as layer 02 does: check mode pushes nothing, so there is no new revision to wait for
      when: not ansible_check_mode
"""


def test_flux_bootstrap_reconciles_the_published_commit_over_ssh(control_plane, make_lab, tmp_path):  # noqa: F811
    from turnkey_lab.components.git import GitServer, create_repository  # noqa: PLC0415 (the lab, from its source)
    from turnkey_lab.state import Lab  # noqa: PLC0415

    # 1. The lab: the cluster (real etcd + kube-apiserver), the Git host and the four Flux controllers.
    kubeconfig, _found = control_plane
    tools = built_tools(*NEEDED)
    cluster = Cluster(kubeconfig, tools["TURNKEY_KUBECTL"])
    lab = make_lab(NET)
    twin_cluster(lab.root, kubeconfig)
    lab.run("up", "--components", ",".join(("git", *CONTROLLERS)))
    server = GitServer(Lab.at(lab.root, NET))
    create_repository(server, REPO_NAME)
    host_key = lab.json("endpoints.json")["components"]["git"]["host_key"]
    wait_for(lambda: all("(no Deployment flux-system/" in supervised(lab)[name]["detail"] for name in CONTROLLERS), 60)

    # 2. The play's inputs: the spec's repository and store, a tiny tree (a Kustomization with a ConfigMap).
    src = tmp_path / "tree"
    for name, text in TREE.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    variables = {
        "ansible_python_interpreter": sys.executable,
        "cluster_name": "lab", "cluster_domain": "lab.turnkey.test",
        "gitops": {"url": server.repo_url(REPO_NAME), "branch": "main", "path": "k8s"},
        "secrets_store": {"path": str(tmp_path / "secrets"), "vault_password_env": "TURNKEY_VAULT_PASSWORD"},
        "gitops_publish_src": str(src), "gitops_publish_state_dir": str(tmp_path / "state"),
        # as inventory/lab does: the public key goes to the Git host's read-write deploy keys of the repository
        "gitops_publish_public_key_file": str(server.keys_dir / REPO_NAME / "read-write" / "flux-lab.pub"),
        "gitops_publish_host_key": host_key,
        "flux_bootstrap_kubeconfig": str(kubeconfig), "flux_bootstrap_interval": "10m",
        "flux_wait_kubeconfig": str(kubeconfig), "flux_wait_delay": 1,
        "flux_wait_kustomizations": [{"name": "flux-system", "timeout": 300}],
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    playbook = tmp_path / "flux-bootstrap.yml"
    playbook.write_text(PLAY)
    # the manifests come through the tool rule: $TURNKEY_FLUX_MANIFESTS (flux_bootstrap_manifests stays empty)
    env = {"TURNKEY_VAULT_PASSWORD": TEST_VAULT_PASSWORD, "TURNKEY_FLUX_MANIFESTS": tools["TURNKEY_FLUX_MANIFESTS"]}
    outputs = []

    def play(*extra):
        process = run_playbook("-i", "localhost,", "-e", "@%s" % (tmp_path / "vars.json"), *extra,
                               playbook=str(playbook), env=env, timeout=1200)
        outputs.append(process.stdout + process.stderr)
        assert process.returncode == 0, process.stdout[-6000:] + process.stderr[-3000:]
        return recap(process.stdout)["localhost"]

    # 3. Check mode first, on a cluster without Flux (and no key yet): it passes and creates nothing.
    dry = play("--check", "--diff")
    assert dry["failed"] == 0 and dry["changed"] > 0, dry
    assert "check mode: Flux is not installed yet (flux-system, gitrepositories.source.toolkit.fluxcd.io, " \
           "kustomizations.kustomize.toolkit.fluxcd.io missing)" in outputs[-1].replace("\n", " "), outputs[-1]
    assert cluster.get("namespace", "flux-system") is None
    assert cluster.get("crd", "gitrepositories.source.toolkit.fluxcd.io") is None
    assert not (tmp_path / "secrets").exists() or not any((tmp_path / "secrets").iterdir())
    assert subprocess.run(["git", "--git-dir", str(server.repos_dir / REPO_NAME), "rev-parse", "--verify", "main"],
                          capture_output=True, check=False).returncode != 0

    # 4. One run: key, publish, bootstrap, wait.
    first = play()
    assert first["failed"] == 0 and first["changed"] > 0
    pushed = subprocess_git(server, "rev-parse", "main")
    assert len(pushed) == 40

    # 5. The real source-controller fetched exactly the pushed commit, over ssh:// with the deploy key.
    repository = cluster.get("gitrepository", "flux-system", "-n", "flux-system")
    assert repository["spec"]["url"] == server.repo_url(REPO_NAME)
    assert repository["spec"]["url"].startswith("ssh://")
    assert repository["spec"]["secretRef"] == {"name": "flux-system"}
    assert repository["status"]["artifact"]["revision"] == "main@sha1:" + pushed
    ready = condition(repository)
    assert ready["status"] == "True" and pushed in ready["message"], ready
    # the Git host accepted the key as a deploy key of this repository (the only way in over SSH)
    registered = (server.keys_dir / REPO_NAME / "read-write" / "flux-lab.pub").read_text().split()

    # 6. The root Kustomization applied that commit: the ConfigMap is in the cluster.
    root = cluster.get("kustomization", "flux-system", "-n", "flux-system")
    assert root["spec"]["path"] == "./k8s" and root["spec"]["prune"] is True
    ready = condition(root)
    assert ready["status"] == "True" and ready["reason"] == "ReconciliationSucceeded", ready
    assert root["status"]["lastAppliedRevision"] == "main@sha1:" + pushed
    assert cluster.get("configmap", "bootstrap-settings", "-n", "default")["data"] == {"greeting": "from git over ssh"}

    # 7. The flux-system Secret: the layer 00 private key and the Git host's key; the key never in the output.
    stored = open_store(tmp_path / "secrets", TEST_VAULT_PASSWORD).read("flux_deploy_key")["data"]
    secret = cluster.get("secret", "flux-system", "-n", "flux-system")
    assert sorted(secret["data"]) == ["identity", "known_hosts"]
    identity = _decoded(secret["data"]["identity"])
    assert identity.strip() == stored["private_key"].strip()
    assert registered[:2] == stored["public_key"].split()[:2]
    known_hosts = _decoded(secret["data"]["known_hosts"])
    assert host_key.split()[1] in known_hosts and server.ip in known_hosts

    # 8. A rerun changes nothing, and neither does a check run with diff.
    again = play()
    assert again["changed"] == 0 and again["failed"] == 0, again
    checked = play("--check", "--diff")
    assert checked["changed"] == 0 and checked["failed"] == 0, checked
    body = max(stored["private_key"].splitlines(), key=len)
    for output in outputs:
        assert body not in output
        assert "PRIVATE KEY" not in output
    assert subprocess_git(server, "rev-list", "--count", "main") == "1"


def subprocess_git(server, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(server.repos_dir / REPO_NAME), *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def _decoded(value: str) -> str:
    return base64.b64decode(value).decode()
