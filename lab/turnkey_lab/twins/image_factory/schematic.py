"""Schematics exactly as the real Image Factory handles them (siderolabs/image-factory pkg/schematic).

The factory decodes the body as YAML with unknown fields rejected, then marshals its Go struct with
go-yaml (4-space indent, struct field order, `omitempty`) and the ID is sha256 of that text. So the ID
depends on the canonical form, not on the bytes sent: `{}` and `customization: {}` are the same schematic
(376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba). The test vectors of the upstream
schematic_test.go are reproduced in tests/lab/test_image_factory_twin.py.
"""

from __future__ import annotations

import hashlib
import json

import yaml
from yaml.emitter import Emitter
from yaml.resolver import Resolver

BOOTLOADERS = ("auto", "dual-boot", "grub", "sd-boot")
ENROLL_KEYS = ("off", "manual", "if-safe", "force")
INDENT = "    "

# Go type names, for error texts shaped like go-yaml's "field x not found in type schematic.Customization".
_TYPES = {(): "schematic.Schematic", ("customization",): "schematic.Customization",
          ("overlay",): "schematic.Overlay", ("customization", "systemExtensions"): "schematic.SystemExtensions",
          ("customization", "secureboot"): "schematic.SecureBootCustomization",
          ("customization", "diskImage"): "schematic.DiskImageCustomization",
          ("customization", "meta"): "schematic.MetaValue"}
_FIELDS = {(): ("owner", "overlay", "customization"),
           ("customization",): ("embeddedMachineConfiguration", "extraKernelArgs", "meta", "systemExtensions",
                                "bootloader", "secureboot", "diskImage"),
           ("overlay",): ("image", "name", "options"),
           ("customization", "systemExtensions"): ("officialExtensions",),
           ("customization", "secureboot"): ("enrollKeys", "includeWellKnownCertificates"),
           ("customization", "diskImage"): ("sectorSize",),
           ("customization", "meta"): ("key", "value")}


class InvalidSchematic(ValueError):
    pass


def _mapping(value: object, where: tuple) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidSchematic(f"yaml: unmarshal errors:\n  cannot unmarshal {type(value).__name__} into "
                               f"{_TYPES[where]}")
    unknown = [k for k in value if k not in _FIELDS[where]]
    if unknown:
        raise InvalidSchematic(f"yaml: unmarshal errors:\n  field {unknown[0]} not found in type {_TYPES[where]}")
    return value


