"""Publishing the platform tree through the real `ansible-playbook`, against the lab's Git host (Debian's
real sshd and git-shell, deploy keys as a Git host keeps them) on the test net 127.100: the access check,
the refusals that come before any push, the commit the play makes, idempotence, check mode and diff."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.lab.conftest import LabHandle, wait_for
from tests.playbook_runner import BIN, REPO, TEST_VAULT_PASSWORD, run_playbook, task_result
from tests.store_access import open_store

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

NET = "127.100"
CLUSTER = "turnkey/cluster.git"


def keypair(folder: Path, name: str) -> tuple[str, str]:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key.read_text(), (folder / f"{name}.pub").read_text().strip()


class GitLab:
    """The lab's Git host and what the tests need of it: repositories, deploy keys, the bare history."""

    def __init__(self, handle: LabHandle):
        from turnkey_lab.components.git import GitServer  # noqa: PLC0415 (the lab package, from its source)
        from turnkey_lab.state import Lab  # noqa: PLC0415

        self.handle = handle
        self.server = GitServer(Lab.at(handle.root, NET))
        self.endpoint = handle.json("endpoints.json")["components"]["git"]

    def repository(self, name: str) -> str:
        from turnkey_lab.components.git import create_repository  # noqa: PLC0415

        create_repository(self.server, name)
        return f"{self.server.url}/{name}"

    def register(self, repo: str, public_key: str, *, read_only: bool, title: str) -> Path:
        from turnkey_lab.components.git import register_deploy_key  # noqa: PLC0415

        return register_deploy_key(self.server, repo, public_key, read_only=read_only, title=title)

    def git(self, repo: str, *args: str) -> str:
        return subprocess.run(["git", "--git-dir", str(self.server.repos_dir / repo), *args], check=True,
                              capture_output=True, text=True).stdout

    def log(self, repo: str, branch: str = "main") -> list[str]:
        """(subject, author) of each commit of the branch, newest first; empty for a missing branch."""
        heads = self.git(repo, "for-each-ref", "--format=%(refname)", f"refs/heads/{branch}")
        if not heads.strip():
            return []
        return self.git(repo, "log", "--format=%s|%an <%ae>", branch).splitlines()

    def show(self, repo: str, path: str, branch: str = "main") -> str:
        return self.git(repo, "show", f"{branch}:{path}")


@pytest.fixture(scope="module")
def git_lab(tmp_path_factory):
    handle = LabHandle(tmp_path_factory.mktemp("gitops-lab") / "state", NET)
    try:
        handle.run("up", "--components", "git", "--profile", "fast")
        yield GitLab(handle)
    finally:
        handle.run("down", ok=False)
        handle.kill_everything()


def write_tree(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)
    return folder


# A small stand-in for the rendered platform tree (role platform_tree renders the real one).
TREE = {
    "kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                          "resources: [namespaces.yaml, cilium/lb-pools.yaml]\n",
    "namespaces.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: vault\n",
    "cilium/lb-pools.yaml": "apiVersion: cilium.io/v2alpha1\nkind: CiliumLoadBalancerIPPool\nmetadata:\n"
                            "  name: ingress\nspec:\n  blocks:\n    - start: 127.2.3.2\n",
}


def module_play(tmp_path: Path, args: dict, *extra: str, name: str = "play"):
    """Runs module gitops_publish once with these arguments; (process, result of the task)."""
    playbook = tmp_path / f"{name}.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Publish", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "publish", "turnkey.cluster.gitops_publish": args}]}]))
    process = run_playbook("-i", "localhost,", "-c", "local", *extra, playbook=str(playbook), json_output=True)
    return process, task_result(process.stdout, "publish")


def publish_args(tmp_path: Path, url: str, private_key: str, src: Path, **overrides) -> dict:
    return {"repo_url": url, "branch": "main", "path": "k8s", "src": str(src), "private_key": private_key,
            "work_dir": str(tmp_path / "state" / "gitops" / "repo"), "commit_message": "turnkey: publish the tree",
            "author_name": "turnkey.cluster", "author_email": "turnkey@lab.turnkey.test", **overrides}


