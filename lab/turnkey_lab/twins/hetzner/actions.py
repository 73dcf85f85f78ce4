"""Actions: asynchronous work with `status` running -> success/error and `progress` 0 -> 100.

Nothing runs in the background: an action stores when it is due, and `advance()` (called before every
request) finishes whatever is due, in order, and applies its effect. So the world is consistent after a
restart too, and a stuck action is simply one that is never due.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

# effect(data, action) -> None, or (code, message) to end the action in error instead.
Effect = Callable[[dict, dict], tuple[str, str] | None]


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="seconds")


def new_id(data: dict, kind: str, first: int) -> int:
    counters = data.setdefault("next_id", {})
    ident = counters.get(kind, first)
    counters[kind] = ident + 1
    return ident


def start(data: dict, command: str, resources: list[tuple[int, str]], duration: float | None,
          effect: str | None = None, after: dict | None = None, error: dict | None = None) -> dict:
    """Store a running action. duration None: never finishes. `after`: begins when that one is due."""
    now = time.time()
    begin = now
    if after is not None:
        begin = after["_due"] if after["_due"] is not None else now
        if after["_due"] is None:
            duration = None  # chained to an action that never ends
    due = None if duration is None else begin + duration
    action = {"id": new_id(data, "action", 1), "command": command, "status": "running", "started": iso(now),
              "finished": None, "progress": 0, "resources": [{"id": i, "type": t} for i, t in resources],
              "error": None, "_begin": begin, "_due": due, "_effect": effect, "_error": error}
    data.setdefault("actions", {})[str(action["id"])] = action
    return action


def advance(data: dict, effects: dict[str, Effect], now: float | None = None) -> bool:
    """Finish every due action (oldest first); True when something changed."""
    now = time.time() if now is None else now
    due = sorted((a for a in data.get("actions", {}).values()
                  if a["status"] == "running" and a["_due"] is not None and a["_due"] <= now),
                 key=lambda a: (a["_due"], a["id"]))
    for action in due:
        failure = action["_error"]
        if not failure and action["_effect"]:
            outcome = effects[action["_effect"]](data, action)
            failure = {"code": outcome[0], "message": outcome[1]} if outcome else None
        action.update(status="error" if failure else "success", progress=100, finished=iso(action["_due"]),
                      error=failure)
    return bool(due)


def running_on(data: dict, kind: str, ident: int, every: bool = False) -> list[dict]:
    """The running actions on a resource (every=True: all of them, finished too)."""
    return [a for a in data.get("actions", {}).values()
            if (every or a["status"] == "running") and {"id": ident, "type": kind} in a["resources"]]


def view(action: dict, now: float | None = None) -> dict:
    """The public form: private fields dropped, progress from elapsed time while running."""
    public = {k: v for k, v in action.items() if not k.startswith("_")}
    if action["status"] == "running":
        now = time.time() if now is None else now
        if action["_due"] is None or now < action["_begin"]:
            public["progress"] = 0
        else:
            span = max(action["_due"] - action["_begin"], 1e-6)
            public["progress"] = max(0, min(99, int((now - action["_begin"]) / span * 100)))
    return public
