"""Every spec fixture runs the real site.yml: invalid ones must stop before anything is written,
with exactly the errors the fixture lists; valid ones must pass validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.playbook_runner import copy_inventory, failed_results, lab_env, run_playbook, task_result

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

TYPE_CHECK_TASK = "turnkey.cluster.validate : Check the types of the cluster spec against the role's entry point 'spec'"
TYPE_EXPLANATION_TASK = "turnkey.cluster.validate : Explain the type errors and how to fix them"
CROSS_FIELD_TASK = ("turnkey.cluster.validate : Check the cross-field rules of the cluster spec for layer "
                    "persistent_auth")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "specs"
# Layer 00 needs Proxmox API credentials when there are Proxmox nodes (it makes the CSI token), layer 01
# those of every provider. No lab runs here, so they come from the environment (placeholders: nothing is
# sent, see --tags always below); a fixture's `env` overrides them.
API_ENV = {"PROXMOX_TOKEN_ID": "fixture@pve!test", "PROXMOX_TOKEN_SECRET": "fixture-placeholder",
           "HCLOUD_TOKEN": "fixture-placeholder"}


def _load(kind):
    paths = sorted((FIXTURES / kind).glob("*.yml"))
    return [pytest.param(yaml.safe_load(path.read_text()), id=path.stem) for path in paths]


def _env(tmp_path, fixture):
    return {**lab_env(tmp_path), **API_ENV, **(fixture.get("env") or {})}


def _errors_of(result):
    """Both validation steps fail with 'The cluster spec has N ... problem(s):' and one '- ' line each."""
    lines = result["msg"].splitlines()
    assert lines[0].startswith("The cluster spec has %d " % (len(lines) - 1)), lines[0]
    return [line[2:] for line in lines[1:]]


def test_fixture_counts():
    assert len(_load("invalid")) >= 20
    assert len(_load("valid")) >= 3


@pytest.mark.parametrize("fixture", _load("invalid"))
def test_invalid_spec_fails_before_any_change(fixture, tmp_path):
    inventory = copy_inventory(tmp_path, fixture["base"], fixture["overlay"])
    run = run_playbook("-i", str(inventory), env=_env(tmp_path, fixture), json_output=True)
    assert run.returncode != 0, run.stdout[-3000:]
    failures = failed_results(run.stdout)
    # A type error is caught by a rescue that explains it; the run stops at the explanation.
    task, host, result = failures[-1]
    assert [failure[0] for failure in failures[:-1]] in ([], [TYPE_CHECK_TASK]), failures
    assert host == "localhost"
    assert task in (TYPE_EXPLANATION_TASK, CROSS_FIELD_TASK), task
    assert _errors_of(result) == fixture["errors"]
    # Nothing was touched: the store was never created.
    assert not (inventory / "secrets").exists()


@pytest.mark.parametrize("fixture", _load("valid"))
def test_valid_spec_passes_validation(fixture, tmp_path):
    inventory = copy_inventory(tmp_path, fixture["base"], fixture["overlay"])
    # Validation only (it runs under 'always'): the layers' tasks would talk to APIs that are not running here.
    run = run_playbook("-i", str(inventory), "--check", "--tags", "always", env=_env(tmp_path, fixture),
                       json_output=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert failed_results(run.stdout) == []
    assert task_result(run.stdout, CROSS_FIELD_TASK)["nodes"] == fixture["nodes"]
