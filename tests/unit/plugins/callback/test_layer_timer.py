"""The turnkey.cluster.layer_timer callback, on real ansible-playbook runs of tests/fixtures/callback.

The fixture site has a validation play before each of two layers (00-first, 01-second), a role with a
handler, changed tasks, an ignored failure, no_log tasks handling a secret, a play of no layer, and two
local hosts run with two forks. All runs start at once (module fixture) to keep the file fast, once even
under pytest-xdist; each test then reads the output and the report of one run.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

REPO = Path(__file__).resolve().parents[4]
FIXTURE = REPO / "tests" / "fixtures" / "callback"
SECRET = "s3cr3t-layer-timer-fixture-7d41"
BANNER = re.compile(r"^=== layer (\S+) ===$", re.M)
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)"
                   r"\s+rescued=(\d+)\s+ignored=(\d+)", re.M)
REPORT_NAME = re.compile(r"^\d{8}T\d{6}Z-\d+\.json$")

EXPECTED_BANNERS = ["validation", "00-first", "validation", "01-second", "other"]
# Tasks, then counts of host results by status over the two hosts (a changed result counts under changed
# only; a failed one under failed, and also under ignored when ignore_errors let the play go on).
COUNTS = ("tasks", "ok", "changed", "failed", "skipped", "unreachable", "ignored")
EXPECTED_LAYERS = {
    "validation": dict(zip(COUNTS, (2, 4, 0, 0, 0, 0, 0), strict=True)),
    "00-first": dict(zip(COUNTS, (6, 6, 4, 2, 0, 0, 2), strict=True)),
    "01-second": dict(zip(COUNTS, (4, 4, 2, 0, 2, 0, 0), strict=True)),
    "other": dict(zip(COUNTS, (1, 2, 0, 0, 0, 0, 0), strict=True)),
}
REPORT_KEYS = {"playbook", "playbooks", "check_mode", "start", "end", "duration_s", "layers", "roles",
               "tasks", "stats"}
LAYER_KEYS = {"name", "start", "end", "duration_s", *COUNTS}
TASK_KEYS = {"layer", "role", "name", "handler", "start", "end", "duration_s", "hosts"}
# The PLAY RECAP columns, as the report's stats name them.
RECAP_KEYS = ("ok", "changed", "unreachable", "failures", "skipped", "rescued", "ignored")


def _bin(name):
    """The tool of the venv running the tests, else of the repository's .venv."""
    for folder in (Path(sys.executable).parent, REPO / ".venv" / "bin"):
        if (folder / name).exists():
            return folder / name
    raise AssertionError("%s not found beside %s nor in %s/.venv/bin" % (name, sys.executable, REPO))


class Run:
    """One command, run in the background by sh, which leaves its output and exit status in files, so
    that every pytest-xdist worker can read the runs started once by the first."""

    def __init__(self, folder, name, argv, cwd, env, state_dir=None):
        self.name = name
        self.argv = [str(arg) for arg in argv]
        self.cwd = cwd
        self.env = env
        self.state_dir = state_dir
        self.files = {key: folder / ("%s.%s" % (name, key)) for key in ("out", "err", "rc")}
        self.returncode = self.stdout = self.stderr = None

    def start(self):
        script = 'out=$1 err=$2 rc=$3; shift 3; "$@" >"$out" 2>"$err"; echo $? >"$rc.tmp"; mv "$rc.tmp" "$rc"'
        files = [str(self.files[key]) for key in ("out", "err", "rc")]
        return subprocess.Popen(["sh", "-c", script, "sh", *files, *self.argv], cwd=self.cwd, env=self.env,
                                stdin=subprocess.DEVNULL)

    def wait(self, timeout=180):
        deadline = time.monotonic() + timeout
        while self.returncode is None:
            if self.files["rc"].exists():
                self.returncode = int(self.files["rc"].read_text())
                self.stdout = self.files["out"].read_text()
                self.stderr = self.files["err"].read_text()
            elif time.monotonic() > deadline:
                raise AssertionError("%s did not finish within %ss: %s" % (self.name, timeout, self.argv))
            else:
                time.sleep(0.05)
        return self

    @property
    def runs(self):
        return self.state_dir / "runs"

    def report(self):
        return json.loads((self.runs / "last.json").read_text())

    def explain(self):
        output = (self.name, self.returncode, self.stdout, self.stderr)
        return "%s: rc=%s\n--- stdout\n%s\n--- stderr\n%s" % output


