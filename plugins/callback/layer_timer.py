# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: layer_timer
type: aggregate
short_description: Layer banners, a per-layer and per-role timing table and a JSON run report
version_added: 0.1.0
description:
  - Prints a one-line banner (C(=== layer NAME ===)) each time a play of another layer starts. A play's
    layer is its play variable C(turnkey_layer); a play without it counts under C(validation) when its
    name starts with C(Validate), and under C(other) otherwise.
  - At the end of the run prints a compact table of the layers (wall seconds, tasks, changed, failed,
    ignored) and of the roles (seconds, tasks), each sorted by time, longest first.
  - Writes a JSON run report to C(<state_dir>/runs/<UTC timestamp>-<pid>.json) and a copy to
    C(<state_dir>/runs/last.json), each atomically and with mode C(0600); folders it creates get mode
    C(0700). The report holds names, timings, statuses and counts only, never task results, arguments
    or variable values, so C(no_log) tasks leak nothing through it.
  - A task's duration runs from its start to its last host result; each host's duration from the task
    start (from the host's own start under the C(free) strategy). Handlers are included.
  - When the stdout callback writes JSON (C(json), C(jsonl)), the banners and the table go to stderr so
    the standard output stays machine-readable.
  - Runs beside the stdout callback; enable it with C(callbacks_enabled = turnkey.cluster.layer_timer).
author: turnkey.cluster maintainers (!UNKNOWN)
requirements:
  - Enabled in C(callbacks_enabled) (ansible.cfg) or C(ANSIBLE_CALLBACKS_ENABLED).
options:
  enabled:
    description:
      - Set to false to turn the callback off for a run without editing C(callbacks_enabled), for
        example C(TURNKEY_LAYER_TIMER_ENABLED=false ansible-playbook site.yml).
    type: bool
    default: true
    env:
      - name: TURNKEY_LAYER_TIMER_ENABLED
    ini:
      - section: turnkey
        key: layer_timer_enabled
  state_dir:
    description:
      - The state folder; run reports go to its C(runs) subfolder.
      - When not set, C(.state) in the folder of the (first) playbook.
      - A relative path in an ini file is relative to the folder of that file; in the environment,
        relative to the current folder.
    type: path
    env:
      - name: TURNKEY_STATE_DIR
    ini:
      - section: turnkey
        key: state_dir
"""

import datetime
import json
import os
import threading
import time

from ansible import constants as C
from ansible import context
from ansible.playbook.handler import Handler
from ansible.plugins.callback import CallbackBase

from ansible_collections.turnkey.cluster.plugins.plugin_utils.private_files import write_private_file

# Stdout callbacks whose output is a document: our lines go to stderr beside them.
MACHINE_STDOUT_CALLBACKS = frozenset(("json", "jsonl"))
STATUSES = ("ok", "changed", "failed", "skipped", "unreachable")
TEMPLATE_MARKERS = ("{{", "{%", "{#")


def _iso(moment):
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _round(seconds):
    return round(max(seconds, 0.0), 3)


def layer_of(play):
    """The layer of a play: its play variable turnkey_layer, else validation/other by the play's name."""
    value = (play.vars or {}).get("turnkey_layer")
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return "validation" if str(play.get_name() or "").startswith("Validate") else "other"


def new_layer(name, start):
    return {"name": name, "start": start, "end": start, "duration_s": 0.0, "tasks": 0,
            **dict.fromkeys(STATUSES, 0), "ignored": 0}


def task_name(task):
    """The task's name as written; a templated name stays untemplated so no variable value reaches the
    report (the strategy templates task.name before the callbacks run)."""
    ds = task.get_ds()
    raw = ds.get("name") if isinstance(ds, dict) else None
    if isinstance(raw, str) and any(marker in raw for marker in TEMPLATE_MARKERS):
        return str(raw)
    return str(task.name or task.action)


def make_private_dirs(path):
    """Creates path and its missing parents with mode 0700; existing folders are left as they are."""
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        current = os.path.dirname(current)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "turnkey.cluster.layer_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None, options=None):
        super().__init__(display=display, options=options)
        # Callbacks come from the main thread and from the strategy's results thread.
        self._lock = threading.RLock()
        # Monotonic clock for durations, anchored to one wall-clock reading for the timestamps.
        self._wall0 = datetime.datetime.now(datetime.UTC)
        self._mono0 = time.monotonic()
        self._playbooks = []
        self._basedir = None
        self._start = None
        self._plays = 0
        self._free = False
        self._layer = None
        self._segments = []  # [layer, start, end]: consecutive plays of one layer
        self._tasks = []  # one record per run of a task (a handler flushed twice runs twice)
        self._by_uuid = {}  # task uuid -> its latest record
        self._last = None
        short = str(C.config.get_config_value("DEFAULT_STDOUT_CALLBACK") or "").rsplit(".", 1)[-1]
        self._to_stderr = short in MACHINE_STDOUT_CALLBACKS

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        # The task queue manager skips every event of a disabled callback.
        self.disabled = not self.get_option("enabled")

    # --- clock and output -------------------------------------------------------------------------

    def _now(self):
        return time.monotonic()

    def _stamp(self, mono):
        return _iso(self._wall0 + datetime.timedelta(seconds=mono - self._mono0))

    def _say(self, msg):
        self._display.display(msg, stderr=self._to_stderr)

    # --- playbook and plays -----------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        with self._lock:
            if self._start is None:
                self._start = self._now()
            self._playbooks.append(str(playbook._file_name))
            if self._basedir is None:
                self._basedir = str(playbook._basedir)

    def v2_playbook_on_play_start(self, play):
        layer = layer_of(play)
        with self._lock:
            now = self._now()
            if self._start is None:
                self._start = now
            self._plays += 1
            self._free = str(play.strategy or "").rsplit(".", 1)[-1] == "free"
            if layer == self._layer:
                return
            if self._segments:
                self._segments[-1][2] = now
            self._segments.append([layer, now, None])
            self._layer = layer
        self._say("=== layer %s ===" % layer)

    # --- tasks ------------------------------------------------------------------------------------

    def _new_record(self, task, now):
        record = {
            "uuid": task._uuid,
            "play": self._plays,
            "layer": self._layer or "other",
            "role": task._role.get_name() if task._role else None,
            "name": task_name(task),
            "handler": isinstance(task, Handler),
            "start": now,
            "end": None,
            "host_starts": {},
            "hosts": {},
        }
        self._tasks.append(record)
        self._by_uuid[task._uuid] = record
        self._last = record
        return record

    def _task_start(self, task):
        with self._lock:
            record = self._by_uuid.get(task._uuid)
            # The free strategy announces a task once per host; the linear one once per run, so a
            # task seen again after other tasks (a handler notified again) is a new run.
            if record is not None and record["play"] == self._plays and (self._free or record is self._last):
                return
            self._new_record(task, self._now())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_start(task)

    def v2_runner_on_start(self, host, task):
        with self._lock:
            record = self._by_uuid.get(task._uuid)
            if record is not None:
                name = host.get_name()
                # A host seen again (free strategy, a handler notified again): time its latest run.
                if name not in record["host_starts"] or name in record["hosts"]:
                    record["host_starts"][name] = self._now()

    def _host_result(self, result, status, ignored=False):
        # Only the status is read from the result: never its values.
        host = result.host.get_name()
        task = result.task
        with self._lock:
            now = self._now()
            record = self._by_uuid.get(task._uuid) or self._new_record(task, now)
            start = record["start"]
            if self._free:
                start = record["host_starts"].get(host, start)
            entry = {"status": status, "duration_s": _round(now - start)}
            if ignored:
                entry["ignored"] = True
            record["hosts"][host] = entry
            record["end"] = now

    def v2_runner_on_ok(self, result):
        self._host_result(result, "changed" if result.is_changed() else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._host_result(result, "failed", ignored=bool(ignore_errors))

    def v2_runner_on_skipped(self, result):
        self._host_result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._host_result(result, "unreachable")

    # --- the end ----------------------------------------------------------------------------------

    def _build_report(self, stats, end):
        start = self._start if self._start is not None else end
        layers = {}  # name -> entry; a layer met again later (validation before each layer) adds its time
        for name, seg_start, seg_end in self._segments:
            layer = layers.setdefault(name, new_layer(name, seg_start))
            layer["end"] = seg_end
            layer["duration_s"] += seg_end - seg_start
        tasks = []
        roles = {}
        for record in self._tasks:
            task_end = record["end"] if record["end"] is not None else record["start"]
            duration = task_end - record["start"]
            tasks.append({
                "layer": record["layer"],
                "role": record["role"],
                "name": record["name"],
                "handler": record["handler"],
                "start": self._stamp(record["start"]),
                "end": self._stamp(task_end),
                "duration_s": _round(duration),
                "hosts": dict(sorted(record["hosts"].items())),
            })
            layer = layers.get(record["layer"])
            if layer is None:  # a task outside any play: cannot happen, but never lose it
                layer = layers[record["layer"]] = new_layer(record["layer"], record["start"])
                layer["end"] = task_end
            layer["tasks"] += 1
            for entry in record["hosts"].values():
                layer[entry["status"]] += 1
                layer["ignored"] += int(entry.get("ignored", False))
            if record["role"]:
                role = roles.setdefault(record["role"], {"name": record["role"], "duration_s": 0.0,
                                                         "tasks": 0})
                role["duration_s"] += duration
                role["tasks"] += 1
        for layer in layers.values():
            layer.update(start=self._stamp(layer["start"]), end=self._stamp(layer["end"]),
                         duration_s=_round(layer["duration_s"]))
        for role in roles.values():
            role["duration_s"] = _round(role["duration_s"])
        return {
            "playbook": self._playbooks[0] if self._playbooks else None,
            "playbooks": list(self._playbooks),
            "check_mode": bool(context.CLIARGS.get("check", False)),
            "start": self._stamp(start),
            "end": self._stamp(end),
            "duration_s": _round(end - start),
            "layers": list(layers.values()),
            "roles": sorted(roles.values(), key=lambda role: -role["duration_s"]),
            "tasks": tasks,
            # Only the recap counters: custom stats (set_stats) may hold values.
            "stats": {host: {key: int(value) for key, value in stats.summarize(host).items()}
                      for host in sorted(stats.processed)},
        }

    def _table(self, report):
        layers = sorted(report["layers"], key=lambda layer: -layer["duration_s"])
        width = max([len("total")] + [len(layer["name"]) for layer in layers])
        row = "%-*s %8s %6s %8s %7s %8s"
        lines = ["=== timing by layer ===",
                 row % (width, "layer", "wall_s", "tasks", "changed", "failed", "ignored")]
        lines += [row % (width, layer["name"], "%.2f" % layer["duration_s"], layer["tasks"], layer["changed"],
                         layer["failed"], layer["ignored"]) for layer in layers]
        totals = [sum(layer[key] for layer in layers) for key in ("changed", "failed", "ignored")]
        lines.append(row % (width, "total", "%.2f" % report["duration_s"], len(report["tasks"]), *totals))
        if report["roles"]:
            width = max([len("role")] + [len(role["name"]) for role in report["roles"]])
            row = "%-*s %8s %6s"
            lines += ["=== timing by role ===", row % (width, "role", "s", "tasks")]
            lines += [row % (width, role["name"], "%.2f" % role["duration_s"], role["tasks"])
                      for role in report["roles"]]
        return lines

    def _state_dir(self):
        configured = self.get_option("state_dir")
        if configured:
            return str(configured)
        return os.path.join(self._basedir or os.getcwd(), ".state")

    def _write(self, report):
        runs = os.path.join(self._state_dir(), "runs")
        make_private_dirs(runs)
        start = self._start if self._start is not None else self._mono0
        started = self._wall0 + datetime.timedelta(seconds=start - self._mono0)
        path = os.path.join(runs, "%s-%d.json" % (started.strftime("%Y%m%dT%H%M%SZ"), os.getpid()))
        text = json.dumps(report, indent=2) + "\n"
        write_private_file(path, text)
        write_private_file(os.path.join(runs, "last.json"), text)
        return path

    def v2_playbook_on_stats(self, stats):
        with self._lock:
            end = self._now()
            if self._segments:
                self._segments[-1][2] = end
            report = self._build_report(stats, end)
        for line in self._table(report):
            self._say(line)
        try:
            path = self._write(report)
        except Exception as error:  # a report that cannot be written must not fail the run
            self._display.warning("layer_timer: could not write the run report: %s" % error)
        else:
            self._say("run report: %s" % path)
