"""The Talos secrets bundle of layer 00: made once by the real talosctl, kept encrypted, the source of every
machine config, and recoverable from a live control plane's config."""

from __future__ import annotations

import stat
import sys
from concurrent.futures import ThreadPoolExecutor

import yaml

from tests.integration.talos.test_talos_machine_config import talosctl
from tests.playbook_runner import run_playbook, task_results
from tests.store_access import open_store

PASSWORD = "talos-secrets-test-password"


def play(tmp_path, tasks, *flags):
    return run_play(*write_play(tmp_path, tasks), *flags)


def write_play(tmp_path, tasks, name="play.yml"):
    playbook = tmp_path / name
    playbook.write_text(yaml.safe_dump([{
        "name": "t", "hosts": "localhost", "gather_facts": False,
        "module_defaults": {"group/turnkey.cluster.persistent_store": {
            "store_path": str(tmp_path / "secrets"), "vault_password_env": "TALOS_TEST_VAULT_PASSWORD"}},
        "tasks": tasks}], sort_keys=False))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    return playbook, inventory


def run_play(playbook, inventory, *flags):
    env = {"TALOS_TEST_VAULT_PASSWORD": PASSWORD, "TURNKEY_TALOSCTL": talosctl()}
    run = run_playbook("-i", str(inventory), *flags, playbook=str(playbook), env=env, json_output=True, timeout=180)
    return run, task_results(run.stdout)


def secrets_task(**extra):
    return {"name": "bundle", "turnkey.cluster.persistent_secret": {"name": "talos_secrets", "type": "talos_secrets",
                                                                    **extra}}


def config_task(dest):
    lookup = ("{{ lookup('turnkey.cluster.persistent_secret', 'talos_secrets', field='bundle', store_path='%s', "
              "vault_password_env='TALOS_TEST_VAULT_PASSWORD') | from_yaml }}")
    return {"name": "config", "turnkey.cluster.talos_machine_config": {
        "cluster_name": "lab", "endpoint": "https://10.2.3.1:6443", "machine_type": "controlplane",
        "secrets": lookup % dest.parent.parent.parent.joinpath("secrets"), "kubernetes_version": "1.36.3",
        "talos_version": "v1.13.9", "dest": str(dest)}}


def test_bundle_made_once_feeds_configs_and_is_recoverable(tmp_path):
    run, results = play(tmp_path, [secrets_task()], "--check")
    assert run.returncode == 0 and results[0][2]["changed"], run.stdout[-3000:]
    assert not (tmp_path / "secrets").exists()

    run, results = play(tmp_path, [secrets_task()])
    assert run.returncode == 0 and results[0][2]["created"], run.stdout[-3000:]
    store = open_store(tmp_path / "secrets", PASSWORD)
    first = store.read("talos_secrets")
    bundle = yaml.safe_load(first["data"]["bundle"])
    assert set(bundle) >= {"cluster", "secrets", "trustdinfo", "certs"}
    assert bundle["certs"]["os"]["key"] not in run.stdout + run.stderr

    dest = tmp_path / "state" / "talos" / "cp1.yaml"
    run, results = play(tmp_path, [secrets_task(), config_task(dest)])
    assert run.returncode == 0, run.stdout[-3000:]
    assert [result["changed"] for _task, _host, result in results] == [False, True]
    assert store.read("talos_secrets") == first  # a rerun never regenerates
    config = next(yaml.safe_load_all(dest.read_text()))
    assert config["machine"]["ca"]["crt"] == bundle["certs"]["os"]["crt"]  # the config comes from the bundle

    # Recovery: the bundle rebuilt from a live control plane's config carries the same CAs and tokens.
    run, results = play(tmp_path, [secrets_task(rotate=True, from_controlplane_config=str(dest))])
    assert run.returncode == 0 and results[0][2]["rotated"], run.stdout[-3000:]
    recovered = yaml.safe_load(store.read("talos_secrets")["data"]["bundle"])
    for part in ("os", "k8s", "etcd"):
        assert recovered["certs"][part] == bundle["certs"][part]
    assert recovered["cluster"] == bundle["cluster"] and recovered["trustdinfo"] == bundle["trustdinfo"]
    assert list((tmp_path / "secrets" / ".backup").iterdir())  # the replaced version is kept


def test_rotation_without_the_running_cluster_is_refused_unless_forced(tmp_path):
    """A rotation without from_controlplane_config would make a new cluster identity that the running nodes
    do not trust: refused (in check mode too) and nothing written, unless force_new_identity says so."""
    run, results = play(tmp_path, [secrets_task()])
    assert run.returncode == 0 and results[0][2]["created"], run.stdout[-3000:]
    store = open_store(tmp_path / "secrets", PASSWORD)
    first = store.read("talos_secrets")
    for flags in (["--check"], []):
        run, results = play(tmp_path, [secrets_task(rotate=True)], *flags)
        assert run.returncode != 0, run.stdout[-3000:]
        message = results[0][2]["msg"]
        assert "NEW cluster identity" in message and "from_controlplane_config" in message
        assert "force_new_identity=true" in message
        assert store.read("talos_secrets") == first
    assert not (tmp_path / "secrets" / ".backup").exists()

    run, results = play(tmp_path, [secrets_task(rotate=True, force_new_identity=True)])
    assert run.returncode == 0 and results[0][2]["rotated"], run.stdout[-3000:]
    old, new = (yaml.safe_load(record["data"]["bundle"]) for record in (first, store.read("talos_secrets")))
    assert new["certs"]["os"]["crt"] != old["certs"]["os"]["crt"]  # a new identity, as asked


def test_two_runs_at_once_make_one_bundle(tmp_path):
    """Two runs that both find no bundle: the store's lock lets one generate it, the other keeps it. A slow
    talosctl (it waits before generating) holds both runs between reading the store and writing it."""
    slow = tmp_path / "slow-talosctl"
    slow.write_text("#!/bin/sh\nsleep 4\nexec %s \"$@\"\n" % talosctl())
    slow.chmod(stat.S_IRWXU)
    plays = [write_play(tmp_path, [secrets_task(talosctl_path=str(slow))], name="play%d.yml" % index)
             for index in (1, 2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda written: run_play(*written), plays))
    for run, _results in runs:
        assert run.returncode == 0, run.stdout[-3000:]
    created = sorted(results[0][2]["created"] for _run, results in runs)
    assert created == [False, True]  # one run generated the bundle, the other found it
    store = open_store(tmp_path / "secrets", PASSWORD)
    assert store.read("talos_secrets")["version"] == 1
    assert not (tmp_path / "secrets" / ".backup").exists()  # no second bundle replaced the first
    assert stat.S_IMODE((tmp_path / "secrets" / ".lock").stat().st_mode) == 0o600
