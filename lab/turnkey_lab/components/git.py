"""A Git host over SSH: Debian's real `sshd` (openssh-server) and `git-shell`, serving bare repositories to
deploy keys, as GitHub or Gitea do.

- sshd runs as the current user on <net>.0.5:2222 (not 22: a system sshd on 0.0.0.0:22 would take it, and
  only root may bind it). A non-root sshd can only log in its own user, so the lab's URLs carry that user
  (`ssh://<user>@<ip>:2222/<repo>`); `endpoints.json` publishes them and the host key.
- Deploy keys are files: `deploy-keys/<repo>/read-write/<title>.pub` or `.../read-only/<title>.pub`.
  sshd asks `keys.sh` (its AuthorizedKeysCommand) on every login, so a key registered by writing its file
  works at once, and a removed one is refused at once. Each key is forced into `shell.sh` with `restrict`
  (no pty, no forwarding): it reaches its own repository only, a read-only key only `git-upload-pack`
  and `git-upload-archive`, and everything ends in `git-shell`.
- An unknown key gets `Permission denied (publickey)`; a read-only key that pushes, a key used for another
  repository, or a login asking for a shell get the messages GitHub gives.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
from pathlib import Path

from ..state import LabError, write_file
from .base import Component, Health

SSHD = "/usr/sbin/sshd"
PROBE_TIMEOUT = 2
# The repositories the lab's Git host has, like ones made in a Git host's web UI: the lab spec's GitOps
# repository (inventory/lab: gitops.url).
REPOSITORIES = ("turnkey/cluster.git",)
ACCESS = ("read-only", "read-write")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*\.git$")
_TITLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
_PUBLIC_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\n]*)?$")
# The paths go into sshd's config and authorized_keys options unquoted beyond "...": keep them plain.
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9/._+-]+$")

# sshd's AuthorizedKeysCommand (run by /bin/sh, which sshd accepts as a root-owned program). One line per
# registered deploy key: the key, forced into shell.sh for its repository and access, with no pty and no
# forwarding. Only the first line of a key file counts, and only if it looks like a public key.
KEYS_SCRIPT = r"""#!/bin/sh
# Written by the lab (components/git.py): prints authorized_keys lines for every registered deploy key.
keys=$1 shell=$2 repos=$3
cd "$keys" 2>/dev/null || exit 0
find . -mindepth 3 -type f -name '*.pub' | LC_ALL=C sort | while IFS= read -r file; do
  dir=${file%/*}; access=${dir##*/}; repo=${dir%/*}; repo=${repo#./}
  case $access in read-only|read-write) ;; *) continue ;; esac
  title=${file##*/}; title=${title%.pub}
  key=$(head -n 1 "$file" | tr -d '\r')
  case $key in ssh-ed25519\ *|ssh-rsa\ *|ecdsa-sha2-*\ *) ;; *) continue ;; esac
  printf 'command="/bin/sh %s %s %s %s %s",restrict %s\n' "$shell" "$repos" "$repo" "$access" "$title" "$key"
done
"""

# The forced command of every deploy key: what a Git host lets a deploy key do, then git-shell.
SHELL_SCRIPT = r"""#!/bin/sh
# Written by the lab (components/git.py): the forced command of a deploy key. $1 the repositories' folder,
# $2 the key's repository, $3 read-only|read-write, $4 the key's title.
repos=$1 repo=$2 access=$3 title=$4
cmd=${SSH_ORIGINAL_COMMAND:-}
case $cmd in
  "")
    echo "Hi $title! You've successfully authenticated with a deploy key of $repo," \
      "but this Git host does not provide shell access." >&2
    exit 1 ;;
  "git-upload-pack "*|"git-upload-archive "*) verb=${cmd%% *}; write=no ;;
  "git-receive-pack "*) verb=git-receive-pack; write=yes ;;
  *) echo "ERROR: Unknown command: $cmd" >&2; exit 1 ;;
esac
path=${cmd#* }
path=${path#\'}; path=${path%\'}; path=${path#/}; path=${path#\~/}
case $path in *.git) ;; *) path=$path.git ;; esac
if [ "$path" != "$repo" ] || [ ! -d "$repos/$repo" ]; then
  printf '%s\n' "ERROR: Repository not found." >&2
  exit 1
fi
if [ "$write" = yes ] && [ "$access" != read-write ]; then
  printf '%s\n' "ERROR: The key you are authenticating with has been marked as read only." >&2
  exit 1
fi
cd "$repos" || exit 1
exec git-shell -c "$verb '$repo'"
"""


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def host_public_key(data_dir: Path) -> str:
    """The Git host's public host key (`ssh-ed25519 AAAA...`), for known_hosts."""
    key = data_dir / "ssh_host_ed25519_key.pub"
    return " ".join(key.read_text().split()[:2]) if key.is_file() else ""


def repository_dir(lab_components: Path, repo: str) -> Path:
    return lab_components / "git" / "repos" / repo


def _check_repo(repo: str) -> str:
    if not _REPO.match(repo) or ".." in repo.split("/"):
        raise LabError(f"git: {repo!r} is not a repository name like owner/name.git")
    return repo