def plan(root):
    """The runs, all in folders under root; the same plan in every worker."""
    site = root / "site"
    collections = root / "collections"
    ini_cfg = root / "ini" / "ansible.cfg"
    base = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "TURNKEY_"))}
    base.update(ANSIBLE_CONFIG=str(site / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(collections),
                ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCAL_TEMP=str(root / "ansible-tmp"))
    playbook = _bin("ansible-playbook")

    def run(name, args, state_dir, **env):
        environment = dict(base, **env)
        if name not in ("default", "ini", "doc"):
            environment["TURNKEY_STATE_DIR"] = str(state_dir)
        return Run(root, name, [playbook, *args], site, environment, state_dir)

    return [
        run("site", ["site.yml", "-v"], root / "state-site"),
        run("check", ["site.yml", "--check"], root / "state-check"),
        run("json", ["small.yml"], root / "state-json", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json"),
        # Neither the environment nor ansible.cfg names a folder: .state beside the playbook.
        run("default", ["small.yml"], site / ".state"),
        run("ini", ["small.yml"], ini_cfg.parent / "from-ini", ANSIBLE_CONFIG=str(ini_cfg)),
        run("disabled", ["small.yml"], root / "state-disabled", TURNKEY_LAYER_TIMER_ENABLED="false"),
        Run(root, "doc", [_bin("ansible-doc"), "-t", "callback", "turnkey.cluster.layer_timer"], site, base),
    ]


def prepare(root):
    # The collection, found by its FQCN: <root>/collections/ansible_collections/turnkey/cluster -> the repo.
    namespace = root / "collections" / "ansible_collections" / "turnkey"
    namespace.mkdir(parents=True)
    (namespace / "cluster").symlink_to(REPO, target_is_directory=True)
    site = root / "site"
    shutil.copytree(FIXTURE, site)
    # An ini setting is relative to the folder of its file: put that file elsewhere than the playbook.
    ini_cfg = root / "ini" / "ansible.cfg"
    ini_cfg.parent.mkdir()
    ini_cfg.write_text((site / "ansible.cfg").read_text()
                       .replace("./inventory.yml", str(site / "inventory.yml"))
                       .replace("./roles", str(site / "roles"))
                       + "\n[turnkey]\nstate_dir = ./from-ini\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """All runs start at once, in the first worker that gets here (the folder it creates is shared by the
    pytest-xdist workers of this session); every worker then waits for the ones its tests read."""
    basetemp = tmp_path_factory.getbasetemp()
    root = (basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp) / "layer_timer"
    try:
        root.mkdir()
    except FileExistsError:
        owner = False
    else:
        owner = True
    planned = plan(root)
    processes = []
    if owner:
        prepare(root)
        processes = [run.start() for run in planned]
    yield {run.name: run for run in planned}
    for process in processes:
        process.wait()


def finished(runs, name, rc=0):
    run = runs[name].wait()
    assert run.returncode == rc, run.explain()
    return run


def test_banner_once_per_layer_change(runs):
    run = finished(runs, "site")
    assert BANNER.findall(run.stdout) == EXPECTED_BANNERS
    # Each banner follows the PLAY line of the play that changed the layer.
    assert "PLAY [Validate the fake spec for layer 00] ***" in run.stdout.split("=== layer validation ===")[0]


def test_timing_table(runs):
    run = finished(runs, "site")
    report = run.report()
    lines = run.stdout[run.stdout.index("=== timing by layer ===") :].splitlines()
    assert lines[1].split() == ["layer", "wall_s", "tasks", "changed", "failed", "ignored"]
    rows = [line.split() for line in lines[2 : 2 + len(EXPECTED_LAYERS)]]
    table = {row[0]: row[1:] for row in rows}
    assert set(table) == set(EXPECTED_LAYERS)
    walls = [float(row[1]) for row in rows]
    assert walls == sorted(walls, reverse=True), lines
    for layer in report["layers"]:
        expected = EXPECTED_LAYERS[layer["name"]]
        assert table[layer["name"]] == ["%.2f" % layer["duration_s"]] + [
            str(expected[key]) for key in ("tasks", "changed", "failed", "ignored")]
    total = lines[2 + len(EXPECTED_LAYERS)].split()
    assert total == ["total", "%.2f" % report["duration_s"], "13", "6", "2", "2"]
    roles = lines[3 + len(EXPECTED_LAYERS) :]
    assert roles[0] == "=== timing by role ==="
    assert roles[1].split() == ["role", "s", "tasks"]
    assert roles[2].split() == ["fixture_role", "%.2f" % report["roles"][0]["duration_s"], "3"]
    assert roles[3] == "run report: %s" % next(p for p in run.runs.iterdir() if p.name != "last.json")
    # The table comes after Ansible's own recap.
    assert run.stdout.index("PLAY RECAP") < run.stdout.index("=== timing by layer ===")


def test_report_structure_and_counts(runs):
    run = finished(runs, "site")
    report = run.report()
    assert set(report) == REPORT_KEYS
    assert report["playbook"] == "site.yml"
    assert report["playbooks"] == ["site.yml"]
    assert report["check_mode"] is False
    assert [layer["name"] for layer in report["layers"]] == ["validation", "00-first", "01-second", "other"]
    for layer in report["layers"]:
        assert set(layer) == LAYER_KEYS
        assert {key: layer[key] for key in EXPECTED_LAYERS[layer["name"]]} == EXPECTED_LAYERS[layer["name"]]
    assert [(role["name"], role["tasks"], sorted(role)) for role in report["roles"]] == [
        ("fixture_role", 3, ["duration_s", "name", "tasks"])]

    tasks = report["tasks"]
    assert len(tasks) == 13
    for task in tasks:
        assert set(task) == TASK_KEYS
        assert set(task["hosts"]) == {"node1", "node2"}
        for entry in task["hosts"].values():
            assert set(entry) <= {"status", "duration_s", "ignored"}
            assert entry["status"] in {"ok", "changed", "failed", "skipped", "unreachable"}
    by_name = {task["name"]: task for task in tasks}
    for entry in by_name["Fail with the secret, ignored"]["hosts"].values():
        assert (entry["status"], entry.get("ignored")) == ("failed", True)
    assert {host["status"] for host in by_name["Use the secret"]["hosts"].values()} == {"changed"}
    assert {host["status"] for host in by_name["Never run"]["hosts"].values()} == {"skipped"}
    handler = by_name["Fixture handler"]
    assert (handler["handler"], handler["role"], handler["layer"]) == (True, "fixture_role", "01-second")
    assert sum(task["handler"] for task in tasks) == 1
    assert [task["role"] for task in tasks if task["role"]] == ["fixture_role"] * 3
    # A templated name stays as written: no variable value reaches the report.
    assert "Greet {{ greeting_target }}" in by_name
    assert "Greet world" in run.stdout

    # The stats are Ansible's recap counters.
    recap = {match.group(1): dict(zip(RECAP_KEYS, map(int, match.groups()[1:]), strict=True))
             for match in RECAP.finditer(run.stdout)}
    assert set(recap) == {"node1", "node2"}
    assert report["stats"] == recap


def _time(text):
    assert text.endswith("Z"), text
    return datetime.datetime.fromisoformat(text)


def test_report_timings(runs):
    report = finished(runs, "site").report()
    start, end = _time(report["start"]), _time(report["end"])
    assert start <= end
    assert report["duration_s"] == pytest.approx((end - start).total_seconds(), abs=0.002)
    for task in report["tasks"]:
        # A task lasts from its start to its last host result; each host is timed from the task start.
        assert start <= _time(task["start"]) <= _time(task["end"]) <= end
        assert task["duration_s"] == max(entry["duration_s"] for entry in task["hosts"].values())
    sleep = {task["name"]: task for task in report["tasks"]}["Sleep a host-dependent time"]["hosts"]
    assert sleep["node2"]["duration_s"] >= 0.6
    assert sleep["node1"]["duration_s"] < sleep["node2"]["duration_s"]
    layers = sum(layer["duration_s"] for layer in report["layers"])
    assert layers <= report["duration_s"] + 0.01
    assert layers >= report["duration_s"] - 1.0
    assert report["roles"][0]["duration_s"] == pytest.approx(
        sum(task["duration_s"] for task in report["tasks"] if task["role"] == "fixture_role"), abs=0.005)


def test_report_files_are_private_and_atomic(runs):
    run = finished(runs, "site")
    names = sorted(path.name for path in run.runs.iterdir())
    assert len(names) == 2 and names[1] == "last.json" and REPORT_NAME.match(names[0]), names
    assert (run.runs / names[0]).read_text() == (run.runs / "last.json").read_text()
    for path in (run.state_dir, run.runs):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for name in names:
        assert stat.S_IMODE((run.runs / name).stat().st_mode) == 0o600, name


def test_secret_never_leaks(runs):
    run = finished(runs, "site")
    # The secret was used: the no_log tasks ran (censored in the output) on both hosts.
    assert run.stdout.count("the output has been hidden") >= 6, run.stdout
    assert SECRET not in (run.runs / "last.json").read_text()
    assert SECRET not in run.stdout
    assert SECRET not in run.stderr


def test_check_mode(runs):
    run = finished(runs, "check")
    report = run.report()
    assert report["check_mode"] is True
    assert BANNER.findall(run.stdout) == EXPECTED_BANNERS
    assert len(report["tasks"]) == 13
    by_name = {task["name"]: task for task in report["tasks"]}
    # Commands do not run in check mode; the handler still does.
    for name in ("Fail with the secret, ignored", "Sleep a host-dependent time"):
        assert {entry["status"] for entry in by_name[name]["hosts"].values()} == {"skipped"}
    assert by_name["Fixture handler"]["handler"] is True
    assert SECRET not in (run.runs / "last.json").read_text() + run.stdout + run.stderr


def test_json_stdout_stays_json(runs):
    run = finished(runs, "json")
    document = json.loads(run.stdout)
    assert document["plays"][0]["play"]["name"] == "00 first | one task"
    assert BANNER.findall(run.stderr) == ["00-first"]
    assert "=== timing by layer ===" in run.stderr
    assert run.report()["layers"][0]["name"] == "00-first"


def test_default_state_dir_is_beside_the_playbook(runs):
    run = finished(runs, "default")
    assert run.report()["playbook"] == "small.yml"
    assert stat.S_IMODE(run.state_dir.stat().st_mode) == 0o700


def test_state_dir_from_ini_is_relative_to_the_ini_file(runs):
    run = finished(runs, "ini")
    assert run.report()["layers"][0]["tasks"] == 1


def test_disabled(runs):
    run = finished(runs, "disabled")
    assert not BANNER.findall(run.stdout)
    assert "=== timing by layer ===" not in run.stdout
    assert not run.state_dir.exists()


def test_ansible_doc(runs):
    run = finished(runs, "doc")
    assert "TURNKEY_STATE_DIR" in run.stdout
    assert "section: turnkey" in run.stdout or "[turnkey]" in run.stdout
