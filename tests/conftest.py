"""Suite-wide hooks: ordered steps of one lab (`@pytest.mark.incremental` on a class).

A class marked incremental is one expensive setup (a class-scoped fixture) followed by steps, each its
own test method run in file order, so a failure names its step. Once a step fails, the later steps of
that class are reported as xfail "previous step failed: <step>" instead of running on a broken lab.
pytest.ini's --dist loadscope keeps a class on one pytest-xdist worker, in order (loadgroup does not
group under pytest 9: xdist renames items through an attribute pytest 9 no longer reads).
"""

from __future__ import annotations

import sys

import pytest

from tests import tools
from tests.playbook_runner import REPO

# The collection's own code (ansible_collections.turnkey.cluster...) is importable in every test.
if str(REPO / "collections") not in sys.path:
    sys.path.insert(0, str(REPO / "collections"))

_FAILED_STEP = pytest.StashKey[str]()

# each test's processor seconds, the most listed at the end (where a cold run's time goes)
pytest_plugins = ["tests.cpu_report"]


def pytest_configure(config):
    config.addinivalue_line("markers", "incremental: a class of ordered steps; a failed step fails the rest")


def pytest_collection_modifyitems(items):
    """The order the workers take the tests in (pytest.ini keeps it: --no-loadscope-reorder). The end-to-end run, the
    longest by far, goes first, so it never becomes the tail that one worker runs alone at the end; while `make test`
    builds the tools beside the suite, the tests that need none come next, then the rest (a stable sort: the same
    order on every xdist worker, the file order otherwise kept)."""
    building = tools.building_beside()

    def rank(item):
        if item.get_closest_marker("e2e") is not None:
            return 0
        return 1 if building and item.get_closest_marker("toolfree") is not None else 2

    items.sort(key=rank)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and item.get_closest_marker("incremental") and item.parent is not None:
        item.parent.stash.setdefault(_FAILED_STEP, item.name)
    return report


@pytest.hookimpl(tryfirst=True)  # before the fixtures: a test that needs the tools must not start a lab without them
def pytest_runtest_setup(item):
    if item.get_closest_marker("toolfree") is None:
        tools.wait_for_the_build()
    if item.get_closest_marker("incremental") and item.parent is not None:
        failed = item.parent.stash.get(_FAILED_STEP, None)
        if failed is not None:
            pytest.xfail("previous step failed: %s" % failed)


@pytest.fixture(scope="class")
def make_class_lab(tmp_path_factory):
    """make_lab for a class of ordered steps: the labs live until the class's last step."""
    from tests.lab.conftest import isolated_labs  # noqa: PLC0415 - sets up the lab package's import path

    with isolated_labs(tmp_path_factory) as make:
        yield make