def create_repository(component: GitServer, repo: str) -> Path:
    """A new, empty bare repository whose default branch is main (what a Git host makes). Idempotent."""
    path = component.repos_dir / _check_repo(repo)
    if not (path / "HEAD").is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(path)],
                       check=True, capture_output=True, timeout=30)
    return path


def register_deploy_key(component: GitServer, repo: str, public_key: str, *, read_only: bool,
                        title: str = "deploy") -> Path:
    """Registers a deploy key for one repository, as an operator does in a Git host's settings. It is
    accepted from the next login on. Returns the key's file (deleting it revokes the key)."""
    _check_repo(repo)
    key = public_key.strip()
    if not _PUBLIC_KEY.match(key) or "\n" in key:
        raise LabError("git: not an OpenSSH public key (one line: type, base64 key, optional comment)")
    if not _TITLE.match(title):
        raise LabError(f"git: deploy key title {title!r} must be letters, digits and ._@-")
    path = component.keys_dir / repo / ACCESS[not read_only] / f"{title}.pub"
    write_file(path, key + "\n", 0o644)
    return path


class GitServer(Component):
    name = "git"
    host = "0.5"
    port = 2222
    scheme = "ssh"
    startup_timeout = 30.0

    # -- where things are ---------------------------------------------------------------------------
    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "deploy-keys"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.data_dir / "ssh_host_ed25519_key"

    @property
    def user(self) -> str:
        return current_user()

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.ip}:{self.port}"

    def repo_url(self, repo: str) -> str:
        return f"{self.url}/{repo}"

    # -- hooks --------------------------------------------------------------------------------------
    def prepare(self) -> None:
        # No TLS certificate: SSH brings its own host key.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        missing = [tool for tool in (SSHD, "git", "git-shell", "ssh-keygen") if not shutil.which(tool)]
        if missing:
            raise LabError(f"git: {', '.join(missing)} not found; install Debian's openssh-server and git "
                           "(`make venv` does: apt-get install -y openssh-server git)")
        if not _PLAIN_PATH.match(str(self.data_dir)):
            raise LabError(f"git: the lab's state folder {self.data_dir} must be a plain path (letters, "
                           "digits, ./_+-): sshd's config and forced commands carry it")
        if os.geteuid() == 0:
            # A root sshd separates privileges into an empty chroot, which the ssh service normally makes.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        if not self.host_key.is_file():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"lab-git@{self.ip}",
                            "-f", str(self.host_key)], check=True, capture_output=True, timeout=30)
        self.repos_dir.mkdir(exist_ok=True)
        self.keys_dir.mkdir(exist_ok=True)
        for repo in REPOSITORIES:
            create_repository(self, repo)
        write_file(self.data_dir / "keys.sh", KEYS_SCRIPT, 0o700)
        write_file(self.data_dir / "shell.sh", SHELL_SCRIPT, 0o700)
        write_file(self.config_file, self._config(), 0o600)

    def _config(self) -> str:
        data = self.data_dir
        return "\n".join((
            "# Written by the lab (components/git.py); rewritten on every `lab up`.",
            f"ListenAddress {self.ip}:{self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {data}/sshd.pid",
            # Deploy keys only: from keys.sh, asked on every login; no authorized_keys file, no passwords.
            "AuthorizedKeysFile none",
            f"AuthorizedKeysCommand /bin/sh {data}/keys.sh {self.keys_dir} {data}/shell.sh {self.repos_dir}",
            f"AuthorizedKeysCommandUser {self.user}",
            f"AllowUsers {self.user}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            # The state folder may sit under /tmp (sticky, world-writable), which StrictModes rejects.
            "StrictModes no",
            "AcceptEnv GIT_PROTOCOL",
            "PermitTTY no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitTunnel no",
            "PrintMotd no",
            "LogLevel VERBOSE",
            "",
        ))

    def command(self) -> list[str]:
        # -D: stay in the foreground for the supervisor; -e: log to stderr (the component's log file).
        return [SSHD, "-D", "-e", "-f", str(self.config_file)]

    def health(self) -> Health:
        try:
            with socket.create_connection((self.ip, self.port), timeout=PROBE_TIMEOUT) as conn:
                conn.settimeout(PROBE_TIMEOUT)
                banner = conn.recv(256).decode(errors="replace").strip()
                # Our own identification, so sshd logs a closed connection, not a failed key exchange.
                conn.sendall(b"SSH-2.0-turnkey-lab-probe\r\n")
        except OSError as exc:
            return Health(False, f"unreachable ({type(exc).__name__})")
        if not banner.startswith("SSH-2.0-"):
            return Health(False, f"not an SSH server: {banner[:40]!r}")
        keys = sum(1 for _ in self.keys_dir.glob("**/*.pub"))
        return Health(True, f"{banner.split('-', 2)[2]}; repositories: {len(REPOSITORIES)}, deploy keys: {keys}")

    def endpoint(self) -> dict:
        return {**super().endpoint(), "user": self.user, "host_key": host_public_key(self.data_dir),
                "repositories": {repo: self.repo_url(repo) for repo in REPOSITORIES},
                "deploy_keys_dir": str(self.keys_dir)}