def test_a_key_the_host_does_not_accept_stops_with_its_public_key(git_lab, tmp_path):
    url = git_lab.repository("test/unaccepted.git")
    private, public = keypair(tmp_path, "stranger")
    src = write_tree(tmp_path / "tree", TREE)
    process, result = module_play(tmp_path, publish_args(tmp_path, url, private, src))
    assert result.get("failed"), process.stdout
    message = result["msg"]
    assert "does not accept the deploy key" in message
    assert public.split()[1] in message  # the public key to register, printed whole
    assert "Deploy keys" in message and "write access" in message and "Read access is enough for Flux" in message
    assert private.strip().splitlines()[1] not in process.stdout + process.stderr
    assert git_lab.log("test/unaccepted.git") == []
    assert not (tmp_path / "state" / "gitops" / "repo").exists()  # refused before the clone was made


def test_a_read_only_key_reads_but_cannot_push(git_lab, tmp_path):
    repo = "test/read-only.git"
    url = git_lab.repository(repo)
    private, public = keypair(tmp_path, "flux-ro")
    git_lab.register(repo, public, read_only=True, title="flux-ro")
    src = write_tree(tmp_path / "tree", TREE)
    process, result = module_play(tmp_path, publish_args(tmp_path, url, private, src))
    assert result.get("failed"), process.stdout
    assert "refused the push" in result["msg"] and "marked as read only" in result["msg"]
    assert "write access" in result["msg"] and public.split()[1] in result["msg"]
    assert git_lab.log(repo) == []
    # The clone's own commit was undone: a rerun with a write key is not refused as "unpushed".
    clone = tmp_path / "state" / "gitops" / "repo"
    assert subprocess.run(["git", "-C", str(clone), "rev-parse", "--verify", "HEAD"], capture_output=True,
                          check=False).returncode != 0
    assert not (clone / "k8s").exists()


@pytest.fixture
def published(git_lab, tmp_path):
    """A repository the read-write key has published TREE into; (repo, url, private key, src, first result)."""
    repo = f"test/{tmp_path.name[-40:].lower().strip('-_.') or 'repo'}.git"
    url = git_lab.repository(repo)
    private, public = keypair(tmp_path, "flux-rw")
    git_lab.register(repo, public, read_only=False, title="flux-rw")
    src = write_tree(tmp_path / "tree", TREE)
    process, result = module_play(tmp_path, publish_args(tmp_path, url, private, src), name="first")
    assert not result.get("failed"), result.get("msg")
    return repo, url, private, src, result


def test_a_dirty_working_tree_is_refused_before_pushing(git_lab, tmp_path, published):
    repo, url, private, src, _first = published
    clone = tmp_path / "state" / "gitops" / "repo"
    (clone / "k8s" / "namespaces.yaml").write_text("edited by hand\n")
    (clone / "notes.txt").write_text("new\n")
    (src / "namespaces.yaml").write_text(TREE["namespaces.yaml"] + "---\n# changed\n")
    before = git_lab.log(repo)
    process, result = module_play(tmp_path, publish_args(tmp_path, url, private, src))
    assert result.get("failed"), process.stdout
    assert "uncommitted changes" in result["msg"]
    assert "k8s/namespaces.yaml" in result["msg"] and "notes.txt" in result["msg"]
    assert git_lab.log(repo) == before


def test_an_unpushed_commit_is_refused_before_pushing(git_lab, tmp_path, published):
    repo, url, private, src, _first = published
    clone = tmp_path / "state" / "gitops" / "repo"
    (clone / "local.txt").write_text("only here\n")
    subprocess.run(["git", "-C", str(clone), "add", "local.txt"], check=True)
    subprocess.run(["git", "-C", str(clone), "-c", "user.name=op", "-c", "user.email=op@x", "commit", "-qm",
                    "my local experiment"], check=True)
    (src / "namespaces.yaml").write_text(TREE["namespaces.yaml"] + "---\n# changed\n")
    before = git_lab.log(repo)
    process, result = module_play(tmp_path, publish_args(tmp_path, url, private, src))
    assert result.get("failed"), process.stdout
    assert "1 commit(s)" in result["msg"] and "my local experiment" in result["msg"]
    assert git_lab.log(repo) == before


