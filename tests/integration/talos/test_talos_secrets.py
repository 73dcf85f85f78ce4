"""The Talos secrets bundle of layer 00: made once by the real talosctl, kept encrypted, the source of every
machine config, and recoverable from a live control plane's config."""

from __future__ import annotations

import sys

import yaml

from tests.integration.talos.test_talos_machine_config import talosctl
from tests.playbook_runner import run_playbook, task_results
from tests.store_access import open_store

PASSWORD = "talos-secrets-test-password"


def play(tmp_path, tasks, *flags):
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "t", "hosts": "localhost", "gather_facts": False,
        "module_defaults": {"group/turnkey.cluster.persistent_store": {
            "store_path": str(tmp_path / "secrets"), "vault_password_env": "TALOS_TEST_VAULT_PASSWORD"}},
        "tasks": tasks}], sort_keys=False))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
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
