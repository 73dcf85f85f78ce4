"""Parameter validation against the official Proxmox VE API schema (the API viewer's apidata, PVE 9.1).

Proxmox's JSON-schema dialect: `optional: 1` (everything else is required), booleans as 0/1, named
`format`s (pve-vmid, pve-storage-id, ...), property strings (`format` is a sub-schema: `net0=virtio=..,
bridge=vmbr0`), indexed parameters (`net[n]` stands for net0, net1, ...). Errors use Proxmox's own texts
(pve-common JSONSchema.pm), keyed by parameter, answered as 400 "Parameter verification failed.".
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

SCHEMA_ENV = "TURNKEY_SCHEMAS_DIR"
SCHEMA_FILE = Path("proxmox-ve") / "pve-9.1-api-schema.json"
NOT_DEFINED = "property is not defined in schema and the schema does not allow additional properties"
MISSING = "property is missing and it is not optional"
# Highest index of indexed parameters (qemu-server's MAX_* constants); others default to 31.
INDEX_MAX = {"scsi": 30, "virtio": 15, "sata": 5, "ide": 3, "usb": 4, "hostpci": 15, "serial": 3, "parallel": 2,
             "numa": 7, "virtiofs": 9, "unused": 255, "mp": 255}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NAMED_FORMATS = {
    "pve-node": r"[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?",
    "pve-storage-id": r"[a-z][a-z0-9\-_.]*[a-z0-9]",
    "pve-configid": r"[a-z][a-z0-9_\-]+",
    "pve-bridge-id": r"[-_.\w\d]+",
    "pve-iface": r"[a-zA-Z][a-zA-Z0-9_.\-]{1,20}",
    "pve-poolid": r"[A-Za-z0-9_\-]+",
    "pve-roleid": r"[A-Za-z0-9.\-_]+",
    "pve-userid": r"[^\s:/@]+@[A-Za-z][A-Za-z0-9.\-_]+",
    "pve-realm": r"[A-Za-z][A-Za-z0-9.\-_]+",
    # pve_verify_tokenid takes the bare token name or the full user@realm!name (ACL 'tokens' lists).
    "pve-tokenid": r"([^\s:/@]+@[A-Za-z][A-Za-z0-9.\-_]+!)?[A-Za-z][A-Za-z0-9.\-_]+",
    "pve-tag": r"[a-zA-Z0-9_][a-zA-Z0-9_\-+.]*",
    "dns-name": r"([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?",
    "mac-addr": r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}",
    "ipv4": r"(\d{1,3}\.){3}\d{1,3}",
}
_FORMAT_NAMES = {"pve-storage-id": "storage ID", "pve-node": "node name", "pve-configid": "configuration key",
                 "dns-name": "DNS name", "pve-userid": "user name", "pve-tag": "tag", "mac-addr": "MAC address"}
_LIST_ALIASES = {"pve-tag-list": "pve-tag", "pve-configid-list": "pve-configid"}


def find_schema_file(package_dir: Path | None = None) -> Path | None:
    """$TURNKEY_SCHEMAS_DIR/proxmox-ve/... when that variable is set (only there: setting it to an empty
    folder is how a test runs without validation), else <repo>/../shared/schemas/...; None if absent."""
    if os.environ.get(SCHEMA_ENV):
        candidate = Path(os.environ[SCHEMA_ENV]) / SCHEMA_FILE
    else:
        # package: <repo>/lab/turnkey_lab/twins/proxmox -> the repo is four levels up.
        repo = (package_dir or Path(__file__).resolve().parent).parents[3]
        candidate = repo.parent / "shared" / "schemas" / SCHEMA_FILE
    return candidate if candidate.is_file() else None


class Schema:
    def __init__(self, path: Path):
        tree = json.loads(path.read_text())
        self.methods: list[tuple[re.Pattern, str, dict]] = []
        self.paths: set[str] = set()
        stack = list(tree)
        while stack:
            node = stack.pop()
            self.paths.add(node["path"])
            regex = re.compile("^" + re.sub(r"\\\{[a-z\-_]+\\\}", r"[^/]+", re.escape(node["path"])) + "/?$")
            for method, info in (node.get("info") or {}).items():
                self.methods.append((regex, method, info))
            stack.extend(node.get("children") or ())
        # Literal paths first, so /nodes/{node}/qemu never matches /nodes/{node}/{x} style siblings.
        self.methods.sort(key=lambda item: item[0].pattern.count("[^/]+"))

    def info(self, method: str, path: str) -> dict | None:
        for regex, verb, info in self.methods:
            if verb == method and regex.match(path):
                return info
        return None

    def config_property(self, key: str) -> dict | None:
        """The schema of a VM config key (from POST /nodes/{node}/qemu)."""
        info = self.info("POST", "/nodes/x/qemu")
        return _lookup((info or {}).get("parameters", {}).get("properties", {}), key)

    def validate(self, info: dict, params: dict[str, str]) -> dict[str, str]:
        """Errors by parameter name (empty when the request is valid)."""
        spec = info.get("parameters") or {}
        properties = spec.get("properties") or {}
        errors: dict[str, str] = {}
        for name, value in params.items():
            prop = _lookup(properties, name)
            if prop is None:
                if not spec.get("additionalProperties"):
                    errors[name] = NOT_DEFINED
                continue
            problem = check_value(prop, value, name)
            if problem:
                errors[name] = problem
        for name, prop in properties.items():
            if "[n]" in name:
                continue
            if not prop.get("optional") and name not in params and "default" not in prop:
                errors[name] = MISSING
            requires = prop.get("requires")
            if name in params and isinstance(requires, str) and requires not in params:
                errors.setdefault(requires, f"missing property - '{name}' requires this property")
        return errors


def _lookup(properties: dict, name: str) -> dict | None:
    if name in properties:
        return properties[name]
    match = re.fullmatch(r"([a-z]+)(\d+)", name)
    indexed = f"{match.group(1)}[n]" if match else None
    if indexed in properties and int(match.group(2)) <= INDEX_MAX.get(match.group(1), 31):
        return properties[indexed]
    return None


def check_value(prop: dict, value: str, name: str) -> str | None:
    """Proxmox's message for one bad value, else None."""
    kind = prop.get("type", "string")
    if kind == "boolean":
        if str(value).lower() not in _TRUE + _FALSE:
            return f"type check ('boolean') failed - got '{value}'"
        return None
    if kind in ("integer", "number"):
        pattern = r"[+-]?\d+" if kind == "integer" else r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"
        if not re.fullmatch(pattern, str(value)):
            return f"type check ('{kind}') failed - got '{value}'"
        number = float(value)
        if "minimum" in prop and number < float(prop["minimum"]):
            return f"value must have a minimum value of {prop['minimum']}"
        if "maximum" in prop and number > float(prop["maximum"]):
            return f"value must have a maximum value of {prop['maximum']}"
        return None
    if kind == "array":
        return None  # only a few endpoints take arrays; not used by the product
    value = str(value)
    if "maxLength" in prop and len(value) > int(prop["maxLength"]):
        return f"value may only be {prop['maxLength']} characters long"
    if "minLength" in prop and len(value) < int(prop["minLength"]):
        return f"value must be at least {prop['minLength']} characters long"
    if prop.get("enum") and value not in prop["enum"]:
        return f"value '{value}' does not have a value in the enumeration '{', '.join(prop['enum'])}'"
    if "pattern" in prop and not _pattern(prop["pattern"]).fullmatch(value):
        return "value does not match the regex pattern"
    fmt = prop.get("format")
    if isinstance(fmt, dict):
        return _check_property_string(fmt, value, name)
    if isinstance(fmt, str):
        return _check_format(fmt, value)
    return None


