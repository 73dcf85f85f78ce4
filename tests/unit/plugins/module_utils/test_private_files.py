"""The one private-file writer: every secret file the collection writes goes through it, and it makes the
write durable (file fsynced before the rename, folder after) and private (0600 in a 0700 folder)."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.turnkey.cluster.plugins.module_utils import private_files, talosctl
from ansible_collections.turnkey.cluster.plugins.plugin_utils import private_files as controller_private_files

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

WRITERS = {
    "module_utils.private_files.write_private_file": private_files.write_private_file,
    "plugin_utils.private_files.write_private_file": controller_private_files.write_private_file,
    "module_utils.talosctl.write_private": talosctl.write_private,
    "module_utils.talosctl.private_file": lambda path, data: talosctl.private_file(os.path.dirname(path),
                                                                                   os.path.basename(path), data),
}


@pytest.fixture
def syscalls(monkeypatch):
    """Records fsync (of a file or a folder) and rename, in order, and still performs them."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        real_fsync(fd)

    def replace(source, destination):
        events.append(("rename", os.path.basename(str(destination))))
        real_replace(source, destination)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_writer_is_durable_and_private(tmp_path, syscalls, writer):
    target = tmp_path / "state" / "secret.yaml"
    WRITERS[writer](str(target), "key: value\n")
    assert syscalls == [("fsync", "file"), ("rename", "secret.yaml"), ("fsync", "folder")]
    assert target.read_text() == "key: value\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert os.listdir(target.parent) == ["secret.yaml"]  # no temporary file left


def test_one_writer():
    assert controller_private_files.write_private_file is private_files.write_private_file
    assert talosctl.write_private is private_files.write_private_file


def test_replacing_a_world_readable_file_leaves_it_private(tmp_path, syscalls):
    target = tmp_path / "kubeconfig"
    target.write_text("old")
    target.chmod(0o644)
    private_files.write_private_file(str(target), b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_failed_rename_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "secret"
    target.write_bytes(b"old")

    def broken(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        private_files.write_private_file(str(target), b"new")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["secret"]
