"""Roles find talosctl through an ordinary role variable (issue 10, item 17): role talos_config runs the
talosctl that talos_config_talosctl names, else the one $TURNKEY_TALOSCTL names, by the collection's one
rule (lookup turnkey.cluster.tool); a path that is not executable fails the role by the variable's name.
Each talosctl here is a wrapper script that records its call and runs the real one. No lab is needed."""

from __future__ import annotations

import pytest

from tests.integration.talos.test_talos_config_role import write_playbooks
from tests.integration.talos.test_talos_machine_config import talosctl
from tests.playbook_runner import copy_inventory, lab_env, run_playbook


def wrapper(folder, name, real):
    """An executable that appends its arguments' first word to <folder>/<name>.calls, then runs talosctl."""
    log = folder / (name + ".calls")
    script = folder / name
    script.write_text('#!/bin/sh\necho "$1" >> %s\nexec %s "$@"\n' % (log, real))
    script.chmod(0o700)
    return str(script), log


def calls(log):
    return log.read_text().split() if log.exists() else []


@pytest.fixture
def site(tmp_path):
    real = talosctl()
    inventory = copy_inventory(tmp_path, "lab")
    env = lab_env(tmp_path)
    bundle, configs = write_playbooks(tmp_path)
    made = run_playbook("-i", str(inventory), playbook=str(bundle), env={**env, "TURNKEY_TALOSCTL": real})
    assert made.returncode == 0, made.stdout[-3000:]
    return real, inventory, env, configs


def render(site, *flags, **env):
    _real, inventory, base, configs = site
    return run_playbook("-i", str(inventory), "--limit", "cp1", *flags, playbook=str(configs), env={**base, **env})


def test_talos_config_runs_the_talosctl_of_its_variable_else_of_the_environment(site, tmp_path):
    real = site[0]
    named, named_log = wrapper(tmp_path, "named-talosctl", real)
    from_env, env_log = wrapper(tmp_path, "env-talosctl", real)

    run = render(site, "-e", "talos_config_talosctl=%s" % named, TURNKEY_TALOSCTL=from_env)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "gen" in calls(named_log) and calls(env_log) == []  # the variable wins over the environment
    assert (tmp_path / "state" / "talos" / "cp1.yaml").exists()

    run = render(site, TURNKEY_TALOSCTL=from_env)  # the variable empty (its default): the environment's
    assert run.returncode == 0, run.stdout[-3000:]
    assert "gen" in calls(env_log)


def test_a_talosctl_variable_that_names_no_executable_fails_by_its_name(site, tmp_path):
    missing = tmp_path / "no-such-talosctl"
    run = render(site, "-e", "talos_config_talosctl=%s" % missing, TURNKEY_TALOSCTL=site[0])
    assert run.returncode != 0
    assert "talosctl talos_config_talosctl = %s is not an executable file" % missing in run.stdout
