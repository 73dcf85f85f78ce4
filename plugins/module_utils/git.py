# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared code for Git over SSH with a deploy key: the git CLI with argument lists, ssh told exactly which
key and which known_hosts to use, and the Git host's refusals turned into messages an operator can act on.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.turnkey.cluster.plugins.module_utils.private_files import write_private_file

# Seconds one git command may take (a clone of a large repository over a slow link is the long one).
DEFAULT_TIMEOUT = 300

# What the Git hosts answer, classified. The texts come from OpenSSH, git, GitHub, GitLab and Gitea.
KEY_REJECTED = "key_rejected"
HOST_KEY = "host_key"
READ_ONLY = "read_only"
NOT_FOUND = "not_found"
UNREACHABLE = "unreachable"
NON_FAST_FORWARD = "non_fast_forward"
OTHER = "other"
_PATTERNS = (
    (HOST_KEY, ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED",
                "No ED25519 host key is known", "host key for", "HOST KEY")),
    (KEY_REJECTED, ("Permission denied (publickey", "Permission denied, please try again",
                    "Too many authentication failures")),
    (READ_ONLY, ("marked as read only", "not allowed to push", "does not have write access",
                 "write access to repository not granted", "deploy key is not allowed to push")),
    (NOT_FOUND, ("Repository not found", "does not appear to be a git repository", "repository not found",
                 "could not be found", "not a git repository")),
    (UNREACHABLE, ("Connection refused", "Could not resolve hostname", "Connection timed out",
                   "No route to host", "Network is unreachable", "Operation timed out",
                   "Connection closed by", "kex_exchange_identification")),
    (NON_FAST_FORWARD, ("[rejected]", "non-fast-forward", "fetch first", "stale info", "cannot lock ref",
                        "failed to update ref")),
)


class GitError(Exception):
    """A git command failed; kind says how (one of the constants above)."""

    def __init__(self, message, kind=OTHER, stderr=""):
        super().__init__(message)
        self.kind = kind
        self.stderr = stderr


def classify(output):
    for kind, needles in _PATTERNS:
        if any(needle in output for needle in needles):
            return kind
    return OTHER


def parse_url(url):
    """(user, host, port) of an ssh:// URL or an scp-like user@host:path; port None means 22."""
    match = re.match(r"^ssh://(?:([^@/]+)@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?/", url)
    if match:
        return match.group(1), match.group(2).strip("[]"), int(match.group(3)) if match.group(3) else None
    match = re.match(r"^(?:([^@/]+)@)?([^:/]+):(?!//)", url)
    if match:
        return match.group(1), match.group(2), None
    raise GitError("%s is not an SSH Git URL (ssh://git@host[:port]/path or git@host:path)" % url)


def known_hosts_name(host, port):
    """The host as known_hosts writes it: plain on port 22, [host]:port otherwise."""
    return host if port in (None, 22) else "[%s]:%d" % (host, port)


def pinned_known_hosts(host, port, host_keys):
    """known_hosts lines for pinned host keys given as `type base64` (or whole known_hosts lines)."""
    lines = []
    for line in to_text(host_keys).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if fields[0].startswith(("ssh-", "ecdsa-", "sk-")):
            lines.append("%s %s %s" % (known_hosts_name(host, port), fields[0], fields[1]))
        else:
            lines.append(line)
    if not lines:
        raise GitError("the pinned host key is empty")
    return "\n".join(lines) + "\n"


