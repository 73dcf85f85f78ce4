"""The Talos Image Factory twin (twins/image_factory): schematics with the real IDs, synthetic images."""

from __future__ import annotations

from ..twins.component import TwinComponent
from .base import Health


class ImageFactory(TwinComponent):
    name = "image_factory"
    host = "0.6"
    port = 8443
    module = "turnkey_lab.twins.image_factory"

    def judge(self, status: dict) -> Health:
        return Health(True, f"Image Factory twin, {status.get('schematics')} schematic(s), "
                            f"{status.get('profile')} profile")
