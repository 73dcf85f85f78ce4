"""The long first `make tools` says what it is doing: the plan with its total, each build announced before
it starts with what it usually takes, and the time it all took. A real tools/build run: the Cilium chart
(the one tool that takes seconds) into an empty tools cache that shares the machine's Go module cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.playbook_runner import REPO

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

REAL_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "turnkey-cluster"


def build(cache, *args):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    done = subprocess.run([str(REPO / "tools" / "build"), *args], capture_output=True, text=True, env=env,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def test_each_build_is_announced_with_its_expected_duration_and_a_total_at_the_end(tmp_path):
    go_cache = REAL_CACHE / "go"
    if not (go_cache / "mod" / "cache" / "download" / "github.com" / "cilium").is_dir():
        pytest.fail("the Cilium module is not in the Go module cache; run `make tools` first", pytrace=False)
    (tmp_path / "turnkey-cluster").mkdir()
    (tmp_path / "turnkey-cluster" / "go").symlink_to(go_cache)  # no second download of the module

    # `make test` asks --check whether anything is to build: here the chart is, and a misspelt name is refused
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    check = subprocess.run([str(REPO / "tools" / "build"), "--check", "cilium-chart"], capture_output=True, text=True,
                           env=env, check=False)
    assert (check.returncode, check.stdout) == (1, "not built: cilium-chart\n"), check
    typo = subprocess.run([str(REPO / "tools" / "build"), "--check", "cilium"], capture_output=True, text=True,
                          env=env, check=False)
    assert typo.returncode == 2 and "unknown tool(s): cilium" in typo.stderr, typo

    first = build(tmp_path, "cilium-chart")
    assert build(tmp_path, "--check", "cilium-chart") == []
    assert re.fullmatch(r"tools/build: 1 of 1 to build \(cilium-chart\), about 5s in all; .*", first[0]), first
    assert re.fullmatch(r"tools/build: building cilium-chart v\S+ \(1 of 1\), usually about 5s; log: .*"
                        r"/turnkey-cluster/tools/logs/cilium-chart-v\S+\.log", first[1]), first
    assert re.fullmatch(r"tools/build: cilium-chart +v\S+ +built in \d+s +.*", first[2]), first
    assert re.fullmatch(r"tools/build: done in \d+s: 1 built, 0 present, 0 failed", first[3]), first

    # Present: nothing to announce, no total.
    again = build(tmp_path, "cilium-chart")
    assert len(again) == 1 and re.fullmatch(r"tools/build: cilium-chart +v\S+ +present +.*", again[0]), again

    # A rebuild expects what this machine's own last build took (its build.json), not the typical time.
    record = next((tmp_path / "turnkey-cluster" / "tools").glob("cilium-chart-*/build.json"))
    info = json.loads(record.read_text())
    record.write_text(json.dumps(dict(info, seconds=754.0)))
    forced = build(tmp_path, "--force", "cilium-chart")
    assert "about 12m 34s in all" in forced[0] and "usually about 12m 34s;" in forced[1], forced
