"""Routes of the Talos Image Factory twin (the community edition, no authentication), per docs/api.md."""

from __future__ import annotations

from ..base import HttpError, Request, Response, Twin
from . import catalog
from .schematic import InvalidSchematic, canonical, parse, schematic_id

EMPTY = "customization: {}\n"


class ImageFactoryTwin(Twin):
    name = "image_factory"
    latency_table = {
        "request": (0.0, 0.02),
        # The real factory builds an image on first request (tens of seconds), then serves it from cache.
        "image_build": (0.05, 3.0),
        "image_cached": (0.0, 0.2),
    }

    def __init__(self, data_dir, profile):
        super().__init__(data_dir, profile)
        self.add("POST", "/schematics", self.create_schematic)
        self.add("GET", "/schematics/{schematic}", self.get_schematic)
        self.add("GET", "/image/{schematic}/{version}/{file}", self.image)
        self.add("GET", "/versions", self.versions)
        self.add("GET", "/version/{version}/extensions/official", self.extensions)
        self.add("GET", "/version/{version}/overlays/official", self.overlays)

    def initial_state(self) -> dict:
        # The empty schematic is always known (its ID is the well-known one).
        return {"schematics": {schematic_id(EMPTY): EMPTY}, "built": []}

    def health_detail(self) -> dict:
        with self.store.lock:
            return {"schematics": len(self.store.data["schematics"]), "versions": list(catalog.VERSIONS)}

    def create_schematic(self, request: Request) -> Response:
        try:
            text = canonical(parse(request.body))
        except InvalidSchematic as exc:
            self.reject(request, 400, str(exc))
            raise HttpError(400, str(exc)) from None
        ident = schematic_id(text)
        with self.store.change() as data:
            data["schematics"][ident] = text
        return Response.json({"id": ident, "schematic": text}, status=201)

    def _schematic(self, ident: str) -> str:
        with self.store.lock:
            text = self.store.data["schematics"].get(ident)
        if text is None:
            raise HttpError(404, "schematic ID not found")
        return text

    def get_schematic(self, request: Request) -> Response:
        return Response(200, self._schematic(request.params["schematic"]).encode(), "application/yaml")

    def _version(self, version: str) -> str:
        version = version if version.startswith("v") else f"v{version}"
        if version not in catalog.VERSIONS:
            raise HttpError(404, f"version {version} not found")
        return version

    def image(self, request: Request) -> Response:
        ident, file = request.params["schematic"], request.params["file"]
        text = self._schematic(ident)
        version = self._version(request.params["version"])
        described = catalog.describe(file)
        if described is None:
            self.reject(request, 400, f"invalid path {file!r}")
            raise HttpError(400, f"error parsing profile from path: invalid path {file!r}")
        content_type, size = described
        cmdline = (parse(text.encode())["customization"]["extraKernelArgs"])
        body = catalog.image_bytes(ident, version, file, size, cmdline)
        key = f"{ident}/{version}/{file}"
        with self.store.lock:
            built = key in self.store.data["built"]
        self.latency.sleep("image_cached" if built else "image_build")
        if not built:
            with self.store.change() as data:
                data["built"].append(key)
        filename = request.query.get("filename") or file
        return Response(200, body, content_type,
                        {"Content-Disposition": f'attachment; filename="{filename}"'})

    def versions(self, request: Request) -> Response:
        return Response.json([] if request.query.get("broken") == "true" else list(catalog.VERSIONS))

    def extensions(self, request: Request) -> Response:
        return Response.json(catalog.extensions(self._version(request.params["version"])))

    def overlays(self, request: Request) -> Response:
        self._version(request.params["version"])
        return Response.json([])
