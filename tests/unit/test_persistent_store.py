"""The store's write path: atomic, backed up, and nothing lost when a write fails halfway."""

from __future__ import annotations

import os

import pytest

from tests.store_access import open_store
from tests.store_access import store_module as store_lib

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)


def test_failed_write_keeps_the_previous_version(tmp_path, monkeypatch):
    store = open_store(tmp_path, "pw")
    store.write("token", {"name": "token", "data": {"value": "one"}})
    original = (tmp_path / "token.vault.yml").read_bytes()

    def broken_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(store_lib.os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.write("token", {"name": "token", "data": {"value": "two"}})
    monkeypatch.undo()
    assert (tmp_path / "token.vault.yml").read_bytes() == original
    assert [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")] == []
    assert store.read("token")["data"]["value"] == "one"


def test_every_write_backs_up_the_previous_version(tmp_path):
    store = open_store(tmp_path, "pw")
    for value in ("one", "two", "three"):
        store.write("token", {"name": "token", "data": {"value": value}})
    backups = sorted((tmp_path / ".backup").iterdir())
    assert [store.read_file(path)["data"]["value"] for path in backups] == ["one", "two"]


def test_password_sources(tmp_path):
    password_file = tmp_path / "pass"
    password_file.write_text("from-file\n")
    assert store_lib.resolve_password(str(password_file), "X", environ={}) == "from-file"
    assert store_lib.resolve_password(str(password_file), "X", environ={"X": "from-env"}) == "from-env"
    with pytest.raises(store_lib.StoreError, match="no vault password"):
        store_lib.resolve_password(str(tmp_path / "missing"), "X", environ={})
    (tmp_path / "empty").write_text("")
    with pytest.raises(store_lib.StoreError, match="is empty"):
        store_lib.resolve_password(str(tmp_path / "empty"), None, environ={})


def test_names_cannot_escape_the_store(tmp_path):
    store = open_store(tmp_path, "pw")
    with pytest.raises(store_lib.StoreError):
        store.file_of("../outside")
