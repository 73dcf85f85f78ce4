"""The Flux controllers tools/build made: each is its module at the pinned version (what the binary records),
all four from one dependency graph (the joint wrapper module), and each runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.integration.flux.test_flux_manifests import CONTROLLERS, pins
from tests.tools import built_tools


def go():
    found = os.environ.get("GO") or shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(found, os.X_OK):
        pytest.fail("no Go toolchain (tools/build needs one too)", pytrace=False)
    return found


def recorded(path):
    """{module: version built} of the main module and every dependency `go version -m` lists (a replaced one
    at its replacement's version: the `=>` line after it)."""
    out = subprocess.run([go(), "version", "-m", path], capture_output=True, text=True, check=True).stdout
    modules, last = {}, None
    for line in out.splitlines():
        found = re.match(r"^\s+(mod|dep)\s+(\S+)\s+(v\S+)", line)
        if found:
            last = found.group(2)
            modules[last] = found.group(3)
        elif last and (replaced := re.match(r"^\s+=>\s+(\S+)\s+(v\S+)", line)):
            modules[last] = replaced.group(2)
    return modules


def test_controllers_are_the_pinned_modules_from_one_dependency_graph():
    versions = pins()
    tools = built_tools(*("TURNKEY_" + name.upper().replace("-", "_") for name in CONTROLLERS))
    graphs = {}
    for name in CONTROLLERS:
        path = tools["TURNKEY_" + name.upper().replace("-", "_")]
        modules = recorded(path)
        assert modules["github.com/fluxcd/" + name] == versions["FLUX_%s_VERSION" % name.upper().replace("-", "_")]
        graphs[name] = modules
        done = subprocess.run([path, "--help"], capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "--health-addr" in done.stdout + done.stderr, done.stderr
    # one version of each library they share (joint minimal version selection)
    for module in ("k8s.io/client-go", "sigs.k8s.io/controller-runtime", "github.com/fluxcd/pkg/runtime"):
        assert len({graph[module] for graph in graphs.values()}) == 1, module
    assert graphs["source-controller"]["github.com/fluxcd/pkg/artifact"] == "v0.18.1"  # the served substitute