@functools.lru_cache(maxsize=256)
def _pattern(perl: str) -> re.Pattern:
    """A Perl regex from the schema in Python's dialect ((?^:...) groups); one Python can't read matches all."""
    try:
        return re.compile(re.sub(r"\(\?\^([a-z]*):", lambda m: f"(?{m.group(1)}:" if m.group(1) else "(?:", perl))
    except re.error:
        return re.compile(".*", re.S)


def _check_format(fmt: str, value: str) -> str | None:
    if fmt in _LIST_ALIASES or (fmt.endswith("-list") and fmt[:-5] in _NAMED_FORMATS):
        base = _LIST_ALIASES.get(fmt, fmt[:-5])
        for item in filter(None, re.split(r"[,;\s]+", value)):
            problem = _check_format(base, item)
            if problem:
                return problem
        return None
    regex = _NAMED_FORMATS.get(fmt)
    if regex and not re.fullmatch(regex, value):
        what = _FORMAT_NAMES.get(fmt, fmt)
        if fmt == "pve-storage-id":
            return f"storage ID '{value}' contains illegal characters"
        return f"value does not look like a valid {what}"
    if fmt == "pve-qm-ipconfig":
        return _check_property_string({k: {"type": "string", "optional": 1} for k in ("ip", "gw", "ip6", "gw6")},
                                      value, "ipconfig")
    return None


def parse_property_string(fmt: dict, value: str) -> dict[str, str]:
    """'virtio=AA:..,bridge=vmbr0' -> {'model': 'virtio', 'macaddr': 'AA:..', 'bridge': 'vmbr0'}."""
    default_key = next((k for k, v in fmt.items() if isinstance(v, dict) and v.get("default_key")), None)
    result: dict[str, str] = {}
    for part in filter(None, value.split(",")):
        if "=" in part:
            key, item = part.split("=", 1)
        elif default_key:
            key, item = default_key, part
        else:
            raise ValueError(f"{part}: value without key, but schema does not define a default key")
        spec = fmt.get(key)
        if isinstance(spec, dict) and spec.get("keyAlias"):
            result[spec["keyAlias"]] = key
            key = spec["alias"]
        result[key] = item
    return result


def _check_property_string(fmt: dict, value: str, name: str) -> str | None:
    try:
        parsed = parse_property_string(fmt, value)
    except ValueError as exc:
        return f"invalid format - {exc}\n"
    for key, item in parsed.items():
        spec = fmt.get(key)
        if not isinstance(spec, dict):
            return f"invalid format - format error\n{name}.{key}: {NOT_DEFINED}\n"
        problem = check_value({k: v for k, v in spec.items() if k != "format" or isinstance(v, str)}, item, key)
        if problem:
            return f"invalid format - format error\n{name}.{key}: {problem}\n"
    return None
