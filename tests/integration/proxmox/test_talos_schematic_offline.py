"""The offline schematic ID (plugins/module_utils/talos_schematic.py) without a lab.

The lab test (test_proxmox_modules.py) checks the module against the factory twin's answers; this one pins
the upstream image-factory vectors and go-yaml v3 behaviours of scalar styles, from go-yaml's source:
resolve.go (what a plain scalar would read back as: ints by Go's ParseInt base 0, floats by
yamlStyleFloat), encode.go stringv (isOldBool, isBase60Float: quoted), emitterc.go analyze_scalar /
select_scalar_style (plain -> single -> double quoted; a literal block only when block_allowed, with an
indentation hint when the text starts with a space or a line break, and the chomping hint).
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

COLLECTIONS = str(Path(__file__).resolve().parents[3] / "collections")
if COLLECTIONS not in sys.path:  # the collection, found by its FQCN through the link in collections/
    sys.path.insert(0, COLLECTIONS)
ts = importlib.import_module("ansible_collections.turnkey.cluster.plugins.module_utils.talos_schematic")
EMPTY_SCHEMATIC, SchematicError, canonical_yaml = ts.EMPTY_SCHEMATIC, ts.SchematicError, ts.canonical_yaml
scalar, schematic_id = ts.scalar, ts.schematic_id

UPSTREAM = [  # siderolabs/image-factory pkg/schematic/schematic_test.go
    ({}, "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"),
    ({"kernel_args": ["noapic", "nolapic"]}, "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"),
    ({"meta": [{"key": 10, "value": "foo"}]}, "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f"),
]


@pytest.mark.parametrize(("inputs", "expected"), UPSTREAM)
def test_upstream_vectors(inputs, expected):
    assert schematic_id(canonical_yaml(**inputs)) == expected


def test_empty_and_shape():
    assert canonical_yaml() == EMPTY_SCHEMATIC == "customization: {}\n"
    text = canonical_yaml(["siderolabs/qemu-guest-agent"], ["net.ifnames=0"], [{"key": 10, "value": "a\nb\n"}])
    assert text == ("customization:\n    extraKernelArgs:\n        - net.ifnames=0\n    meta:\n        - key: 10\n"
                    "          value: |\n            a\n            b\n    systemExtensions:\n"
                    "        officialExtensions:\n            - siderolabs/qemu-guest-agent\n")
    assert schematic_id(text) == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(("text", "written"), [
    ("net.ifnames=0", "net.ifnames=0"), ("console=ttyS0,115200", "console=ttyS0,115200"), ("it's", "it's"),
    ("", '""'), ("true", '"true"'), ("null", '"null"'), ("10", '"10"'), ("0o17", '"0o17"'), ("08", '"08"'),
    ("-.5", '"-.5"'), ("1e3", '"1e3"'), ("yes", '"yes"'), ("n", '"n"'), ("1:30", '"1:30"'),
    ("2001-12-14", '"2001-12-14"'), ("{}", "'{}'"), ("a: b", "'a: b'"), ("- x", "'- x'"), ("#x", "'#x'"),
    ("a #b", "'a #b'"), (" lead", "' lead'"), ("a\tb", '"a\\tb"'), ("x-", "x-"), ("-", "'-'"),
])
def test_scalar_styles(text, written):
    assert scalar(text, 12) == written


@pytest.mark.parametrize(("text", "written"), [
    ("a\nb", "|-\n    a\n    b"), ("a\nb\n", "|\n    a\n    b"), ("a\n\n", "|+\n    a\n"),
    (" a\nb", "|4-\n     a\n    b"), ("\na", "|4-\n\n    a"), ("a \nb", '"a \\nb"'),
])
def test_multiline_scalars(text, written):
    assert scalar(text, 4) == written


def test_bad_meta():
    with pytest.raises(SchematicError):
        canonical_yaml(meta=[{"key": 300, "value": "x"}])
    with pytest.raises(SchematicError):
        canonical_yaml(meta=[{"value": "x"}])