def _string(value: object, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise InvalidSchematic(f"yaml: unmarshal errors:\n  cannot unmarshal {type(value).__name__} into {name} "
                               "(string)")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _strings(value: object, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidSchematic(f"yaml: unmarshal errors:\n  cannot unmarshal {name} into []string")
    return [_string(v, name) for v in value]


def _uint(value: object, name: str, bits: int | None = None) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (bits and value >= 2 ** bits):
        raise InvalidSchematic(f"yaml: unmarshal errors:\n  cannot unmarshal {value!r} into {name} "
                               f"(uint{bits or ''})")
    return value


def parse(body: bytes) -> dict:
    """The schematic as the Go struct would hold it (zero values filled in). Raises InvalidSchematic."""
    try:
        raw = yaml.safe_load(body.decode() if body else "")
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidSchematic(f"yaml: {exc}") from None
    top = _mapping(raw, ())
    if _string(top.get("owner"), "owner"):
        raise InvalidSchematic("owner field is only supported in Enterprise edition")
    overlay = _mapping(top.get("overlay"), ("overlay",))
    options = overlay.get("options") or {}
    if not isinstance(options, dict):
        raise InvalidSchematic("yaml: unmarshal errors:\n  cannot unmarshal overlay.options into map[string]any")
    custom = _mapping(top.get("customization"), ("customization",))
    extensions = _mapping(custom.get("systemExtensions"), ("customization", "systemExtensions"))
    secureboot = _mapping(custom.get("secureboot"), ("customization", "secureboot"))
    disk = _mapping(custom.get("diskImage"), ("customization", "diskImage"))
    meta = custom.get("meta") or []
    if not isinstance(meta, list):
        raise InvalidSchematic("yaml: unmarshal errors:\n  cannot unmarshal meta into []schematic.MetaValue")
    bootloader = _string(custom.get("bootloader"), "bootloader") or "auto"
    if bootloader not in BOOTLOADERS:
        raise InvalidSchematic(f"unknown bootloader kind {bootloader!r}")
    enroll = _string(secureboot.get("enrollKeys"), "enrollKeys")
    if enroll and enroll not in ENROLL_KEYS:
        raise InvalidSchematic(f"invalid secureboot.enrollKeys {enroll!r} (one of {', '.join(ENROLL_KEYS)})")
    wellknown = secureboot.get("includeWellKnownCertificates") or False
    if not isinstance(wellknown, bool):
        raise InvalidSchematic("yaml: unmarshal errors:\n  cannot unmarshal includeWellKnownCertificates into bool")
    return {
        "overlay": {"image": _string(overlay.get("image"), "image"), "name": _string(overlay.get("name"), "name"),
                    "options": options},
        "customization": {
            "embeddedMachineConfiguration": _string(custom.get("embeddedMachineConfiguration"),
                                                    "embeddedMachineConfiguration"),
            "extraKernelArgs": _strings(custom.get("extraKernelArgs"), "extraKernelArgs"),
            "meta": [{"key": _uint(m.get("key"), "key", 8), "value": _string(m.get("value"), "value")}
                     for m in (_mapping(m, ("customization", "meta")) for m in meta)],
            "systemExtensions": {"officialExtensions": _strings(extensions.get("officialExtensions"),
                                                                "officialExtensions")},
            "bootloader": "" if bootloader == "auto" else bootloader,
            "secureboot": {"enrollKeys": enroll, "includeWellKnownCertificates": wellknown},
            "diskImage": {"sectorSize": _uint(disk.get("sectorSize"), "sectorSize")},
        },
    }


# -- go-yaml's marshalling, for the subset of types a schematic has ------------------------------------
def _scalar(value: object, indent: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    text = str(value)
    if "\n" in text:
        # Literal block; chomping as go-yaml picks it (|- without a final newline, |+ with several).
        chomp = "-" if not text.endswith("\n") else ("+" if text.endswith("\n\n") else "")
        body = text[:-1] if text.endswith("\n") else text
        lines = [(indent + INDENT + line) if line else "" for line in body.split("\n")]
        return f"|{chomp}\n" + "\n".join(lines)
    # A string that would read back as another type (true, 10, null, "") is double-quoted, as go-yaml does.
    if _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)) == "tag:yaml.org,2002:str":
        analysis = Emitter.analyze_scalar(_ANALYZER, text)
        if analysis.allow_block_plain:
            return text
        if analysis.allow_single_quoted:
            return "'" + text.replace("'", "''") + "'"
    return json.dumps(text, ensure_ascii=False)


class _Analyzer(Emitter):
    def __init__(self):  # analyze_scalar needs no stream
        self.flow_level = 0


_ANALYZER = _Analyzer()
_RESOLVER = Resolver()


def _is_empty(value: object) -> bool:
    """go-yaml's omitempty: zero scalars, empty lists, structs whose fields are all empty."""
    if isinstance(value, dict):
        return all(_is_empty(v) for v in value.values())
    return not value


def _emit(value: object, indent: str, omit: bool, base: str | None = None) -> list[str]:
    """Lines of a mapping body at `indent` (go-yaml block style). `base`: where block scalars indent from
    (go-yaml indents them from the dash of a sequence item, not from the item's keys)."""
    lines: list[str] = []
    for key, item in value.items():
        if omit and _is_empty(item):
            continue
        lines += _field(key, item, indent, omit, base)
    return lines


def _field(key: str, item: object, indent: str, omit: bool, base: str | None = None) -> list[str]:
    if isinstance(item, dict):
        body = _emit(item, indent + INDENT, omit and key != "options")
        return [f"{indent}{key}:", *body] if body else [f"{indent}{key}: {{}}"]
    if isinstance(item, list):
        if not item:
            return [f"{indent}{key}: []"]
        lines = [f"{indent}{key}:"]
        for element in item:
            if isinstance(element, dict):
                body = _emit(element, indent + INDENT + "  ", False, indent + INDENT)
                lines.append(f"{indent}{INDENT}- " + body[0].lstrip())
                lines += body[1:]
            else:
                lines.append(f"{indent}{INDENT}- {_scalar(element, indent + INDENT)}")
        return lines
    return [f"{indent}{key}: {_scalar(item, indent if base is None else base)}"]


def canonical(schematic: dict) -> str:
    """The text the real factory hashes: go-yaml marshal of the Schematic struct."""
    lines: list[str] = []
    overlay = schematic["overlay"]
    if not _is_empty(overlay):
        # Overlay's image and name have no omitempty: once the overlay is there, both are written.
        lines += ["overlay:", f"{INDENT}image: {_scalar(overlay['image'], INDENT)}",
                  f"{INDENT}name: {_scalar(overlay['name'], INDENT)}"]
        if overlay["options"]:
            lines += _field("options", overlay["options"], INDENT, False)
    custom = _emit(schematic["customization"], INDENT, True)
    lines += ["customization:", *custom] if custom else ["customization: {}"]
    return "\n".join(lines) + "\n"


def schematic_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
