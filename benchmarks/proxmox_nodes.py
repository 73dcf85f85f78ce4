"""Benchmark (not a test): layer 01 on the Proxmox VE twin for 3, 6 and 12 nodes.

Each size gets a fresh lab (`--profile realistic` by default: per-operation delays from published
timings, docs/lab-proxmox.md) on net 127.89 (`--net`) and a copy of the lab inventory with that many Proxmox nodes
(3 control planes, the rest workers). Reported per size: wall time of the whole site.yml build, of its
Proxmox role (proxmox_nodes_s: schematic, image, template, clones, boot) and of the rerun, Proxmox
API requests per node, image downloads and templates - so the parallelism (one image, one template,
clones in parallel) is visible; the ratio of the largest to the smallest size's Proxmox role time, and
the seconds of each of the role's steps per size (where a growing node count costs). Results also go to
<state>/bench/proxmox_nodes.json.

    python -m benchmarks.proxmox_nodes [--sizes 3,6,12] [--profile realistic|fast] [--concurrency 3] [--net 127.89]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.lab.conftest import LabHandle
from tests.playbook_runner import REPO, copy_inventory, lab_env, recap, run_playbook

NET = "127.89"


def inventory_for(tmp: Path, size: int) -> Path:
    workers = {f"worker{i}": {"node_ip": f"127.2.2.{i}", "node_vmid": 1999 + i} for i in range(1, size - 2)}
    overlay = {"remove_hosts": ["hcloud-worker1", "worker1", "worker2", "worker3"],
               "add_hosts": {"worker": workers, "proxmox_nodes": {name: None for name in workers}}}
    return copy_inventory(tmp, "lab", overlay)


def measure(size: int, profile: str, concurrency: int, net: str = NET) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-pve-") as folder:
        tmp = Path(folder)
        lab = LabHandle(tmp / "lab-state", net)
        lab.run("up", "--profile", profile, "--components", "proxmox,image_factory")
        try:
            ca = str(lab.root / "pki" / "ca.pem")
            inventory = inventory_for(tmp, size)
            env = {**lab_env(tmp), "TURNKEY_LAB_DIR": str(lab.root)}
            # The whole site (layer 00 makes the CSI token and the Talos bundle that layer 01's configs need);
            # the Proxmox part is read from the run report's role timings.
            # no Talos node twin in this lab: the Talos cluster steps are skipped, and layers 02 and 03 and
            # verify with them (they need the cluster)
            args = ("-i", str(inventory), "-e", f"proxmox_nodes_concurrency={concurrency}",
                    "--skip-tags", "needs_cluster")
            started = time.monotonic()
            build = run_playbook(*args, env=env, timeout=3600)
            build_s = time.monotonic() - started
            if build.returncode != 0:
                raise SystemExit(build.stdout[-4000:])
            log = requests.get(f"https://{net}.0.3:8006/_lab/requests", verify=ca, timeout=10).json()
            report = json.loads((tmp / "state" / "runs" / "last.json").read_text())
            role_s = next(r["duration_s"] for r in report["roles"] if r["name"] == "turnkey.cluster.proxmox_nodes")
            # where the role's time goes: each of its tasks (a task runs once for all hosts)
            steps = {}
            for task in report["tasks"]:
                if task["role"] == "turnkey.cluster.proxmox_nodes":
                    steps[task["name"]] = round(steps.get(task["name"], 0.0) + task["duration_s"], 1)
            started = time.monotonic()
            rerun = run_playbook(*args, env=env, timeout=3600)
            rerun_s = time.monotonic() - started
            changed = sum(counts["changed"] for counts in recap(rerun.stdout).values())
            api = [r for r in log if not r["path"].startswith("/_lab/")]
            return {"nodes": size, "profile": profile, "concurrency": concurrency,
                    "build_s": round(build_s, 1), "proxmox_nodes_s": round(role_s, 1), "rerun_s": round(rerun_s, 1),
                    "rerun_changed": changed,
                    "api_calls": len(api), "api_calls_per_node": round(len(api) / size, 1),
                    "image_downloads": sum(r["method"] == "POST" and r["path"].endswith("/download-url") for r in api),
                    "templates": sum(r["method"] == "POST" and r["path"].endswith("/template") for r in api),
                    "clones": sum(r["method"] == "POST" and r["path"].endswith("/clone") for r in api),
                    "proxmox_nodes_steps": steps}
        finally:
            lab.run("down", ok=False)
            lab.kill_everything()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,6,12")
    parser.add_argument("--profile", default="realistic", choices=["realistic", "fast"])
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--net", default=NET, help="the lab's loopback net (127.x)")
    options = parser.parse_args(argv)
    rows = [measure(int(size), options.profile, options.concurrency, options.net)
            for size in options.sizes.split(",")]
    columns = ("nodes", "build_s", "proxmox_nodes_s", "rerun_s", "rerun_changed", "api_calls_per_node",
               "image_downloads", "templates", "clones")
    print(" ".join("%15s" % c for c in columns))
    for row in rows:
        print(" ".join("%15s" % row[c] for c in columns))
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print("proxmox_nodes: %d nodes take %.2fx the time of %d" % (
            last["nodes"], last["proxmox_nodes_s"] / first["proxmox_nodes_s"], first["nodes"]))
    steps = list(dict.fromkeys(name for row in rows for name in row["proxmox_nodes_steps"]))
    if steps:
        print("seconds per step of proxmox_nodes (nodes: %s)" % ", ".join(str(row["nodes"]) for row in rows))
        for name in steps:
            seconds = ("%6s" % row["proxmox_nodes_steps"].get(name, "-") for row in rows)
            print("  %-70s %s" % (name[:70], "  ".join(seconds)))
    save_results("proxmox_nodes", rows)
    return 0


def save_results(name: str, rows: list[dict]) -> None:
    """<repo>/.state/bench/<name>.json, and where it went on stderr."""
    out = REPO / ".state" / "bench" / ("%s.json" % name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print("results: %s" % out, file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
