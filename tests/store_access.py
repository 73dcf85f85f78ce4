"""Opens the persistent store with the collection's own code, for assertions on what it holds."""

from __future__ import annotations

import sys

from tests.playbook_runner import REPO

if str(REPO / "collections") not in sys.path:
    sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.turnkey.cluster.plugins.plugin_utils import persistent_store as store_module  # noqa: E402

Store = store_module.Store


def open_store(path, password):
    return Store(str(path), password)