def test_publish_commits_pushes_and_reruns_unchanged(git_lab, tmp_path, published):
    repo, url, private, src, first = published
    head = git_lab.git(repo, "rev-parse", "main").strip()
    assert first["changed"] and first["revision"] == f"main@sha1:{head}" and first["previous"] == ""
    assert first["files"]["added"] == ["k8s/cilium/lb-pools.yaml", "k8s/kustomization.yaml", "k8s/namespaces.yaml"]
    assert git_lab.log(repo) == ["turnkey: publish the tree|turnkey.cluster <turnkey@lab.turnkey.test>"]
    assert git_lab.show(repo, "k8s/cilium/lb-pools.yaml") == TREE["cilium/lb-pools.yaml"]
    host_key = git_lab.endpoint["host_key"]
    assert host_key in first["known_hosts"]  # accepted on first contact, kept per cluster
    assert host_key in (tmp_path / "state" / "gitops" / "known_hosts").read_text()

    process, again = module_play(tmp_path, publish_args(tmp_path, url, private, src), name="again")
    assert not again.get("failed"), again.get("msg")
    assert again["changed"] is False and again["revision"] == first["revision"]
    assert len(git_lab.log(repo)) == 1


def test_check_mode_shows_the_diff_and_pushes_nothing(git_lab, tmp_path, published):
    repo, url, private, src, first = published
    (src / "cilium" / "lb-pools.yaml").write_text(TREE["cilium/lb-pools.yaml"].replace("127.2.3.2", "127.2.3.9"))
    (src / "namespaces.yaml").unlink()
    clone = tmp_path / "state" / "gitops" / "repo"
    head_before = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True,
                                 check=True).stdout
    process, result = module_play(tmp_path, publish_args(tmp_path, url, private, src), "--check", "--diff")
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert result["files"] == {"added": [], "modified": ["k8s/cilium/lb-pools.yaml"],
                               "deleted": ["k8s/namespaces.yaml"]}
    diffs = {entry["after_header"]: entry for entry in result["diff"]}
    assert "127.2.3.2" in diffs["b/k8s/cilium/lb-pools.yaml"]["before"]
    assert "127.2.3.9" in diffs["b/k8s/cilium/lb-pools.yaml"]["after"]
    assert diffs["/dev/null"]["before_header"] == "a/k8s/namespaces.yaml"
    assert result["revision"] == first["revision"]
    assert len(git_lab.log(repo)) == 1  # nothing pushed
    assert subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout == head_before
    assert (clone / "k8s" / "namespaces.yaml").is_file()  # the work tree untouched


def test_check_mode_without_a_clone_writes_nothing(git_lab, tmp_path, published):
    repo, url, private, src, _first = published
    args = publish_args(tmp_path, url, private, src, work_dir=str(tmp_path / "elsewhere" / "repo"))
    process, result = module_play(tmp_path, args, "--check")
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    assert not (tmp_path / "elsewhere" / "repo").exists()


