"""OpenID Connect per OAuth2 provider (phase 2: filled in below)."""

from __future__ import annotations


def register(twin) -> None:
    return None
