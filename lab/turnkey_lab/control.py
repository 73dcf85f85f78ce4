"""What the commands do: up, down, reset, status. The CLI only parses arguments and prints."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from . import components as registry
from . import pki, procs, supervisor
from .components import Component
from .state import DEFAULT_NET, DIR_ENV, NET_ENV, Lab, LabError, ensure_vault_password, read_json, write_json

Say = Callable[[str], None]
CRASHES_BEFORE_GIVING_UP = 3  # during `lab up`: a component that keeps crashing won't get healthy
LOG_TAIL = 20


def resolve_lab(state_dir: str | None, net: str | None) -> Lab:
    """--state-dir > $TURNKEY_LAB_DIR > ./.lab; --net > $TURNKEY_LAB_NET > the last `up`'s net > 127.10."""
    root = state_dir or os.environ.get(DIR_ENV) or ".lab"
    saved = read_json(Path(root) / "lab.json", {}) or {}
    return Lab.at(root, net or os.environ.get(NET_ENV) or saved.get("net") or DEFAULT_NET)


@contextlib.contextmanager
def _locked(lab: Lab) -> Iterator[None]:
    """One up/down/reset at a time per state folder. The fd is not inherited by the supervisor."""
    lab.root.mkdir(parents=True, exist_ok=True)
    with open(lab.root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def supervisor_pid(lab: Lab) -> int | None:
    return procs.live_pid(lab.supervisor_pid, lambda argv: supervisor.is_supervisor(lab, argv))


def _saved(lab: Lab) -> dict:
    return read_json(lab.config, {}) or {}


def _as_started(lab: Lab) -> Lab:
    """The lab on the net its last `up` used: what status and env describe, whatever $TURNKEY_LAB_NET says."""
    saved = _saved(lab)
    return Lab.at(lab.root, saved["net"]) if saved.get("net") else lab


def _tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"(no log at {path})"
    return f"--- last {len(text)} lines of {path} ---\n" + "\n".join(text)


def _check_ports_free(components: list[Component]) -> None:
    for component in components:
        for port in component.ports:
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((component.ip, port))
                except OSError as exc:
                    where = f"{component.ip}:{port}"
                    raise LabError(f"{component.name}: cannot listen on {where} ({exc.strerror}); another "
                                   f"lab on this net? Pick another with {NET_ENV}") from None


def _check_compatible(lab: Lab, saved: dict, profile: str) -> None:
    """Raft data is tied to its node address and to the keys in credentials.json: don't mix it up."""
    if not lab.components.exists() or not saved:
        return
    if saved.get("net") != lab.net:
        raise LabError(f"the lab's data in {lab.root} was made on net {saved.get('net')}, not {lab.net}; "
                       "`lab reset` first (keeps the CA and the vault password)")
    if saved.get("profile") == "realistic" and profile != "realistic":
        raise LabError(f"the lab's data in {lab.root} is from the realistic profile; `lab reset` first to "
                       f"switch to {profile} (keeps the CA and the vault password)")


def _write_endpoints(lab: Lab, profile: str, components: list[Component]) -> None:
    write_json(lab.endpoints, {
        "ca_cert": str(lab.ca_cert), "state_dir": str(lab.root), "net": lab.net, "profile": profile,
        "components": {c.name: {**c.endpoint(), "healthy": c.health().healthy} for c in components},
    })


def _wait_healthy(lab: Lab, supervisor_alive: Callable[[], bool], components: list[Component], timeout: float,
                  say: Say) -> None:
    start = time.monotonic()
    baseline = {name: entry.get("restarts", 0)
                for name, entry in (read_json(lab.status, {}) or {}).get("components", {}).items()}
    pending = list(components)
    while pending:
        for component in list(pending):
            if component.health().healthy:
                pending.remove(component)
                say(f"{component.name} healthy at {component.url} ({time.monotonic() - start:.1f} s)")
        if not pending:
            return
        if not supervisor_alive():
            raise LabError(f"the supervisor exited during startup\n{_tail(lab.supervisor_log)}")
        status = (read_json(lab.status, {}) or {}).get("components", {})
        for component in pending:
            entry = status.get(component.name, {})
            crashes = entry.get("restarts", 0) - baseline.get(component.name, 0)
            if crashes >= CRASHES_BEFORE_GIVING_UP:
                raise LabError(f"{component.name} crashed {crashes} times while starting "
                               f"({entry.get('detail')}); the lab is still up, `lab down` stops it\n"
                               f"{_tail(component.log_file)}")
        if time.monotonic() - start > timeout:
            component = pending[0]
            detail = status.get(component.name, {}).get("detail") or component.health().detail
            raise LabError(f"{component.name} not healthy after {timeout:.0f} s ({detail}); the lab is still "
                           f"up, `lab down` stops it\n{_tail(component.log_file)}")
        time.sleep(0.1)


def _running_config(lab: Lab, sup_pid: int, profile: str | None, selected: list[str] | None) -> dict:
    """What the running lab was started with; asking for something else needs a `lab down` first."""
    saved = _saved(lab)
    if ((profile and profile != saved.get("profile")) or lab.net != saved.get("net")
            or (selected and set(selected) != set(saved.get("components", [])))):
        raise LabError(f"the lab in {lab.root} already runs (supervisor pid {sup_pid}, profile "
                       f"{saved.get('profile')}, net {saved.get('net')}, components "
                       f"{', '.join(saved.get('components', []))}); `lab down` first to change that")
    return saved


def _start(lab: Lab, profile: str, components: list[Component], say: Say) -> Callable[[], bool]:
    """Prepare every component, spawn the supervisor; returns a check that it still runs."""
    _check_compatible(lab, _saved(lab), profile)
    pki.ensure_ca(lab)
    _stop_leftovers(lab)
    _check_ports_free(components)
    for component in components:
        component.prepare()
    names = [c.name for c in components]
    write_json(lab.config, {"net": lab.net, "profile": profile, "components": names})
    lab.endpoints.unlink(missing_ok=True)
    lab.status.unlink(missing_ok=True)
    process = supervisor.spawn(lab, profile, names)
    say(f"supervisor started (pid {process.pid}, profile {profile}, net {lab.net}, state {lab.root})")
    # Our child until we exit: poll() sees it die (and reaps it) without racing its exec.
    return lambda: process.poll() is None


def up(lab: Lab, profile: str | None, selected: list[str] | None, timeout: float | None, say: Say) -> None:
    """Start the lab (or find it running), wait until every component is healthy, write endpoints.json."""
    started = time.monotonic()
    registry.build(lab, profile or "realistic", selected)  # bad names fail before anything is written
    with _locked(lab):
        if ensure_vault_password(lab):
            say(f"created the lab's vault password: {lab.vault_password}")
        sup_pid = supervisor_pid(lab)
        if sup_pid:
            saved = _running_config(lab, sup_pid, profile, selected)
            profile = saved["profile"]
            components = registry.build(lab, profile, saved["components"])
            if all(c.health().healthy for c in components):
                _write_endpoints(lab, profile, components)
                say(f"lab already running and healthy (supervisor pid {sup_pid}, profile {profile})")
                return
            say(f"lab already running (supervisor pid {sup_pid}); waiting for it to be healthy")

            def alive() -> bool:
                return supervisor_pid(lab) is not None

        else:
            profile = profile or "realistic"
            components = registry.build(lab, profile, selected)
            alive = _start(lab, profile, components, say)
    # Wait without the lock, so a `lab down` from another shell can still stop a lab that hangs.
    _wait_healthy(lab, alive, components, timeout or max(c.startup_timeout for c in components), say)
    with _locked(lab):
        if not supervisor_pid(lab):
            raise LabError("the lab was stopped while it was starting")
        _write_endpoints(lab, profile, components)
    say(f"lab up in {time.monotonic() - started:.1f} s; endpoints: {lab.endpoints}")


def _stop_leftovers(lab: Lab) -> list[int]:
    """Component processes whose supervisor is gone (e.g. killed hard): stop them."""
    pids = [pid for c in registry.build(lab, "realistic")
            if (pid := procs.live_pid(c.pid_file, lab.owns))]
    procs.terminate(pids)
    return pids


def down(lab: Lab, say: Say) -> None:
    if not lab.root.exists():
        say(f"lab not running ({lab.root})")
        return
    with _locked(lab):
        sup_pid = supervisor_pid(lab)
        if sup_pid:
            # The supervisor gives each child STOP_TIMEOUT before SIGKILL; give it a bit more.
            procs.terminate([sup_pid], supervisor.STOP_TIMEOUT + 5)
        leftovers = _stop_leftovers(lab)
        shutil.rmtree(lab.run, ignore_errors=True)
        lab.endpoints.unlink(missing_ok=True)
    if sup_pid or leftovers:
        say(f"lab stopped ({lab.root})")
    else:
        say(f"lab not running ({lab.root})")


def reset(lab: Lab, say: Say) -> None:
    """Down, then forget the components' data, logs and credentials. The CA and vault password stay."""
    down(lab, say)
    with _locked(lab):
        for component in registry.build(lab, "realistic"):
            component.wipe()
        shutil.rmtree(lab.components, ignore_errors=True)
        shutil.rmtree(lab.logs, ignore_errors=True)
        for path in (lab.credentials, lab.endpoints, lab.config):
            path.unlink(missing_ok=True)
    say(f"lab reset ({lab.root}); kept {lab.pki} and {lab.vault_password}")


def status(lab: Lab) -> dict:
    """Live status; 'ok' is False when the lab, or any component it should run, is down or unhealthy."""
    lab = _as_started(lab)
    saved = _saved(lab)
    sup_pid = supervisor_pid(lab)
    reported = (read_json(lab.status, {}) or {}).get("components", {}) if sup_pid else {}
    profile = saved.get("profile", "realistic")
    result = {"state_dir": str(lab.root), "net": lab.net, "profile": profile if saved else None,
              "supervisor": {"pid": sup_pid, "alive": bool(sup_pid)}, "components": {}}
    for component in registry.build(lab, profile, saved.get("components")):
        pid = procs.live_pid(component.pid_file, lab.owns)
        health = component.health() if pid else None
        result["components"][component.name] = {
            "pid": pid, "alive": bool(pid), "healthy": bool(health and health.healthy),
            "detail": health.detail if health else "not running",
            "restarts": reported.get(component.name, {}).get("restarts", 0), "url": component.url,
        }
    result["ok"] = bool(sup_pid) and all(c["healthy"] for c in result["components"].values())
    return result


def shell_env(lab: Lab) -> dict[str, str]:
    lab = _as_started(lab)
    saved = _saved(lab)
    exports = {DIR_ENV: Component.quote(lab.root), NET_ENV: Component.quote(lab.net)}
    for component in registry.build(lab, saved.get("profile", "realistic"), saved.get("components")):
        exports.update(component.shell_env())
    return exports
