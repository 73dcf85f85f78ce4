#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: gitops_publish
short_description: Commit and push a rendered tree into a GitOps repository over SSH with a deploy key
version_added: 0.1.0
description:
  - Publishes the files of O(src) at O(path) of O(branch) in the Git repository O(repo_url), so that Flux
    reconciles exactly what the play rendered. The play commits and pushes; nothing is left for the
    operator to push.
  - First the access check, C(git ls-remote) with O(private_key). A key the Git host does not accept stops
    the run with the public key and where to register it. Read access is enough for Flux; the push of this
    module needs write access, and a refused push says so.
  - It keeps a working clone in O(work_dir). A working tree with uncommitted changes, or with commits the
    remote branch does not have, is refused before anything is pushed, naming the files or commits.
  - O(path) becomes a copy of O(src) (files that are not in O(src) are removed from it); the rest of the
    repository is left alone. When O(path) already holds exactly O(src), nothing is committed or pushed.
  - If the branch moves on the Git host between the fetch and the push, the commit is made again on the new
    head (three attempts). A push that fails leaves the working clone as it was before the run.
  - Uses the git CLI with argument lists; ssh gets only O(private_key) (written 0600 into a private
    temporary folder, removed afterwards), no agent and no user ssh or git configuration.
author: turnkey.cluster maintainers (!UNKNOWN)
options:
  repo_url:
    description: The repository, C(ssh://user@host[:port]/path) or C(user@host:path).
    type: str
    required: true
  branch:
    description: The branch Flux follows.
    type: str
    default: main
  path:
    description: Folder inside the repository that holds the tree (C(gitops.path)); relative, no C(..).
    type: str
    required: true
  src:
    description: The rendered tree to publish (a folder).
    type: path
    required: true
  private_key:
    description: The OpenSSH private key of the deploy key (the layer 00 C(flux_deploy_key)).
    type: str
    required: true
  work_dir:
    description:
      - The working clone (made when missing or empty). An existing one must be a clone of O(repo_url) on
        O(branch).
    type: path
    required: true
  known_hosts_file:
    description:
      - The cluster's own known_hosts. The Git host's key is accepted the first time
        (C(StrictHostKeyChecking=accept-new)) and must match from then on.
      - Default C(known_hosts) in the folder of O(work_dir).
    type: path
  host_key:
    description:
      - Pinned host key(s) of the Git host, C(type base64) one per line (or whole known_hosts lines). When
        given, only these keys are accepted (C(StrictHostKeyChecking=yes)) and O(known_hosts_file) is not
        used.
    type: str
  commit_message:
    description: The commit message.
    type: str
    default: Publish the platform tree
  author_name:
    description: Author and committer name of the commit.
    type: str
    default: turnkey.cluster
  author_email:
    description: Author and committer e-mail of the commit.
    type: str
    default: turnkey@localhost
  timeout:
    description: Seconds one git command may take.
    type: int
    default: 300
attributes:
  check_mode:
    support: full
    description:
      - Checks access, the working tree and the remote branch, and reports what would change; commits and
        pushes nothing and never writes the working tree. An existing clone fetches the remote branch (its
        remote-tracking ref is updated); a missing one is fetched into a temporary folder.
      - Check mode does not prove write access (only a push does).
  diff_mode:
    support: full
    description: Each changed file, before (the remote branch) and after (O(src)).
notes:
  - Needs C(git) and the OpenSSH client (C(ssh), C(ssh-keygen)) on the controller.
"""

EXAMPLES = r"""
- name: Publish the platform tree
  turnkey.cluster.gitops_publish:
    repo_url: ssh://git@github.com/example/cluster.git
    branch: main
    path: k8s
    src: "{{ platform_tree_dest }}"
    private_key: "{{ lookup('turnkey.cluster.persistent_secret', 'flux_deploy_key', field='private_key',
                    store_path=secrets_store.path, vault_password_file=secrets_store.vault_password_file) }}"
    work_dir: "{{ inventory_dir }}/.state/gitops/repo"
    commit_message: "turnkey: platform tree for {{ cluster_name }}"
  register: published
