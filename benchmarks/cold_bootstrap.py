"""Benchmark (not a test): a modelled cold bootstrap, per layer and phase, and its cost per node.

A cold bootstrap is `site.yml` on fresh machines: layer 00 makes the secrets, layer 01 builds the machines,
installs Talos on them, bootstraps etcd and brings every node to Ready, layer 02 configures Vault, publishes the
platform tree and waits until Flux has reconciled it (push -> every Kustomization Ready). Run on the lab with
the realistic profile, every twin takes what the real service takes (docs/lab-proxmox.md, docs/lab-hetzner.md and
docs/lab-talos.md cite the sources: image download and import, linked clones, guest boot, Talos install
and reboot, etcd and kube-apiserver start, the Cilium image pull before a node is Ready). What the lab
cannot model (the machine's firmware, a slow uplink) is not in it; what it models is the order and the
waits, so the table shows where a real cold bootstrap spends its time and what grows with the node count.

- `example`: the example topology (inventory/example, which inventory/lab mirrors on loopback: 3 control
  planes and 3 workers on Proxmox VE, 1 Hetzner Cloud worker), every phase of layers 00 to 02;
- `--sizes 3,6,12`: the same build with that many Proxmox nodes (3 control planes, the rest workers, no
  Hetzner worker), for the cost per node as the cluster grows.

Layer 02's controllers are the real ones (Flux, External Secrets, sealed-secrets) and KWOK plays the pods; the
realistic profile does not model image pulls or container start-up of the platform's pods, so its layer 02
time is the control loop's and the play's own (what grows with the tree, not with the network).

Each run gets a fresh lab (every component) on net 127.89 and
its own state folder; the node addresses are the lab inventory's (127.2.x.x), so nothing else may run a
Talos node twin meanwhile (the e2e test, a developer's `lab up`). Results also go to
<state>/bench/cold_bootstrap.json.

    python -m benchmarks.cold_bootstrap [--sizes 3,6,12] [--no-example] [--profile realistic|fast]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.proxmox_nodes import NET, inventory_for, save_results
from tests.lab.conftest import LabHandle
from tests.playbook_runner import copy_inventory, lab_env, run_playbook

# Layer 01's phases, in build order: a task belongs to the first phase whose role matches and, when given,
# whose name starts with one of the prefixes.
PHASES = (
    ("configs", "turnkey.cluster.talos_config", ()),
    ("proxmox VMs", "turnkey.cluster.proxmox_nodes", ()),
    ("hetzner servers", "turnkey.cluster.hetzner_nodes", ()),
    ("apply (install, reboot)", "turnkey.cluster.talos_cluster",
     ("Find whether the node is a new machine", "Apply the machine config", "Apply new")),
    ("bootstrap etcd", "turnkey.cluster.talos_cluster", ("Bootstrap etcd",)),
    ("etcd, API server, nodes registered", "turnkey.cluster.talos_cluster", ("Wait for etcd membership",)),
    ("cilium", "turnkey.cluster.cilium", ()),
    ("sealed-secrets key", "turnkey.cluster.sealed_secrets_key", ()),
    ("nodes Ready", "turnkey.cluster.talos_cluster", ("Wait until every node is Ready",)),
    ("02 vault", "turnkey.cluster.vault_config", ()),
    ("02 tree render", "turnkey.cluster.platform_tree", ()),
    ("02 publish (commit, push)", "turnkey.cluster.gitops_publish", ()),
    ("02 flux bootstrap", "turnkey.cluster.flux_bootstrap", ()),
    ("02 push -> all Ready", "turnkey.cluster.flux_wait", ()),
)


def phase_of(task: dict) -> str:
    for phase, role, prefixes in PHASES:
        if task["role"] == role and (not prefixes or task["name"].startswith(prefixes)):
            return phase
    return "other"


def breakdown(report: dict) -> dict:
    """Seconds per layer (wall) and per phase of layers 01 and 02 (their tasks' durations: one after the other)."""
    layers = {layer["name"]: layer["duration_s"] for layer in report["layers"]}
    phases: dict[str, float] = {}
    for task in report["tasks"]:
        if task["layer"].startswith(("01", "02")):
            phases[phase_of(task)] = phases.get(phase_of(task), 0.0) + task["duration_s"]
    order = [name for name, _role, _prefixes in PHASES] + ["other"]
    return {"layers": layers, "phases": {name: round(phases[name], 1) for name in order if name in phases}}


def build(label: str, inventory_of, profile: str) -> dict:
    """One cold bootstrap on a fresh lab; inventory_of(tmp) makes the inventory."""
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as folder:
        tmp = Path(folder)
        lab = LabHandle(tmp / "lab-state", NET)
        lab.run("up", "--profile", profile)
        try:
            env = {**lab_env(tmp), "TURNKEY_LAB_DIR": str(lab.root)}
            started = time.monotonic()
            done = run_playbook("-i", str(inventory_of(tmp)), env=env, timeout=3600)
            wall = time.monotonic() - started
            if done.returncode != 0:
                raise SystemExit("%s: site.yml failed:\n%s" % (label, done.stdout[-4000:]))
            report = json.loads((tmp / "state" / "runs" / "last.json").read_text())
            row = {"run": label, "profile": profile, "site_s": round(wall, 1), **breakdown(report)}
            print("%s: %s" % (label, json.dumps(row)), file=sys.stderr, flush=True)  # a long run shows progress
            return row
        finally:
            lab.run("down", ok=False)
            lab.kill_everything()


def table(rows: list[dict]) -> str:
    layer_names = sorted({name for row in rows for name in row["layers"]})
    phase_names = [name for name, _role, _prefixes in PHASES] + ["other"]
    phase_names = [name for name in phase_names if any(name in row["phases"] for row in rows)]
    width = max(len(name) for name in ["site.yml", *layer_names, *phase_names]) + 4
    lines = ["%-*s" % (width, "seconds") + "".join("%12s" % row["run"] for row in rows)]
    lines.append("%-*s" % (width, "site.yml") + "".join("%12.1f" % row["site_s"] for row in rows))
    for name in layer_names:
        lines.append("%-*s" % (width, "layer " + name) + "".join("%12s" % row["layers"].get(name, "-") for row in rows))
    for name in phase_names:
        label = "  " + ("" if name.startswith("02 ") else "01 ") + name
        lines.append("%-*s" % (width, label) + "".join("%12s" % row["phases"].get(name, "-") for row in rows))
    sized = [row for row in rows if row.get("nodes")]
    if sized:
        base = sized[0]
        lines.append("%-*s" % (width, "per node (site / nodes)") + "".join(
            "%12s" % (round(row["site_s"] / row["nodes"], 1) if row.get("nodes") else "-") for row in rows))
        lines.append("%-*s" % (width, "x the %d-node build" % base["nodes"]) + "".join(
            "%12s" % (round(row["site_s"] / base["site_s"], 2) if row.get("nodes") else "-") for row in rows))
        vms = "proxmox VMs"
        if base["phases"].get(vms):
            lines.append("%-*s" % (width, "  01 %s x %d nodes" % (vms, base["nodes"])) + "".join(
                "%12s" % (round(row["phases"][vms] / base["phases"][vms], 2) if row.get("nodes") else "-")
                for row in rows))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,6,12")
    parser.add_argument("--no-example", action="store_true", help="skip the example topology's run")
    parser.add_argument("--profile", default="realistic", choices=["realistic", "fast"])
    options = parser.parse_args(argv)
    rows = []
    if not options.no_example:
        rows.append(build("example", lambda tmp: copy_inventory(tmp, "lab"), options.profile))
    for size in [int(size) for size in options.sizes.split(",") if size]:
        row = build("%d nodes" % size, lambda tmp, size=size: inventory_for(tmp, size), options.profile)
        rows.append({**row, "nodes": size})
    print(table(rows))
    save_results("cold_bootstrap", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
