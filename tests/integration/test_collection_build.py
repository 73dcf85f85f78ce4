"""The collection builds into an artifact that installs and documents itself."""

from __future__ import annotations

import os
import re
import subprocess
import tarfile

import pytest
import yaml

from tests.playbook_runner import BIN, REPO

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

# How roles and playbooks call other collections: a module as a task key, a filter, a lookup, a role.
CALLS = (re.compile(r"^\s*-?\s*([a-z_0-9]+\.[a-z_0-9]+)\.[a-z_0-9]+:\s*$", re.MULTILINE),
         re.compile(r"\|\s*([a-z_0-9]+\.[a-z_0-9]+)\.[a-z_0-9]+"),
         re.compile(r"(?<![\w.])(?:lookup|query)\(\s*['\"]([a-z_0-9]+\.[a-z_0-9]+)\.[a-z_0-9]+"),
         re.compile(r"^\s*(?:-\s*)?name:\s*([a-z_0-9]+\.[a-z_0-9]+)\.[a-z_0-9]+\s*$", re.MULTILINE))
OWN = {"ansible.builtin", "ansible.legacy", "turnkey.cluster"}


def run(*command, env=None, cwd=REPO):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_build_install_and_document(tmp_path):
    run(str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), "--force")
    artifact = next(tmp_path.glob("turnkey-cluster-*.tar.gz"))
    with tarfile.open(artifact) as archive:
        names = set(archive.getnames())
    assert {"galaxy.yml", "MANIFEST.json"} & names
    assert "plugins/modules/validate_spec.py" in names and "roles/persistent_secrets/tasks/main.yml" in names
    assert not [name for name in names if name.startswith((".venv", ".lab", ".state", "collections/", "lab/"))]
    assert not [name for name in names if "/secrets/" in name or name.endswith("vault-password")]

    installed = tmp_path / "installed"
    # Outside the repository, so only the installed copy can answer (not the working tree's link).
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(installed))
    galaxy = str(BIN / "ansible-galaxy")
    # --offline: the dependencies resolve against the collections already installed (Galaxy is not reachable).
    output = run(galaxy, "collection", "install", "--offline", "-p", str(installed), str(artifact), env=env,
                 cwd=tmp_path)
    for dependency in declared_dependencies():
        assert "'%s:" % dependency in output, output  # resolved, not ignored
    listing = run(str(BIN / "ansible-doc"), "-l", "turnkey.cluster", env=env, cwd=tmp_path)
    assert "turnkey.cluster.validate_spec" in listing and "turnkey.cluster.persistent_secret" in listing
    documentation = run(str(BIN / "ansible-doc"), "turnkey.cluster.validate_spec", env=env, cwd=tmp_path)
    assert str(installed) in documentation and "layer:" in documentation


def declared_dependencies():
    return yaml.safe_load((REPO / "galaxy.yml").read_text())["dependencies"] or {}


def called_collections():
    """{collection: [files]} of every other collection the roles and playbooks call."""
    called = {}
    for path in sorted([*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("roles/*/handlers/*.yml"),
                        *REPO.glob("playbooks/*.yml"), REPO / "site.yml"]):
        text = path.read_text()
        for pattern in CALLS:
            for name in pattern.findall(text):
                if name not in OWN:
                    called.setdefault(name, []).append(str(path.relative_to(REPO)))
    return called


def test_every_collection_called_is_a_declared_dependency():
    called = called_collections()
    assert "kubernetes.core" in called  # the scan finds what is there (roles cilium, sealed_secrets_key)
    missing = {name: files for name, files in called.items() if name not in declared_dependencies()}
    assert missing == {}, "add these to galaxy.yml dependencies: %s" % missing
