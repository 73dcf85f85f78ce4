"""The official API documents under ../shared/schemas (beside the project, never shipped with it), for the
tests that check the product or a twin against them.

A developer's clone may not have that folder: there such a test is a visible skip naming the missing file.
In CI (CI=true) the folder must be there, so a missing document is a failure, never a quiet skip.
$TURNKEY_SCHEMAS_DIR, when set, is the only place looked at (the lab twins read the same variable).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCHEMAS_ENV = "TURNKEY_SCHEMAS_DIR"


def schemas_dir() -> Path:
    return Path(os.environ[SCHEMAS_ENV]) if os.environ.get(SCHEMAS_ENV) else REPO.parent / "shared" / "schemas"


def official_schema(relative: str | Path) -> Path:
    """The path of one official document (e.g. "talos/talos-v1.13.9-config.schema.json"); when it is absent,
    a failure under CI=true, else a skip whose reason names the file."""
    path = schemas_dir() / relative
    if path.is_file():
        return path
    reason = "official API document %s is missing (../shared/schemas is not beside the project)" % path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + "; CI must have it", pytrace=False)
    pytest.skip(reason)
