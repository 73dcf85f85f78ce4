"""The collection builds into an artifact that installs and documents itself."""

from __future__ import annotations

import os
import subprocess
import tarfile

from tests.playbook_runner import BIN, REPO


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
    run(galaxy, "collection", "install", "-p", str(installed), str(artifact), env=env, cwd=tmp_path)
    listing = run(str(BIN / "ansible-doc"), "-l", "turnkey.cluster", env=env, cwd=tmp_path)
    assert "turnkey.cluster.validate_spec" in listing and "turnkey.cluster.persistent_secret" in listing
    documentation = run(str(BIN / "ansible-doc"), "turnkey.cluster.validate_spec", env=env, cwd=tmp_path)
    assert str(installed) in documentation and "layer:" in documentation
