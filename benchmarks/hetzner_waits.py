"""Benchmark (not a test): how long the Hetzner clients wait when the API pushes back.

The tests assert what happens (the answer arrives, the 429s are ridden through, a stuck server ends in a
`timeout` error); how long it takes depends on the machine's load, so it is measured here instead:

- `library_429`: the hcloud library (GET /locations) through a storm of 2 x 429 (its own backoff);
- `snapshot_429`: turnkey.cluster.hcloud_talos_snapshot finding its snapshot through 4 x 429 (paced at the
  refill interval, 1.25x longer per 429 in a row: about 5.8 s of waiting);
- `stuck_server`: turnkey.cluster.hcloud_server with timeout=3 on a server the twin keeps `initializing`,
  until it gives up.

One fresh lab (`hetzner,image_factory`, fast profile) on net 127.85, shared with
tests/integration/hetzner/test_hetzner_modules.py: don't run both at once. Results also go to
<state>/bench/hetzner_waits.json.

    python -m benchmarks.hetzner_waits
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.hetzner.test_hetzner_modules import NET, Lab, snapshot_task
from tests.lab.conftest import LabHandle
from tests.playbook_runner import REPO


def timed(function):
    started = time.monotonic()
    outcome = function()
    return round(time.monotonic() - started, 1), outcome


def measure(lab: Lab) -> list[dict]:
    rows = []
    lab.play([snapshot_task()])  # built once; the storm below hits the lookup of a snapshot that exists

    lab.lab("POST", "/_lab/faults", {"kind": "rate_limit_storm", "count": 2})
    took, locations = timed(lab.client.locations.get_all)
    rows.append({"case": "library_429", "seconds": took, "storm": 2, "ok": len(locations) == 3})

    lab.lab("POST", "/_lab/faults", {"kind": "rate_limit_storm", "count": 4})
    took, results = timed(lambda: lab.play([snapshot_task()]))
    limit = results["Talos snapshot"]["hcloud_rate_limit"]
    rows.append({"case": "snapshot_429", "seconds": took, "storm": 4, "waited_s": limit["waited"],
                 "ok": limit["throttled"] == 4})

    lab.lab("POST", "/_lab/faults", {"kind": "stuck_initializing", "match": "bench-stuck"})
    stuck_server = {"name": "bench-stuck", "image": "debian-12", "server_type": "cx22", "location": "fsn1",
                    "state": "started", "timeout": 3}
    stuck = {"name": "Stuck", "turnkey.cluster.hcloud_server": stuck_server}
    took, results = timed(lambda: lab.play([stuck], expect_failure=True))
    rows.append({"case": "stuck_server", "seconds": took, "timeout_s": 3,
                 "ok": (results["Stuck"].get("hcloud_error") or {}).get("code") == "timeout"})
    return rows


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-hcloud-waits-") as folder:
        tmp = Path(folder)
        handle = LabHandle(tmp / "lab-state", NET)
        handle.run("up", "--profile", "fast", "--components", "hetzner,image_factory")
        os.environ["REQUESTS_CA_BUNDLE"] = str(handle.root / "pki" / "ca.pem")  # the hcloud library's CA
        try:
            rows = measure(Lab(handle, tmp))
        finally:
            handle.run("down", ok=False)
            handle.kill_everything()
    for row in rows:
        print("%-14s %6.1f s  %s" % (row["case"], row["seconds"],
                                     "  ".join("%s=%s" % item for item in row.items() if item[0] not in
                                               ("case", "seconds"))))
    state = Path(os.environ.get("TURNKEY_STATE_DIR", REPO / ".state")) / "bench"
    state.mkdir(parents=True, exist_ok=True)
    (state / "hetzner_waits.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
