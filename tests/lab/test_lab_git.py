"""The lab's Git host (component `git`): Debian's real sshd and git-shell, deploy keys kept as a Git host
keeps them. As harsh as one: an unknown key is refused, a read-only key cannot push, a key opens its own
repository only, and nobody gets a shell."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.lab.conftest import wait_for

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

NET = "127.101"


def keypair(folder: Path, name: str) -> tuple[Path, str]:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key, (folder / f"{name}.pub").read_text().strip()


def git(key: Path, known_hosts: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real git client over ssh with exactly this key (no agent, no user config)."""
    ssh = (f"ssh -F none -i {key} -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes "
           f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes")
    env = {**os.environ, "GIT_SSH_COMMAND": ssh, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_git_host_deploy_keys(make_lab, tmp_path):
    from turnkey_lab.components.git import GitServer, create_repository, register_deploy_key  # noqa: PLC0415
    from turnkey_lab.state import Lab  # noqa: PLC0415

    lab = make_lab(NET)
    lab.run("up", "--components", "git", "--profile", "fast")
    endpoint = lab.json("endpoints.json")["components"]["git"]
    server = GitServer(Lab.at(lab.root, NET))
    url = endpoint["repositories"]["turnkey/cluster.git"]
    assert url == f"ssh://{endpoint['user']}@{NET}.0.5:2222/turnkey/cluster.git"
    # The host key the lab publishes is the one sshd presents: pinned, nothing accepted blindly.
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{NET}.0.5]:2222 {endpoint['host_key']}\n")

    rw_key, rw_public = keypair(tmp_path, "flux-rw")
    ro_key, ro_public = keypair(tmp_path, "flux-ro")
    stranger = keypair(tmp_path, "stranger")[0]
    rw_file = register_deploy_key(server, "turnkey/cluster.git", rw_public, read_only=False, title="flux-rw")
    register_deploy_key(server, "turnkey/cluster.git", ro_public, read_only=True, title="flux-ro")
    create_repository(server, "other/repo.git")

    # An unknown key: refused by sshd itself.
    answer = git(stranger, known_hosts, "ls-remote", url)
    assert answer.returncode != 0 and "Permission denied (publickey)" in answer.stderr

    # The read-write key pushes; the new, empty repository's default branch is main.
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "a.yaml").write_text("a: 1\n")
    subprocess.run(["git", "-C", str(work), "add", "a.yaml"], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "one"],
                   check=True)
    pushed = git(rw_key, known_hosts, "push", url, "HEAD:main", cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    head = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()

    # The read-only key reads (ls-remote, clone) ...
    listed = git(ro_key, known_hosts, "ls-remote", url)
    assert f"{head}\trefs/heads/main" in listed.stdout, listed.stderr
    clone = git(ro_key, known_hosts, "clone", "-q", url, str(tmp_path / "clone"))
    assert clone.returncode == 0 and (tmp_path / "clone" / "a.yaml").read_text() == "a: 1\n"
    # ... and cannot push, with the Git host's message; the repository keeps its history.
    (work / "b.yaml").write_text("b: 2\n")
    subprocess.run(["git", "-C", str(work), "add", "b.yaml"], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "two"],
                   check=True)
    refused = git(ro_key, known_hosts, "push", url, "HEAD:main", cwd=work)
    assert refused.returncode != 0 and "marked as read only" in refused.stderr
    bare = server.repos_dir / "turnkey/cluster.git"
    assert subprocess.run(["git", "--git-dir", str(bare), "rev-parse", "main"], capture_output=True, text=True,
                          check=True).stdout.strip() == head

    # A deploy key opens its own repository only, and gives no shell.
    other = git(rw_key, known_hosts, "ls-remote", url.replace("turnkey/cluster.git", "other/repo.git"))
    assert other.returncode != 0 and "Repository not found" in other.stderr
    shell = subprocess.run(["ssh", "-F", "none", "-i", str(rw_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                            "-o", f"UserKnownHostsFile={known_hosts}", "-p", "2222",
                            f"{endpoint['user']}@{NET}.0.5"], capture_output=True, text=True, timeout=60,
                           check=False, stdin=subprocess.DEVNULL)
    assert shell.returncode != 0 and "does not provide shell access" in shell.stderr

    # Removing the key's file revokes it at once (sshd asks on every login).
    rw_file.unlink()
    revoked = git(rw_key, known_hosts, "ls-remote", url)
    assert revoked.returncode != 0 and "Permission denied (publickey)" in revoked.stderr

    # A restart keeps the host key and the repositories (a Git host does not change its identity).
    lab.run("down")
    lab.run("up", "--components", "git", "--profile", "fast")
    assert lab.json("endpoints.json")["components"]["git"]["host_key"] == endpoint["host_key"]
    wait_for(lambda: lab.status()["components"]["git"]["healthy"], timeout=30)
    assert f"{head}\trefs/heads/main" in git(ro_key, known_hosts, "ls-remote", url).stdout
