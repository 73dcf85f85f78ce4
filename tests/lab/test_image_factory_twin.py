"""The Talos Image Factory twin, through plain HTTPS against a real lab (`lab up --components image_factory`).

Schematic IDs are checked against the upstream test vectors (siderolabs/image-factory
pkg/schematic/schematic_test.go), so the twin hands out the IDs the real factory would.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import requests
from turnkey_lab.twins.image_factory.schematic import canonical, parse, schematic_id

pytestmark = pytest.mark.lab

NET = "127.82"
URL = f"https://{NET}.0.6:8443"
EMPTY_ID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
QEMU_GA = b"customization:\n  systemExtensions:\n    officialExtensions:\n      - siderolabs/qemu-guest-agent\n"

# (request body, ID): the upstream TestUnmarshalID / TestID cases.
UPSTREAM_VECTORS = [
    (b"{}", EMPTY_ID),
    (b"customization: {}", EMPTY_ID),
    (b'customization: {"extraKernelArgs": []}', EMPTY_ID),
    (b'{"customization": {"extraKernelArgs": ["noapic", "nolapic"]}}',
     "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"),
    (b'{"customization": {"extraKernelArgs": ["noapic", "nolapic"], "systemExtensions": {}}}',
     "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"),
    (b'{"customization": {"meta": [{"key": 10, "value": "foo"}], "extraKernelArgs": [], "systemExtensions": {}}}',
     "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f"),
    (b'{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"}}',
     "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9"),
    (b'{"customization":{"secureboot": {"includeWellKnownCertificates": true}}}',
     "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6"),
    (b"customization:\n  diskImage:\n    sectorSize: 4096\n",
     "92833e9ddd9bb9e11b2464fa5525429f01866306d52ebd882ee08d7918f6d1ea"),
]


# Multi-line values (META key 10 carries a YAML network config) as literal blocks, checked against the
# output of go-yaml v4.0.0 marshalling the factory's structs (a throw-away Go program, 2026-11-28).
META_10 = "addresses:\n    - address: 10.2.1.1/16\n      linkName: eth0\nhostnames:\n    - hostname: cp1\n"
MULTILINE = {"customization": {
    "embeddedMachineConfiguration": "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: x\n",
    "extraKernelArgs": ["net.ifnames=0", "true", "", "a: b", "- x", "it's", "{}"],
    "meta": [{"key": 10, "value": META_10},
             {"key": 11, "value": "no newline\nat end"}],
    "systemExtensions": {"officialExtensions": ["siderolabs/qemu-guest-agent"]}}}
MULTILINE_ID = "c553c0dac74a6166062c66f742f0def0f7439353130291ff035983307c281d6b"


def get(lab, path, method="GET", **kwargs) -> requests.Response:
    return requests.request(method, URL + path, verify=str(lab.root / "pki" / "ca.pem"), timeout=10, **kwargs)


@pytest.mark.parametrize(("body", "expected"), UPSTREAM_VECTORS)
def test_schematic_ids_match_the_real_factory(body, expected):
    assert schematic_id(canonical(parse(body))) == expected


def test_multiline_values_are_literal_blocks_as_go_yaml_writes_them():
    text = canonical(parse(json.dumps(MULTILINE).encode()))
    assert "    meta:\n        - key: 10\n          value: |\n            addresses:\n" in text
    assert "        - key: 11\n          value: |-\n            no newline\n" in text
    assert "        - '{}'\n" in text and '        - "true"\n' in text
    assert schematic_id(text) == MULTILINE_ID


def empty_schematic_has_the_well_known_id(lab):
    answer = get(lab, "/schematics", "POST", data=b"{}")
    assert answer.status_code == 201
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json() == {"id": EMPTY_ID, "schematic": "customization: {}\n"}


def yaml_and_json_bodies_give_the_same_schematic(lab):
    from_yaml = get(lab, "/schematics", "POST", data=QEMU_GA, headers={"Content-Type": "application/yaml"}).json()
    from_json = get(lab, "/schematics", "POST",
                    json={"customization": {"systemExtensions": {"officialExtensions":
                                                                 ["siderolabs/qemu-guest-agent"]}}}).json()
    assert from_yaml == from_json
    assert from_yaml["schematic"] == ("customization:\n    systemExtensions:\n        officialExtensions:\n"
                                      "            - siderolabs/qemu-guest-agent\n")
    stored = get(lab, f"/schematics/{from_yaml['id']}")
    assert stored.status_code == 200 and stored.headers["Content-Type"] == "application/yaml"
    assert stored.text == from_yaml["schematic"]
    assert get(lab, "/schematics/" + "0" * 64).status_code == 404


def unknown_fields_are_rejected_and_recorded(lab):
    answer = get(lab, "/schematics", "POST", data=b"customization:\n  extraKernelArgz: [quiet]\n")
    assert answer.status_code == 400
    assert "field extraKernelArgz not found in type schematic.Customization" in answer.text
    rejects = get(lab, "/_lab/rejects").json()
    assert any("extraKernelArgz" in r["reasons"] and r["path"] == "/schematics" for r in rejects)


IMAGES = (("nocloud-amd64.qcow2", "application/octet-stream"), ("metal-amd64.qcow2", "application/octet-stream"),
          ("hcloud-amd64.raw.xz", "application/octet-stream"), ("metal-amd64.iso", "application/x-iso9660-image"))


def images_are_deterministic_with_correct_headers(lab):
    for file, content_type in IMAGES:
        image_is_deterministic_with_correct_headers(lab, file, content_type)


def image_is_deterministic_with_correct_headers(lab, file, content_type):
    path = f"/image/{EMPTY_ID}/v1.13.9/{file}"
    first, second = get(lab, path), get(lab, path)
    head = get(lab, path, "HEAD")
    assert first.status_code == head.status_code == 200
    assert first.content == second.content and len(first.content) > 0
    assert first.headers["Content-Type"] == head.headers["Content-Type"] == content_type
    assert int(head.headers["Content-Length"]) == len(first.content) == int(first.headers["Content-Length"])
    assert f'filename="{file}"' in first.headers["Content-Disposition"]
    other_version = get(lab, f"/image/{EMPTY_ID}/v1.13.8/{file}")
    assert other_version.content != first.content


def image_errors(lab):
    assert get(lab, f"/image/{EMPTY_ID}/v9.9.9/metal-amd64.qcow2").status_code == 404
    assert get(lab, f"/image/{'1' * 64}/v1.13.9/metal-amd64.qcow2").status_code == 404
    assert get(lab, f"/image/{EMPTY_ID}/v1.13.9/metal-amd64.exe").status_code == 400


def versions_and_official_extensions(lab):
    assert "v1.13.9" in get(lab, "/versions").json()
    extensions = get(lab, "/version/v1.13.9/extensions/official").json()
    names = {e["name"] for e in extensions}
    assert "siderolabs/qemu-guest-agent" in names
    assert all(e["ref"].startswith("ghcr.io/siderolabs/") and e["digest"].startswith("sha256:") for e in extensions)
    assert get(lab, "/version/v0.0.1/extensions/official").status_code == 404


def http_5xx_burst_then_recovery(lab):
    assert get(lab, "/_lab/faults", "POST", json={"kind": "http_5xx", "count": 2, "match": "/versions"}).ok
    try:
        assert [get(lab, "/versions").status_code for _attempt in range(3)] == [500, 500, 200]
    finally:
        get(lab, "/_lab/faults", "DELETE")
    log = get(lab, "/_lab/requests").json()
    assert [e["status"] for e in log if e["path"] == "/versions"][-3:] == [500, 500, 200]


def schematics_survive_a_lab_restart(lab):
    created = get(lab, "/schematics", "POST", data=b"customization:\n  extraKernelArgs: [net.ifnames=0]\n").json()
    lab.run("down")
    lab.run("up")
    stored = get(lab, f"/schematics/{created['id']}")
    assert stored.status_code == 200 and stored.text == created["schematic"]
    expected = hashlib.sha256(created["schematic"].encode()).hexdigest()
    assert created["id"] == expected


STEPS = (empty_schematic_has_the_well_known_id, yaml_and_json_bodies_give_the_same_schematic,
         unknown_fields_are_rejected_and_recorded, images_are_deterministic_with_correct_headers, image_errors,
         versions_and_official_extensions, http_5xx_burst_then_recovery, schematics_survive_a_lab_restart)


def test_image_factory_twin(make_lab):
    """One test made of steps, so pytest-xdist cannot split it across workers onto one net."""
    lab = make_lab(NET)
    lab.run("up", "--profile", "fast", "--components", "image_factory")
    for step in STEPS:
        step(lab)