"""

RETURN = r"""
revision:
  description:
    - What the branch holds after the run, as Flux reports it (C(<branch>@sha1:<commit>)).
    - Empty when the branch does not exist (check mode on an empty repository).
  returned: always
  type: str
  sample: main@sha1:2aa5fb8cf4e0612165b919837d3762c3990489d9
commit:
  description: The commit the branch points at after the run (in check mode, before it).
  returned: always
  type: str
previous:
  description: The commit the branch pointed at before the run; empty when it did not exist.
  returned: always
  type: str
files:
  description: Repository paths added, modified and deleted (or that would be, in check mode).
  returned: always
  type: dict
  contains:
    added:
      description: New files.
      type: list
      elements: str
    modified:
      description: Files whose content or mode changed.
      type: list
      elements: str
    deleted:
      description: Files removed from O(path).
      type: list
      elements: str
public_key:
  description: The deploy key's public key (register it at the Git host).
  returned: always
  type: str
known_hosts:
  description: The Git host's known_hosts lines the run trusted (for Flux's C(known_hosts)).
  returned: always
  type: str
attempts:
  description: How many times the commit was made (more than 1 when the branch moved during the run).
  returned: always
  type: int
"""

import fcntl
import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils import git as gitlib

ATTEMPTS = 3
REGISTER_HINT = ("GitHub: the repository's Settings > Deploy keys > Add deploy key; GitLab: Settings > "
                 "Repository > Deploy keys; Gitea/Forgejo: Settings > Deploy keys")


class Refused(Exception):
    """The run stops here with this message, before anything is pushed."""


def access_message(git, exc, params):
    """The access check failed: say why and what to do, by the kind of failure."""
    url, where = params["repo_url"], git.where
    if exc.kind == gitlib.KEY_REJECTED:
        return ("The Git host %s does not accept the deploy key for %s. Register this public key as a deploy key "
                "of that repository (%s):\n\n    %s\n\nRead access is enough for Flux to pull the repository. "
                "Allow write access as well: this play commits and pushes the platform tree to %s:%s with the "
                "same key. Then run again; nothing was pushed." % (where, url, REGISTER_HINT, git.public_key,
                                                                   params["branch"], params["path"]))
    if exc.kind == gitlib.HOST_KEY:
        pinned = "the pinned host key (host_key)" if params["host_key"] else git.known_hosts_file
        return ("The SSH host key of %s does not match %s. If the Git host's key changed on purpose, remove "
                "its old line (ssh-keygen -R '%s' -f %s) or update the pin; otherwise the connection may be "
                "intercepted. Nothing was pushed. (%s)" % (where, pinned, gitlib.known_hosts_name(git.host, git.port),
                                                           git.known_hosts_file, exc.stderr))
    if exc.kind == gitlib.NOT_FOUND:
        return ("The Git host %s accepted the deploy key but has no repository %s for it (%s). Check gitops.url, "
                "and that the key is registered on this repository: a deploy key opens one repository only. "
                "Nothing was pushed." % (where, url, exc.stderr))
    if exc.kind == gitlib.UNREACHABLE:
        return "Cannot reach the Git host %s for %s: %s. Nothing was pushed." % (where, url, exc.stderr or exc)
    return "The access check (git ls-remote %s) failed: %s. Nothing was pushed." % (url, exc.stderr or exc)


def push_message(git, exc, params, base):
    back = "the working clone is back at %s" % (base[:12] if base else "an empty branch")
    if exc.kind == gitlib.READ_ONLY:
        return ("The Git host %s let the deploy key read %s but refused the push (%s). Flux needs only read "
                "access, but this play publishes the platform tree by pushing to %s with this key: give the "
                "deploy key write access at the Git host (GitHub: 'Allow write access'), then run again. "
                "The key:\n\n    %s\n\nNothing was pushed; %s."
                % (git.where, params["repo_url"], exc.stderr, params["branch"], git.public_key, back))
    return "The push to %s failed: %s. Nothing was pushed; %s." % (params["repo_url"], exc.stderr or exc, back)


class Clone:
    """The working clone: checks that refuse a dirty or unpushed tree, and the sync of one folder in it."""

    def __init__(self, git, folder, params):
        self.git = git
        self.folder = folder
        self.params = params
        self.branch = params["branch"]
        self.remote_ref = "refs/remotes/origin/%s" % self.branch

    def run(self, *args, **kwargs):
        kwargs.setdefault("cwd", self.folder)
        return self.git.run(*args, **kwargs)

    def init(self):
        self.run("init", "--quiet", "--initial-branch=%s" % self.branch, self.folder, cwd=None)
        self.run("remote", "add", "origin", self.params["repo_url"])

    def check_existing(self):
        """An existing clone: of the right repository, on the branch, with a clean tree."""
        top = self.run("rev-parse", "--show-toplevel", check=False).strip()
        if os.path.realpath(top or "/nonexistent") != os.path.realpath(self.folder):
            raise Refused("%s is not empty and not the top of a Git working tree; point work_dir at a clone "
                          "of %s or at a missing or empty folder" % (self.folder, self.params["repo_url"]))
        origin = self.run("config", "--get", "remote.origin.url", check=False).strip()
        if origin != self.params["repo_url"]:
            raise Refused("The GitOps working tree %s is a clone of %s, not of %s (gitops.url); nothing was "
                          "pushed. Point work_dir elsewhere, or set its origin (git -C %s remote set-url origin "
                          "%s)." % (self.folder, origin or "(no origin)", self.params["repo_url"], self.folder,
                                    self.params["repo_url"]))
        head = self.run("symbolic-ref", "--quiet", "HEAD", check=False).strip()
        if head != "refs/heads/%s" % self.branch:
            raise Refused("The GitOps working tree %s is on %s, not on branch %s; nothing was pushed. Switch it "
                          "back (git -C %s switch %s)." % (self.folder, head or "a detached HEAD", self.branch,
                                                           self.folder, self.branch))
        # --no-optional-locks: a status must not write the index (check mode writes nothing).
        status = self.run("--no-optional-locks", "status", "--porcelain=v1", "--untracked-files=all")
        if status.strip():
            raise Refused("The GitOps working tree %s has uncommitted changes; nothing was pushed. Commit and "
                          "push them, or discard them, then run again:\n%s"
                          % (self.folder, "\n".join("  " + line for line in status.rstrip().splitlines())))

    def fetch(self, remote_sha):
        """The remote branch into origin/<branch>; returns the fetched commit (None: no such branch)."""
        if remote_sha is None:
            if self.run("rev-parse", "--quiet", "--verify", self.remote_ref, check=False).strip():
                self.run("update-ref", "-d", self.remote_ref)
            return None
        self.run("fetch", "--quiet", "--no-tags", "origin", "+refs/heads/%s:%s" % (self.branch, self.remote_ref))
        return self.run("rev-parse", self.remote_ref).strip()

    def head(self):
        return self.run("rev-parse", "--quiet", "--verify", "HEAD^{commit}", check=False).strip() or None

    def check_unpushed(self, base):
        head = self.head()
        if head is None:
            return
        if base is None:
            commits = self.run("log", "--format=%h %s", head)
        else:
            commits = self.run("log", "--format=%h %s", head, "--not", base)
        lines = commits.rstrip().splitlines()
        if lines:
            shown = "\n".join("  " + line for line in lines[:10]) + ("\n  ..." if len(lines) > 10 else "")
            raise Refused("The GitOps working tree %s has %d commit(s) on %s that %s does not have; nothing was "
                          "pushed. Push them (git -C %s push origin %s) or drop them (git -C %s reset --hard "
                          "origin/%s), then run again:\n%s"
                          % (self.folder, len(lines), self.branch, self.params["repo_url"], self.folder, self.branch,
                             self.folder, self.branch, shown))

    def plan(self, base, desired):
        """{'added'|'modified'|'deleted': [paths]} between the base commit's folder and the desired files."""
        prefix = self.params["path"].strip("/")
        current = {}
        if base is not None:
            algorithm = self.run("rev-parse", "--show-object-format", check=False).strip() or "sha1"
            listing = self.run("ls-tree", "-r", "-z", "--full-tree", base, "--", prefix)
            for entry in filter(None, listing.split("\0")):
                meta, _tab, name = entry.partition("\t")
                mode, _kind, sha = meta.split()
                current[name] = (mode, sha)
        else:
            algorithm = "sha1"
        wanted = {"%s/%s" % (prefix, name): (mode, gitlib.blob_id(data, algorithm), data)
                  for name, (mode, data) in desired.items()}
        changes = {"added": sorted(set(wanted) - set(current)), "deleted": sorted(set(current) - set(wanted)),
                   "modified": sorted(name for name in set(wanted) & set(current)
                                      if wanted[name][:2] != current[name])}
        return changes, current, wanted

    def diff(self, changes, current, wanted):
        entries = []
        for name in sorted(changes["added"] + changes["modified"] + changes["deleted"]):
            before = gitlib.blob(self.git, self.folder, current[name][1]) if name in current else None
            after = wanted[name][2] if name in wanted else None
            entries.append(gitlib.file_diff(name, before, after))
        return entries

    def commit(self, base, changes, wanted):
        """Work tree at base, the folder made equal to the desired files, one commit. Returns its id."""
        if base is not None:
            self.run("reset", "--quiet", "--hard", base)
        for name in changes["deleted"]:
            os.unlink(os.path.join(self.folder, name))
        for name in changes["added"] + changes["modified"]:
            mode, _sha, data = wanted[name]
            target = os.path.join(self.folder, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as handle:
                handle.write(data)
            os.chmod(target, 0o755 if mode == "100755" else 0o644)
        self.run("add", "--all", "--", self.params["path"].strip("/"))
        who = {"GIT_AUTHOR_NAME": self.params["author_name"], "GIT_AUTHOR_EMAIL": self.params["author_email"],
               "GIT_COMMITTER_NAME": self.params["author_name"],
               "GIT_COMMITTER_EMAIL": self.params["author_email"]}
        self.run("commit", "--quiet", "--no-verify", "-m", self.params["commit_message"], extra_env=who)
        return self.head()

    def roll_back(self, base, changes):
        """Undo the unpushed commit of this run: the clone is as it was before."""
        if base is not None:
            self.run("reset", "--quiet", "--hard", base)
            return
        self.run("update-ref", "-d", "refs/heads/%s" % self.branch)
        self.run("read-tree", "--empty")
        for name in changes["added"]:
            path = os.path.join(self.folder, name)
            if os.path.lexists(path):
                os.unlink(path)
            # And the folders that only held them.
            parent = os.path.dirname(path)
            while parent != self.folder and os.path.isdir(parent) and not os.listdir(parent):
                os.rmdir(parent)
                parent = os.path.dirname(parent)


def lock(work_dir):
    """An exclusive lock next to the clone, so two runs never commit in it at once (dropped on exit)."""
    parent = os.path.dirname(os.path.abspath(work_dir))
    os.makedirs(parent, mode=0o700, exist_ok=True)
    handle = os.open(os.path.join(parent, ".%s.lock" % os.path.basename(work_dir)), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def publish(module, git, params):
    result = {"changed": False, "public_key": git.public_key, "attempts": 0,
              "files": {"added": [], "modified": [], "deleted": []}}
    # (a) Access first: the key must open the repository before anything else happens.
    try:
        remote_sha = git.ls_remote(params["branch"])
    except gitlib.GitError as exc:
        raise Refused(access_message(git, exc, params)) from None
    result["known_hosts"] = git.known_hosts()

    work_dir = params["work_dir"]
    existing = os.path.isdir(work_dir) and bool(os.listdir(work_dir))
    scratch = None
    if module.check_mode and not existing:
        # Check mode writes nothing: a missing clone is made in a temporary folder and dropped.
        scratch = tempfile.mkdtemp(prefix="turnkey-gitops-check-")
        folder = os.path.join(scratch, "repo")
    else:
        folder = work_dir
    handle = None if module.check_mode else lock(work_dir)
    try:
        clone = Clone(git, folder, params)
        if existing:
            clone.check_existing()
        else:
            clone.init()
        desired = gitlib.read_tree(params["src"])
        for attempt in range(1, ATTEMPTS + 1):
            result["attempts"] = attempt
            base = clone.fetch(remote_sha)
            # (b) Nothing of the operator's is ever pushed by accident: unpushed commits stop the run.
            clone.check_unpushed(base)
            changes, current, wanted = clone.plan(base, desired)
            result.update(files=changes, previous=base or "", commit=base or "")
            nothing = not any(changes.values())
            if module._diff and not nothing:
                result["diff"] = clone.diff(changes, current, wanted)
            if nothing or module.check_mode:
                # Keep the clone's work tree at the branch (a fast-forward: it has nothing of its own).
                if nothing and not module.check_mode and base is not None and clone.head() != base:
                    clone.run("reset", "--quiet", "--hard", base)
                result["changed"] = not nothing
                break
            # (c) Commit and push; a moved branch means the commit is made again on its new head.
            commit = clone.commit(base, changes, wanted)
            try:
                git.run("push", "--quiet", "--porcelain", "origin", "HEAD:refs/heads/%s" % params["branch"],
                        cwd=folder)
            except gitlib.GitError as exc:
                clone.roll_back(base, changes)
                if exc.kind == gitlib.NON_FAST_FORWARD and attempt < ATTEMPTS:
                    remote_sha = git.ls_remote(params["branch"])
                    continue
                raise Refused(push_message(git, exc, params, base)) from None
            clone.run("update-ref", clone.remote_ref, commit)
            result.update(changed=True, commit=commit)
            break
    finally:
        if handle is not None:
            os.close(handle)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    result["revision"] = "%s@sha1:%s" % (params["branch"], result["commit"]) if result["commit"] else ""
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            repo_url=dict(type="str", required=True),
            branch=dict(type="str", default="main"),
            path=dict(type="str", required=True),
            src=dict(type="path", required=True),
            private_key=dict(type="str", required=True, no_log=True),
            work_dir=dict(type="path", required=True),
            known_hosts_file=dict(type="path"),
            host_key=dict(type="str", no_log=False),
            commit_message=dict(type="str", default="Publish the platform tree"),
            author_name=dict(type="str", default="turnkey.cluster"),
            author_email=dict(type="str", default="turnkey@localhost"),
            timeout=dict(type="int", default=gitlib.DEFAULT_TIMEOUT),
        ),
        supports_check_mode=True,
    )
    params = dict(module.params)
    path = params["path"].strip("/")
    if not path or path.startswith("/") or ".." in path.split("/") or params["path"].startswith("/"):
        module.fail_json(msg="path %r must be a relative folder inside the repository (like k8s)" % params["path"])
    if not os.path.isdir(params["src"]):
        module.fail_json(msg="src %s is not a folder (the rendered tree to publish)" % params["src"])
    if os.path.isdir(params["work_dir"]) and os.path.realpath(params["src"]).startswith(
            os.path.realpath(params["work_dir"]) + os.sep):
        module.fail_json(msg="src %s lies inside work_dir %s; render the tree elsewhere"
                         % (params["src"], params["work_dir"]))
    params["known_hosts_file"] = params["known_hosts_file"] or os.path.join(
        os.path.dirname(os.path.abspath(params["work_dir"])), "known_hosts")
    try:
        with gitlib.GitSsh(params["repo_url"], params["private_key"], params["known_hosts_file"],
                           host_key=params["host_key"], timeout=params["timeout"]) as git:
            result = publish(module, git, params)
    except Refused as exc:
        module.fail_json(msg=str(exc))
    except gitlib.GitError as exc:
        module.fail_json(msg=str(exc), kind=exc.kind)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
