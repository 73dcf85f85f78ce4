"""Where the suite's CPU goes: each test's processor seconds (its worker's own and those of the processes it ran
and waited for: ansible-playbook, helm, a lab's servers once its fixture stops them), from its setup to its
teardown. On two cores a cold `make test` is bound by CPU, not by waiting (docs/testing.md), so this, not the
wall time pytest's --durations lists, says what to make cheaper. The slowest are printed at the end of the run,
and every test's seconds go to .state/test-cpu.json.

A fixture's servers that are its own child processes count for the test whose teardown stops them (the last of its
scope), their CPU while other tests of the scope ran included. The lab's components that `lab up` starts run
detached (not children of the test) and are not counted: the sum is below the suite's real total."""

from __future__ import annotations

import json
import resource

import pytest

from tests.playbook_runner import REPO

_STARTED = pytest.StashKey[float]()
SHOWN = 25


def cpu_seconds():
    """Processor seconds of this process and of its children that ended and were waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item.stash[_STARTED] = cpu_seconds()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.when == "teardown" and _STARTED in item.stash:
        report.user_properties.append(("cpu_s", round(cpu_seconds() - item.stash[_STARTED], 1)))
    return report


def pytest_terminal_summary(terminalreporter):
    """On the controller (with xdist, the workers' reports carry the figures)."""
    measured = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == "cpu_s" and getattr(report, "when", "") == "teardown":
                    measured[report.nodeid] = value
    if not measured:
        return
    total = sum(measured.values())
    terminalreporter.write_sep("=", "processor seconds, %d most (%.0f s in all, %d tests)" % (
        min(SHOWN, len(measured)), total, len(measured)))
    for nodeid, seconds in sorted(measured.items(), key=lambda entry: -entry[1])[:SHOWN]:
        terminalreporter.write_line("%8.1fs cpu  %s" % (seconds, nodeid))
    out = REPO / ".state" / "test-cpu.json"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(dict(sorted(measured.items(), key=lambda entry: -entry[1])), indent=1) + "\n")
    except OSError as exc:
        terminalreporter.write_line("test-cpu.json not written: %s" % exc)
