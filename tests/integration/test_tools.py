"""The real tools built by `make tools` (tools/build) run and report the versions pinned in tools/versions.env,
and those pins agree with the spec's version matrix."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.playbook_runner import REPO

VERSIONS_FILE = REPO / "tools" / "versions.env"
BUILD = REPO / "tools" / "build"


def pins():
    values = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _sep, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


PINS = pins()

# name -> (version command, the line it must print, as a regular expression built from the pin)
VERSION_CHECKS = {
    "talosctl": (["version", "--client"], r"Tag:\s+{TALOS_VERSION}\b"),
    "kube-apiserver": (["--version"], r"^Kubernetes {KUBERNETES_VERSION}$"),
    "kubectl": (["version", "--client"], r"^Client Version: {KUBERNETES_VERSION}$"),
    "etcd": (["--version"], r"^etcd Version: {ETCD_NUMBER}$"),
    "helm": (["version"], r'Version:"{HELM_VERSION}"'),
    "flux": (["version", "--client"], r"^flux: {FLUX_VERSION}$"),
    "kube-controller-manager": (["--version"], r"^Kubernetes {KUBERNETES_VERSION}$"),
    "kube-scheduler": (["--version"], r"^Kubernetes {KUBERNETES_VERSION}$"),
    "kwok": (["--version"], r"^kwok version {KWOK_VERSION} "),
}


def expected(pattern):
    fields = {key: re.escape(value) for key, value in PINS.items()}
    fields["ETCD_NUMBER"] = re.escape(PINS["ETCD_VERSION"].lstrip("v"))
    return re.compile(pattern.format(**fields), re.MULTILINE)


def tool_path(name):
    result = subprocess.run([str(BUILD), "--print-path", name], capture_output=True, text=True, timeout=60,
                            check=False)
    if result.returncode != 0:
        pytest.fail("%s is missing; run `make tools` (%s)" % (name, result.stderr.strip()), pytrace=False)
    return result.stdout.strip()


@pytest.mark.parametrize("name", sorted(VERSION_CHECKS))
def test_tool_reports_pinned_version(name):
    args, pattern = VERSION_CHECKS[name]
    path = tool_path(name)
    result = subprocess.run([path, *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert expected(pattern).search(result.stdout), "%s %s printed:\n%s" % (name, " ".join(args), result.stdout)


def test_print_path_names_the_cache_folder():
    path = tool_path("talosctl")
    assert path.endswith("/turnkey-cluster/tools/talosctl-%s/talosctl" % PINS["TALOS_VERSION"])


def test_pins_follow_the_spec_version_matrix():
    for inventory in ("lab", "example"):
        spec = yaml.safe_load((REPO / "inventory" / inventory / "group_vars/all/cluster.yml").read_text())
        matrix = spec["cluster_versions"]
        assert PINS["TALOS_VERSION"] == matrix["talos"], inventory
        assert PINS["KUBERNETES_VERSION"].lstrip("v") == str(matrix["kubernetes"]).lstrip("v"), inventory
        # The proxy serves a later patch of the spec's Flux minor only (tools/versions.env says why).
        assert PINS["FLUX_VERSION"].split(".")[:2] == matrix["flux"].split(".")[:2], inventory
