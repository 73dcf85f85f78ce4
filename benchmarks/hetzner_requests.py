"""Benchmark (not a test): the hetzner_nodes role on the Hetzner Cloud twin, calm and under a 429 storm.

Each scenario gets a fresh lab (`--profile realistic` by default: action durations from published timings,
docs/lab-hetzner.md) on net 127.87 (shared with tests/integration/hetzner/test_hetzner_nodes.py: don't run
both at once) and a copy of the lab inventory with N Hetzner workers. The role builds everything from
nothing (snapshot, network, firewalls, placement group, servers), then runs again (changed=0 expected).
In the `storm` scenario the twin answers the first S API requests with 429 rate_limit_exceeded.

Reported per scenario: wall time of the build and of the rerun, Hetzner API requests (all, and per node)
of the build, 429 answers the twin gave, and 429s the modules rode through (their `hcloud_rate_limit`).
Results also go to <state>/bench/hetzner_requests.json.

    python -m benchmarks.hetzner_requests [--nodes 3] [--storm 10] [--profile realistic|fast]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.integration.hetzner.nodes_lab import PLAYBOOKS, throttled
from tests.lab.conftest import LabHandle
from tests.playbook_runner import REPO, copy_inventory, run_playbook, task_results

NET = "127.87"
BASE = f"https://{NET}.0.4:8443"


def inventory_for(tmp: Path, nodes: int) -> Path:
    workers = {f"hcloud-worker{i}": {"node_ip": f"127.3.0.{9 + i}"} for i in range(1, nodes + 1)}
    overlay = {"remove_hosts": ["hcloud-worker1"],
               "add_hosts": {"worker": workers, "hetzner_nodes": {name: None for name in workers}}}
    return copy_inventory(tmp, "lab", overlay)


def run_role(inventory: Path, env: dict) -> tuple[float, list, str]:
    started = time.monotonic()
    result = run_playbook("-i", str(inventory), playbook=str(PLAYBOOKS / "hetzner_nodes.yml"), env=env,
                          json_output=True, timeout=3600)
    took = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(result.stdout[-4000:] + result.stderr[-2000:])
    report = json.loads(result.stdout[result.stdout.index("{"):])
    changed = sum(stats["changed"] for stats in report["stats"].values())
    return took, task_results(result.stdout), changed


def measure(nodes: int, storm: int, profile: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-hcloud-") as folder:
        tmp = Path(folder)
        lab = LabHandle(tmp / "lab-state", NET)
        lab.run("up", "--profile", profile, "--components", "hetzner,image_factory")
        try:
            ca = str(lab.root / "pki" / "ca.pem")
            inventory = inventory_for(tmp, nodes)
            env = {"TURNKEY_LAB_DIR": str(lab.root), "TURNKEY_STATE_DIR": str(tmp / "state")}
            if storm:
                requests.post(f"{BASE}/_lab/faults", json={"kind": "rate_limit_storm", "count": storm}, verify=ca,
                              timeout=10).raise_for_status()
            build_s, results, _build_changed = run_role(inventory, env)
            log = [r for r in requests.get(f"{BASE}/_lab/requests", verify=ca, timeout=10).json()
                   if r["path"].startswith("/v1/")]
            rerun_s, _rerun_results, rerun_changed = run_role(inventory, env)
            rejects = requests.get(f"{BASE}/_lab/rejects", verify=ca, timeout=10).json()
            return {"scenario": "storm %d" % storm if storm else "calm", "nodes": nodes, "profile": profile,
                    "build_s": round(build_s, 1), "rerun_s": round(rerun_s, 1), "rerun_changed": rerun_changed,
                    "requests": len(log), "requests_per_node": round(len(log) / nodes, 1),
                    "answered_429": sum(r["status"] == 429 for r in log), "absorbed_429": throttled(results),
                    "rejects": len(rejects)}
        finally:
            lab.run("down", ok=False)
            lab.kill_everything()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--storm", type=int, default=10, help="429 answers in the storm scenario")
    parser.add_argument("--profile", default="realistic", choices=["realistic", "fast"])
    options = parser.parse_args(argv)
    rows = [measure(options.nodes, storm, options.profile) for storm in (0, options.storm)]
    columns = ("scenario", "nodes", "build_s", "rerun_s", "rerun_changed", "requests", "requests_per_node",
               "answered_429", "absorbed_429", "rejects")
    print(" ".join("%17s" % c for c in columns))
    for row in rows:
        print(" ".join("%17s" % row[c] for c in columns))
    state = Path(os.environ.get("TURNKEY_STATE_DIR", REPO / ".state")) / "bench"
    state.mkdir(parents=True, exist_ok=True)
    (state / "hetzner_requests.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(row["rerun_changed"] == 0 and row["rejects"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
