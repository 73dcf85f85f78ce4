"""A twin's state: one JSON document in its data dir, replaced atomically on every change.

So state survives `lab down`/`lab up` (and a crash between two writes leaves the previous version).
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator
from pathlib import Path

from ..state import read_json, write_json


class Store:
    def __init__(self, path: Path, initial: dict):
        self.path = path
        self.lock = threading.RLock()
        loaded = read_json(path, None)
        self.data: dict = loaded if isinstance(loaded, dict) else copy.deepcopy(initial)
        if loaded is None:
            self.save()

    def save(self) -> None:
        # 0600: a twin's state may hold password hashes.
        with self.lock:
            write_json(self.path, self.data, mode=0o600)

    @contextlib.contextmanager
    def change(self) -> Iterator[dict]:
        """`with store.change() as data:` mutate under the lock; saved when the block ends without error,
        rolled back when it raises (a refused request must not leave half a change behind)."""
        with self.lock:
            before = copy.deepcopy(self.data)
            try:
                yield self.data
            except BaseException:
                self.data.clear()
                self.data.update(before)
                raise
            self.save()

    def read(self) -> dict:
        """A deep copy, safe to use outside the lock."""
        with self.lock:
            return copy.deepcopy(self.data)
