"""tests/schemas.py: a test that needs ../shared/schemas fails under CI=true when it is missing, and is a
visible skip naming the file elsewhere. Each case runs a real pytest on a one-test file in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.playbook_runner import REPO

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

NEEDS_A_SCHEMA = '''
from tests.schemas import official_schema


def test_needs_a_schema():
    assert official_schema("talos/talos-v1.13.9-config.schema.json").is_file()
'''


def run_pytest(tmp_path, schemas_dir, ci):
    (tmp_path / "test_needs_a_schema.py").write_text(NEEDS_A_SCHEMA)
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "PYTEST_ADDOPTS")}
    env.update({"TURNKEY_SCHEMAS_DIR": str(schemas_dir), "PYTHONPATH": str(REPO)}, **({"CI": ci} if ci else {}))
    # -c /dev/null: this folder's run, without the project's pytest.ini and conftest
    return subprocess.run([sys.executable, "-m", "pytest", "-c", os.devnull, "-rs", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_missing_schemas_fail_under_ci(tmp_path):
    done = run_pytest(tmp_path, tmp_path / "nowhere", "true")
    assert done.returncode == 1, done.stdout
    assert "1 failed" in done.stdout
    assert "official API document %s" % (tmp_path / "nowhere" / "talos") in done.stdout
    assert "CI must have it" in done.stdout


@pytest.mark.parametrize("ci", [None, "false"])
def test_missing_schemas_are_a_visible_skip_outside_ci(tmp_path, ci):
    done = run_pytest(tmp_path, tmp_path / "nowhere", ci)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "SKIPPED" in done.stdout and "talos-v1.13.9-config.schema.json is missing" in done.stdout


def test_present_schemas_run_under_ci(tmp_path):
    schemas = tmp_path / "schemas"
    (schemas / "talos").mkdir(parents=True)
    (schemas / "talos" / "talos-v1.13.9-config.schema.json").write_text("{}")
    done = run_pytest(tmp_path, schemas, "true")
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout
