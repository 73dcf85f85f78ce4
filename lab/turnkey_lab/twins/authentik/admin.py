"""admin/version (what verify and the modules can compare with the pinned release) and the health probes
Authentik serves outside the API (/-/health/live/, /-/health/ready/: 200 without a body, the twin's guess)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import Request, Response
from .spec import RELEASE

if TYPE_CHECKING:
    from .twin import Call


def version(call: Call) -> tuple[int, dict]:
    return 200, {"version_current": RELEASE, "version_latest": RELEASE, "version_latest_valid": True,
                 "build_hash": "", "outdated": False, "outpost_outdated": False}


def healthy(request: Request) -> Response:
    return Response(200, b"", "text/plain; charset=utf-8")