def test_a_spec_change_lands_as_a_new_commit_and_the_rest_of_the_repository_stays(git_lab, tmp_path, published):
    repo, url, private, src, first = published
    # Someone else commits outside gitops.path meanwhile (the operator's README, say): it is kept.
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(git_lab.server.repos_dir / repo), str(other)], check=True)
    (other / "README.md").write_text("# cluster\n")
    subprocess.run(["git", "-C", str(other), "add", "README.md"], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.name=op", "-c", "user.email=op@x", "commit", "-qm",
                    "docs: readme"], check=True)
    subprocess.run(["git", "-C", str(other), "push", "-q", "origin", "main"], check=True)

    (src / "cilium" / "lb-pools.yaml").write_text(TREE["cilium/lb-pools.yaml"].replace("127.2.3.2", "127.2.3.9"))
    args = publish_args(tmp_path, url, private, src, commit_message="turnkey: LB pool ingress moves to 127.2.3.9")
    process, result = module_play(tmp_path, args)
    assert not result.get("failed"), result.get("msg")
    head = git_lab.git(repo, "rev-parse", "main").strip()
    assert result["changed"] and result["revision"] == f"main@sha1:{head}"
    assert result["files"]["modified"] == ["k8s/cilium/lb-pools.yaml"]
    assert [line.split("|")[0] for line in git_lab.log(repo)] == [
        "turnkey: LB pool ingress moves to 127.2.3.9", "docs: readme", "turnkey: publish the tree"]
    assert "127.2.3.9" in git_lab.show(repo, "k8s/cilium/lb-pools.yaml")
    assert git_lab.show(repo, "README.md") == "# cluster\n"