def blob_id(data, algorithm="sha1"):
    """The object id git gives a file with this content."""
    digest = hashlib.new(algorithm)
    digest.update(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def read_tree(folder):
    """{relative posix path: (mode, bytes)} of every file under folder (symlinks followed, .git skipped)."""
    files = {}
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(names):
            full = os.path.join(root, name)
            if not os.path.isfile(full):
                continue
            relative = os.path.relpath(full, folder).replace(os.sep, "/")
            with open(full, "rb") as handle:
                data = handle.read()
            files[relative] = ("100755" if os.stat(full).st_mode & 0o111 else "100644", data)
    return files


class GitSsh:
    """The git CLI over SSH with one private key, per-cluster known_hosts and no agent or user config.

    Use as a context manager: the key is written 0600 into a private temporary folder and removed on exit.
    """

    def __init__(self, url, private_key, known_hosts_file, host_key=None, timeout=DEFAULT_TIMEOUT,
                 git_path="git", ssh_path="ssh", ssh_keygen_path="ssh-keygen"):
        self.url = url
        self.user, self.host, self.port = parse_url(url)
        self.private_key = private_key
        self.known_hosts_file = known_hosts_file
        self.host_key = host_key
        self.timeout = timeout
        self.git = shutil.which(git_path) or git_path
        self.ssh = shutil.which(ssh_path) or ssh_path
        self.ssh_keygen = shutil.which(ssh_keygen_path) or ssh_keygen_path
        self.folder = None
        self.public_key = None

    @property
    def where(self):
        return "%s:%d" % (self.host, self.port or 22)

    def __enter__(self):
        self.folder = tempfile.mkdtemp(prefix="turnkey-git-")
        key_file = os.path.join(self.folder, "deploy_key")
        key = to_text(self.private_key).strip() + "\n"
        write_private_file(key_file, key)
        answer = self._run([self.ssh_keygen, "-y", "-P", "", "-f", key_file], None, os.environ.copy())
        if answer.returncode != 0:
            raise GitError("the deploy key is not an OpenSSH private key without a passphrase (ssh-keygen -y: %s)"
                           % to_text(answer.stderr).strip())
        self.public_key = to_text(answer.stdout).strip()
        if self.host_key:
            known_hosts = os.path.join(self.folder, "known_hosts")
            write_private_file(known_hosts, pinned_known_hosts(self.host, self.port, self.host_key))
            checking = "yes"
        else:
            known_hosts = self.known_hosts_file
            os.makedirs(os.path.dirname(os.path.abspath(known_hosts)), mode=0o700, exist_ok=True)
            checking = "accept-new"
        ssh = [self.ssh, "-F", "none", "-i", key_file, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
               "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=%s" % known_hosts,
               "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=%s" % checking,
               "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SSH_AUTH_SOCK"))}
        self.env.update({
            "GIT_SSH_COMMAND": " ".join(shlex.quote(arg) for arg in ssh),
            "GIT_TERMINAL_PROMPT": "0",
            # The user's and the system's git config (url rewrites, signing, hooks paths) stay out of it.
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "LC_ALL": "C",
        })
        return self

    def __exit__(self, *exc):
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        return False

    def known_hosts(self):
        """The host's lines of the known_hosts in use (pinned, or the per-cluster file), for Flux."""
        if self.host_key:
            return pinned_known_hosts(self.host, self.port, self.host_key)
        name = known_hosts_name(self.host, self.port)
        try:
            with open(self.known_hosts_file) as handle:
                return "".join(line for line in handle if line.split(" ", 1)[0] == name)
        except OSError:
            return ""

    def _run(self, argv, cwd, env, stdin=None):
        try:
            return subprocess.run(argv, cwd=cwd, env=env, input=stdin, capture_output=True,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise GitError("%s took longer than %d s" % (" ".join(argv[:3]), self.timeout), UNREACHABLE) from None
        except OSError as exc:
            raise GitError("cannot run %s: %s" % (argv[0], exc)) from None

    def run(self, *args, cwd=None, check=True, binary=False, extra_env=None):
        """`git <args>`; stdout as text (bytes with binary=True). A failure raises GitError with its kind."""
        env = dict(self.env, **(extra_env or {}))
        answer = self._run([self.git, *args], cwd, env)
        if check and answer.returncode != 0:
            output = to_text(answer.stderr) + to_text(answer.stdout)
            raise GitError("git %s failed: %s" % (args[0], output.strip()), classify(output), output.strip())
        return answer.stdout if binary else to_text(answer.stdout)

    def ls_remote(self, branch):
        """The commit the remote's branch points at, or None when the branch (or every branch) is absent."""
        out = self.run("ls-remote", "--", self.url, "refs/heads/%s" % branch)
        for line in out.splitlines():
            sha, _sep, ref = line.partition("\t")
            if ref == "refs/heads/%s" % branch:
                return sha
        return None


def blob(git, repo, sha):
    return git.run("cat-file", "blob", sha, cwd=repo, binary=True)


def text_or_none(data):
    try:
        return to_text(data, errors="strict")
    except UnicodeDecodeError:
        return None


def file_diff(path, before, after):
    """One entry of Ansible's diff list (before/after text), or a note for binary files."""
    old, new = text_or_none(before or b""), text_or_none(after or b"")
    if old is None or new is None:
        return {"prepared": "Binary file %s differs\n" % path}
    return {"before_header": "a/%s" % path if before is not None else "/dev/null",
            "after_header": "b/%s" % path if after is not None else "/dev/null",
            "before": old, "after": new}