def test_a_second_run_waits_for_the_first_to_leave_the_clone(git_lab, tmp_path, published):
    repo, url, private, src, _first = published
    (src / "namespaces.yaml").write_text(TREE["namespaces.yaml"] + "---\n# second run\n")
    playbook = tmp_path / "waiting.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Publish", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "publish", "turnkey.cluster.gitops_publish": publish_args(tmp_path, url, private, src)}]}]))
    lock_file = tmp_path / "state" / "gitops" / ".repo.lock"
    with open(lock_file, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another run holds the clone
        env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"}
        waiting = subprocess.Popen([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
                                   cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            # The run waits for the lock (the kernel lists it as a blocked FLOCK on that file), pushing nothing.
            inode = f":{lock_file.stat().st_ino} "
            wait_for(lambda: any("-> FLOCK" in line and inode in line
                                 for line in Path("/proc/locks").read_text().splitlines()), timeout=120)
            assert waiting.poll() is None
            assert len(git_lab.log(repo)) == 1
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    output, _err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, output
    assert len(git_lab.log(repo)) == 2


def test_a_pinned_host_key_that_does_not_match_stops_before_anything(git_lab, tmp_path, published):
    repo, url, private, src, _first = published
    _private, wrong = keypair(tmp_path, "not-the-host")
    (src / "namespaces.yaml").write_text("changed\n")
    args = publish_args(tmp_path, url, private, src, host_key=" ".join(wrong.split()[:2]))
    process, result = module_play(tmp_path, args)
    assert result.get("failed")
    assert "host key" in result["msg"] and "pinned" in result["msg"]
    assert len(git_lab.log(repo)) == 1


ROLE_PLAY = """
- name: Layer 00's deploy key, then the role
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The deploy key in the store
      turnkey.cluster.persistent_secret:
        name: flux_deploy_key
        type: ssh_ed25519
        comment: flux@lab
        store_path: "{{ secrets_store.path }}"
        vault_password_env: TURNKEY_VAULT_PASSWORD
    - name: Publish
      ansible.builtin.include_role:
        name: turnkey.cluster.gitops_publish
    - name: Revision
      ansible.builtin.debug:
        var: gitops_publish_revision
"""


def test_the_role_publishes_with_the_layer_00_key_the_lab_registers(git_lab, tmp_path):
    repo = "test/role.git"
    url = git_lab.repository(repo)
    src = write_tree(tmp_path / "tree", TREE)
    playbook = tmp_path / "role.yml"
    playbook.write_text(ROLE_PLAY)
    variables = {
        "cluster_name": "lab", "cluster_domain": "lab.turnkey.test",
        "gitops": {"url": url, "branch": "main", "path": "k8s"},
        "secrets_store": {"path": str(tmp_path / "secrets"), "vault_password_env": "TURNKEY_VAULT_PASSWORD"},
        "gitops_publish_src": str(src), "gitops_publish_state_dir": str(tmp_path / "state"),
        # As inventory/lab does: the public key goes to the lab Git host's read-write deploy keys.
        "gitops_publish_public_key_file": str(git_lab.server.keys_dir / repo / "read-write" / "flux-lab.pub"),
        "gitops_publish_host_key": git_lab.endpoint["host_key"],
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    env = {"TURNKEY_VAULT_PASSWORD": TEST_VAULT_PASSWORD}

    def run(*extra):
        process = run_playbook("-i", "localhost,", "-c", "local", "-e", f"@{tmp_path / 'vars.json'}", *extra,
                               playbook=str(playbook), json_output=True, env=env)
        return process, task_result(process.stdout, "turnkey.cluster.gitops_publish : Commit and push the "
                                                    "platform tree into the GitOps repository")

    process, first = run()
    assert not first.get("failed"), first.get("msg") or process.stdout[-3000:]
    head = git_lab.git(repo, "rev-parse", "main").strip()
    assert first["revision"] == f"main@sha1:{head}"
    assert git_lab.log(repo) == ["turnkey.cluster: publish the platform tree of lab|turnkey.cluster "
                                 "<turnkey@lab.turnkey.test>"]
    revision = task_result(process.stdout, "Revision")
    assert revision["gitops_publish_revision"] == first["revision"]

    process, again = run()
    assert not again.get("failed") and again["changed"] is False

    (src / "cilium" / "lb-pools.yaml").write_text(TREE["cilium/lb-pools.yaml"].replace("127.2.3.2", "127.2.3.7"))
    process, checked = run("--check", "--diff")
    assert checked["changed"] is True and checked["files"]["modified"] == ["k8s/cilium/lb-pools.yaml"]
    assert len(git_lab.log(repo)) == 1
    process, changed = run()
    assert changed["changed"] is True and len(git_lab.log(repo)) == 2
    assert "127.2.3.7" in git_lab.show(repo, "k8s/cilium/lb-pools.yaml")
    # The private key never shows in the output.
    stored = open_store(tmp_path / "secrets", TEST_VAULT_PASSWORD).read("flux_deploy_key")["data"]["private_key"]
    body = max(stored.splitlines(), key=len)
    assert body not in process.stdout + process.stderr


ROLE_ONLY = """
- name: The role alone
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Publish
      ansible.builtin.include_role:
        name: turnkey.cluster.gitops_publish
"""


def test_the_role_without_the_layer_00_key_stops_and_check_mode_says_so(git_lab, tmp_path):
    url = git_lab.repository("test/no-key.git")
    playbook = tmp_path / "role-only.yml"
    playbook.write_text(ROLE_ONLY)
    variables = {"cluster_name": "lab", "cluster_domain": "lab.turnkey.test",
                 "gitops": {"url": url, "branch": "main", "path": "k8s"},
                 "secrets_store": {"path": str(tmp_path / "secrets"), "vault_password_env": "TURNKEY_VAULT_PASSWORD"},
                 "gitops_publish_src": str(write_tree(tmp_path / "tree", TREE)),
                 "gitops_publish_state_dir": str(tmp_path / "state")}
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    env = {"TURNKEY_VAULT_PASSWORD": TEST_VAULT_PASSWORD}
    missing = "turnkey.cluster.gitops_publish : Stop when the deploy key is missing"

    process = run_playbook("-i", "localhost,", "-c", "local", "-e", f"@{tmp_path / 'vars.json'}",
                           playbook=str(playbook), json_output=True, env=env)
    stopped = task_result(process.stdout, missing)
    assert stopped.get("failed") and "run layer 00 first" in stopped["msg"]

    # --check before layer 00 ever ran: nothing to check access with, so nothing is published, no failure.
    process = run_playbook("-i", "localhost,", "-c", "local", "-e", f"@{tmp_path / 'vars.json'}", "--check",
                           playbook=str(playbook), json_output=True, env=env)
    assert process.returncode == 0, process.stdout[-3000:]
    skipped = task_result(process.stdout, "turnkey.cluster.gitops_publish : Commit and push the platform tree "
                                          "into the GitOps repository")
    assert skipped.get("skipped")
    assert git_lab.log("test/no-key.git") == []
