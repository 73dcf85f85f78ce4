"""talos_talosconfig, talos_apply and talos_bootstrap run as Ansible tasks against the Talos node twin,
driven by the real talosctl: maintenance apply, dry-run diffs, no surprise reboots (staged, and a rerun
that does not stage again), bootstrap once, a maintenance node refused by name, client config expiry, the
admin kubeconfig, and health by name against the real etcd and kube-apiserver the twin runs after bootstrap.
Also: dry-run diffs that show only allow-listed values even at -vvv, client configs forced back to 0600,
a kubeconfig trusting another CA replaced, and a node that never answers failing by name within the timeout.
The twin runs on 127.93.1.x and 127.93.2.x; the silent node listens on 127.93.8.1."""

from __future__ import annotations

import base64
import os
import socket
import stat
import subprocess
import sys

import pytest
import yaml

from tests.lab.test_talos_twin import make_twin, talosctl, twin_binary  # noqa: F401 # pylint: disable=unused-import
from tests.playbook_runner import REPO, run_playbook, task_results

CP1, W1, CP2 = "127.93.1.1", "127.93.1.2", "127.93.1.3"
SERVER = "https://127.93.1.100:6443"


def tool_path(name):
    found = subprocess.run([str(REPO / "tools" / "build"), "--print-path", name], capture_output=True, text=True,
                           check=False)
    assert found.returncode == 0, "%s is not built: run `make tools`\n%s" % (name, found.stderr)
    return found.stdout.strip()


@pytest.fixture
def bundle(talosctl, tmp_path):  # noqa: F811 - the fixture imported above
    out = tmp_path / "secrets.yaml"
    subprocess.run([talosctl, "gen", "secrets", "-o", str(out)], check=True, capture_output=True)
    subprocess.run([talosctl, "gen", "config", "lab", "https://127.93.1.100:6443", "--with-secrets", str(out),
                    "-o", str(tmp_path / "gen"), "--with-docs=false", "--with-examples=false"],
                   check=True, capture_output=True)
    return yaml.safe_load(out.read_text())


class Runner:
    """One Ansible task at a time on localhost, its result parsed from the json callback."""

    def __init__(self, tmp_path, talosctl_path):
        self.tmp, self.talosctl = tmp_path, talosctl_path
        self.inventory = tmp_path / "hosts.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))

    def __call__(self, module, args, *flags, fails=False):
        run = self.run(module, args, *flags, json_output=True)
        result = task_results(run.stdout)[0][2]
        assert bool(result.get("failed")) == fails, result.get("msg", result)
        return result

    def run(self, module, args, *flags, json_output=False):
        """The ansible-playbook run itself (the default callback prints every result in full at -vvv)."""
        task = {"name": module, "turnkey.cluster." + module: {**args, "talosctl_path": self.talosctl}}
        playbook = self.tmp / "play.yml"
        playbook.write_text(yaml.safe_dump([{"name": "t", "hosts": "localhost", "gather_facts": False,
                                             "tasks": [task]}], sort_keys=False))
        return run_playbook("-i", str(self.inventory), *flags, playbook=str(playbook), json_output=json_output,
                            timeout=180)


def config_with(gen, kind, change):
    """The generated config of a node type with one change to its v1alpha1 document."""
    documents = list(yaml.safe_load_all((gen / ("%s.yaml" % kind)).read_text()))
    change(documents[0])
    return yaml.safe_dump_all(documents, sort_keys=False)


def test_talosconfig_apply_and_bootstrap(talosctl, make_twin, bundle, tmp_path, monkeypatch):  # noqa: F811
    # the twin runs a real etcd and kube-apiserver (on the cluster endpoint 127.93.1.100:6443) after bootstrap
    for name, tool in (("TURNKEY_ETCD", "etcd"), ("TURNKEY_KUBE_APISERVER", "kube-apiserver")):
        monkeypatch.setenv(name, tool_path(tool))
    make_twin({"cp1": CP1, "w1": W1, "cp2": CP2})
    task = Runner(tmp_path, talosctl)
    gen, state = tmp_path / "gen", tmp_path / "state"
    talosconfig = str(state / "talos" / "talosconfig")
    args = {"cluster_name": "lab", "secrets": bundle, "endpoints": [CP1], "nodes": [CP1], "dest": talosconfig}

    # talosconfig: written 0600 from the bundle, its expiry reported, left alone, renewed when asked
    assert task("talos_talosconfig", args, "--check")["changed"]
    made = task("talos_talosconfig", args)
    assert made["changed"] and made["renewed"] and 360 <= made["days_left"] <= 365
    assert stat.S_IMODE((state / "talos" / "talosconfig").stat().st_mode) == 0o600
    written = (state / "talos" / "talosconfig").read_bytes()
    assert not task("talos_talosconfig", args)["changed"]
    assert (state / "talos" / "talosconfig").read_bytes() == written
    renewed = task("talos_talosconfig", {**args, "renew_days": 400})
    assert renewed["changed"] and renewed["renewed"] and "client certificate expires in" in renewed["reasons"][0]
    moved = task("talos_talosconfig", {**args, "endpoints": [CP1, CP2]})
    assert moved["changed"] and moved["reasons"] == ["endpoints"]

    # apply: maintenance mode is found and applied insecurely; check mode applies nothing
    cp1 = tmp_path / "cp1.yaml"
    cp1.write_text((gen / "controlplane.yaml").read_text())
    apply = {"node": CP1, "talosconfig": talosconfig, "config": str(cp1)}
    checked = task("talos_apply", apply, "--check")
    assert checked["changed"] and checked["maintenance"]
    assert task("talos_apply", apply, "--check")["maintenance"], "check mode must not have applied"
    first = task("talos_apply", apply)
    assert first["changed"] and first["maintenance"]
    again = task("talos_apply", apply)
    assert not again["changed"] and not again["maintenance"] and again["mode"] == "none"

    # a change Talos applies live: the dry run's diff is shown, the config applied without a reboot
    cp1.write_text(config_with(gen, "controlplane", lambda d: d["machine"]["nodeLabels"].update(rack="r1")))
    diffed = task("talos_apply", apply, "--check", "--diff")
    assert diffed["changed"] and "+        rack: r1" in diffed["config_diff"]
    live = task("talos_apply", apply)
    assert live["changed"] and live["mode"] == "no-reboot" and not live["reboot_required"]
    assert not task("talos_apply", apply)["changed"]

    # a diff touching a secret hides it, never shows the token (check mode: nothing applied)
    token = "abcdef.0123456789abcdef"
    cp1.write_text(config_with(gen, "controlplane", lambda d: d["machine"].update(
        token=token, nodeLabels={**d["machine"]["nodeLabels"], "rack": "r1"})))
    secret = task("talos_apply", apply, "--check", "--diff")
    assert secret["changed"] and "+    token: (hidden " in secret["config_diff"], secret["config_diff"]
    assert token not in secret["config_diff"] and token not in str(secret.get("diff"))
    assert bundle["trustdinfo"]["token"] not in secret["config_diff"]

    # a change that needs a reboot is staged, never rebooted by surprise; the rerun does not stage it again
    cp1.write_text(config_with(gen, "controlplane", lambda d: d["machine"].update(
        env={"http_proxy": "http://127.93.0.9:3128"}, nodeLabels={**d["machine"]["nodeLabels"], "rack": "r1"})))
    staged = task("talos_apply", apply)
    assert staged["changed"] and staged["mode"] == "staged" and staged["reboot_required"] and staged["staged"]
    assert stat.S_IMODE((tmp_path / "cp1.yaml.staged").stat().st_mode) == 0o600
    waiting = task("talos_apply", apply)
    assert not waiting["changed"] and waiting["staged"]
    assert any("waits for the node's next reboot" in w for w in waiting.get("warnings", []))
    rebooted = task("talos_apply", {**apply, "allow_reboot": True})  # the staged config is not applied twice
    assert not rebooted["changed"], "a config already staged is not applied again"
    # the operator's reboot activates it: the node runs the config, the marker goes, nothing is applied
    subprocess.run([talosctl, "--talosconfig", talosconfig, "-n", CP1, "-e", CP1, "reboot", "--wait=false"],
                   check=True, capture_output=True, timeout=60)
    after = task("talos_apply", apply)
    assert not after["changed"] and not after["staged"] and after["mode"] == "none"
    assert not (tmp_path / "cp1.yaml.staged").exists()

    # bootstrap: a node in maintenance mode is refused by name; the first control plane once, then no change
    refused = task("talos_bootstrap", {"node": CP2, "talosconfig": talosconfig}, fails=True)
    assert refused["msg"] == ("%s is still in maintenance mode (no machine config applied): apply its config "
                              "before bootstrap" % CP2)
    assert task("talos_bootstrap", {"node": CP1, "talosconfig": talosconfig}, "--check")["changed"]
    done = task("talos_bootstrap", {"node": CP1, "talosconfig": talosconfig})
    assert done["changed"] and done["bootstrapped"]
    twice = task("talos_bootstrap", {"node": CP1, "talosconfig": talosconfig})
    assert not twice["changed"] and not twice["bootstrapped"]
    assert not task("talos_bootstrap", {"node": CP1, "talosconfig": talosconfig}, "--check")["changed"]

    # a worker joins from maintenance mode too
    worker = tmp_path / "w1.yaml"
    worker.write_text((gen / "worker.yaml").read_text())
    assert task("talos_apply", {"node": W1, "talosconfig": talosconfig, "config": str(worker)})["maintenance"]

    # a config Talos refuses: the module's error names the node and carries Talos' InvalidArgument text
    broken = tmp_path / "cp2.yaml"
    broken.write_text(config_with(gen, "controlplane", lambda d: d["machine"].update(type="bogus")))
    refused = task("talos_apply", {"node": CP2, "talosconfig": talosconfig, "config": str(broken)}, fails=True)
    assert "on %s failed" % CP2 in refused["msg"] and "InvalidArgument" in refused["msg"], refused["msg"]

    # kubeconfig: fetched from Talos 0600, for the expected server and CA; left alone, renewed when asked
    kubeconfig = state / "kubeconfig"
    fetch = {"node": CP1, "talosconfig": talosconfig, "server": SERVER, "ca": bundle["certs"]["k8s"]["crt"],
             "dest": str(kubeconfig)}
    assert task("talos_kubeconfig", fetch, "--check", "--diff")["changed"] and not kubeconfig.exists()
    fetched = task("talos_kubeconfig", fetch)
    assert fetched["changed"] and fetched["renewed"] and 360 <= fetched["days_left"] <= 365
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"] == SERVER
    kept = task("talos_kubeconfig", fetch)
    assert not kept["changed"] and not kept["renewed"] and kept["reasons"] == []
    assert task("talos_kubeconfig", {**fetch, "renew_days": 400})["renewed"]
    wrong = task("talos_kubeconfig", {**fetch, "server": "https://127.93.1.99:6443"}, fails=True)
    assert "names server %s, not https://127.93.1.99:6443" % SERVER in wrong["msg"]
    other_ca = task("talos_kubeconfig", {**fetch, "ca": bundle["certs"]["os"]["crt"]}, fails=True)
    assert "trusts another CA" in other_ca["msg"]

    # health: etcd members and Nodes by name from the real etcd and kube-apiserver behind the twin
    health = {"kubeconfig": str(kubeconfig), "talosconfig": talosconfig,
              "controlplane_nodes": [{"name": "cp1", "ip": CP1}], "nodes": ["cp1", "w1"], "ready": False,
              "timeout": 120, "interval": 2}
    healthy = task("talos_health", health)
    assert not healthy["changed"] and "cp1" in healthy["etcd_members"] and set(healthy["nodes"]) >= {"cp1", "w1"}
    assert task("talos_health", health, "--check")["etcd_members"] == healthy["etcd_members"]
    missing = task("talos_health", {**health, "nodes": ["cp1", "w1", "w9"], "timeout": 4,
                                    "controlplane_nodes": [{"name": "cp1", "ip": CP1}, {"name": "cp9", "ip": CP2}]},
                   fails=True)
    assert "etcd members missing: cp9" in missing["msg"] and "nodes not registered: w9" in missing["msg"]
    # the twin's Nodes stay NotReady until a CNI runs, as real kubelets without Cilium do
    not_ready = task("talos_health", {**health, "ready": True, "timeout": 4}, fails=True)
    assert "nodes not Ready: cp1 (KubeletNotReady" in not_ready["msg"], not_ready["msg"]
    absent = task("talos_health", {**health, "kubeconfig": str(tmp_path / "none")}, "--check")
    assert not absent["changed"] and "no kubeconfig yet" in absent["msg"]


def test_unreachable_node_is_named(talosctl, tmp_path, bundle):  # noqa: F811
    task = Runner(tmp_path, talosctl)
    config = tmp_path / "cp.yaml"
    config.write_text((tmp_path / "gen" / "controlplane.yaml").read_text())
    failed = task("talos_apply", {"node": "127.93.9.9", "talosconfig": str(tmp_path / "none"), "config": str(config)},
                  fails=True)
    assert failed["msg"].startswith("node 127.93.9.9 does not answer on the Talos API")


def wireguard_key():
    return base64.b64encode(os.urandom(32)).decode()


def test_dry_run_diff_shows_only_allowed_paths_even_at_vvv(talosctl, make_twin, bundle, tmp_path):  # noqa: F811
    node = "127.93.2.1"
    make_twin({"cp1": node})
    task = Runner(tmp_path, talosctl)
    gen = tmp_path / "gen"
    config = tmp_path / "cp1.yaml"
    apply = {"node": node, "talosconfig": str(gen / "talosconfig"), "config": str(config)}

    def with_secrets(password, private_key, preshared, rack):
        def change(document):
            document["machine"]["nodeLabels"]["rack"] = rack
            document["machine"]["registries"] = {"config": {"registry.example.com": {"auth": {
                "username": "robot", "password": password}}}}
        documents = yaml.safe_load_all(config_with(gen, "controlplane", change))
        wireguard = {"apiVersion": "v1alpha1", "kind": "WireguardConfig", "name": "wg0", "privateKey": private_key,
                     "listenPort": 51820, "peers": [{"publicKey": PEER, "presharedKey": preshared,
                                                     "endpoint": "192.0.2.1:51820", "allowedIPs": ["10.9.0.0/24"]}]}
        return yaml.safe_dump_all([*documents, wireguard], sort_keys=False)

    old = ("old-registry-password-1", wireguard_key(), wireguard_key())
    config.write_text(with_secrets(*old, rack="r1"))
    assert task("talos_apply", apply)["maintenance"]
    new = ("new-registry-password-2", wireguard_key(), wireguard_key())
    config.write_text(with_secrets(*new, rack="r2"))

    checked = task("talos_apply", apply, "--check", "--diff")
    shown = checked["config_diff"]
    assert checked["changed"] and "-        rack: r1\n+        rack: r2" in shown, shown
    assert "-                    password: (hidden " in shown and "+                    password: (hidden " in shown
    assert "+privateKey: (hidden " in shown and "+      presharedKey: (hidden " in shown
    assert "      endpoint: 192.0.2.1:51820" in shown and "robot" not in shown
    verbose = task.run("talos_apply", apply, "--check", "--diff", "-vvv")
    assert verbose.returncode == 0 and '"config_diff": ' in verbose.stdout, verbose.stdout[-3000:]
    everything = shown + str(checked) + verbose.stdout + verbose.stderr
    for value in (*old, *new, bundle["trustdinfo"]["token"], bundle["secrets"]["bootstraptoken"],
                  bundle["certs"]["os"]["key"], bundle["certs"]["k8s"]["key"]):
        assert value not in everything, "a hidden value reached the output"


# A WireGuard peer's public key (public: shown).
PEER = "8ll5ELCTHvMvLzRT3B8HqwZ9rwzfFc0DRhF5ow7X1jE="


def test_client_configs_are_forced_back_to_0600_and_another_ca_is_replaced(talosctl, make_twin, bundle,  # noqa: F811
                                                                           tmp_path):
    node = "127.93.2.2"
    make_twin({"cp1": node})
    task = Runner(tmp_path, talosctl)
    state = tmp_path / "state"
    talosconfig, kubeconfig = state / "talosconfig", state / "kubeconfig"
    made = {"cluster_name": "lab", "secrets": bundle, "endpoints": [node], "nodes": [node], "dest": str(talosconfig)}
    assert task("talos_talosconfig", made)["changed"]
    written = talosconfig.read_bytes()
    talosconfig.chmod(0o644)
    checked = task("talos_talosconfig", made, "--check")
    assert checked["changed"] and checked["reasons"] == ["mode 0644, not 0600"]
    assert stat.S_IMODE(talosconfig.stat().st_mode) == 0o644, "check mode changes nothing"
    fixed = task("talos_talosconfig", made)
    assert fixed["changed"] and not fixed["renewed"] and stat.S_IMODE(talosconfig.stat().st_mode) == 0o600
    assert talosconfig.read_bytes() == written and not task("talos_talosconfig", made)["changed"]

    config = tmp_path / "cp1.yaml"
    config.write_text((tmp_path / "gen" / "controlplane.yaml").read_text())
    assert task("talos_apply", {"node": node, "talosconfig": str(talosconfig), "config": str(config)})["maintenance"]
    fetch = {"node": node, "talosconfig": str(talosconfig), "server": SERVER, "ca": bundle["certs"]["k8s"]["crt"],
             "dest": str(kubeconfig)}
    assert task("talos_kubeconfig", fetch)["changed"]
    kubeconfig.chmod(0o640)
    loose = task("talos_kubeconfig", fetch)
    assert loose["changed"] and loose["reasons"] == ["mode 0640, not 0600"] and not loose["renewed"]
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600 and not task("talos_kubeconfig", fetch)["changed"]

    # a kubeconfig that trusts another CA than the cluster's (the bundle's) is fetched again
    document = yaml.safe_load(kubeconfig.read_text())
    document["clusters"][0]["cluster"]["certificate-authority-data"] = bundle["certs"]["os"]["crt"]
    kubeconfig.write_text(yaml.safe_dump(document))
    kubeconfig.chmod(0o600)
    replaced = task("talos_kubeconfig", fetch)
    assert replaced["changed"] and replaced["reasons"] == ["CA differs"] and replaced["renewed"]
    trusted = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["certificate-authority-data"]
    assert trusted == bundle["certs"]["k8s"]["crt"]


@pytest.fixture
def silent_node():
    """A Talos API address that accepts connections and never answers (the kernel completes the handshake
    for the backlog; nobody reads), as a hung node or a black-holing proxy does."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.93.8.1", 50000))
    listener.listen(64)
    yield "127.93.8.1"
    listener.close()


def test_a_node_that_never_answers_fails_by_name_within_the_timeout(talosctl, silent_node, tmp_path,  # noqa: F811
                                                                     bundle):
    task = Runner(tmp_path, talosctl)
    config = tmp_path / "cp.yaml"
    config.write_text((tmp_path / "gen" / "controlplane.yaml").read_text())
    talosconfig = str(tmp_path / "gen" / "talosconfig")
    hung = task("talos_apply", {"node": silent_node, "talosconfig": talosconfig, "config": str(config),
                                "talosctl_timeout": 3}, fails=True)
    assert hung["msg"] == ("talosctl version --insecure on %s gave no answer within 3 s (talosctl_timeout): is the "
                           "node up and its Talos API (port 50000) answering?" % silent_node)
    fetch = task("talos_kubeconfig", {"node": silent_node, "talosconfig": talosconfig, "server": SERVER,
                                      "dest": str(tmp_path / "kubeconfig"), "talosctl_timeout": 3}, fails=True)
    assert fetch["msg"].startswith("talosctl kubeconfig from %s gave no answer within 3 s" % silent_node)
    assert not (tmp_path / "kubeconfig").exists()
    bootstrap = task("talos_bootstrap", {"node": silent_node, "talosconfig": talosconfig, "talosctl_timeout": 3},
                     fails=True)
    assert bootstrap["msg"].startswith("talosctl etcd members on %s gave no answer within 3 s" % silent_node)
    health = task("talos_health", {"kubeconfig": str(tmp_path / "kubeconfig"), "talosconfig": talosconfig,
                                   "controlplane_nodes": [{"name": "cp1", "ip": silent_node}], "nodes": ["cp1"],
                                   "timeout": 30, "interval": 1, "talosctl_timeout": 3}, fails=True)
    assert health["msg"].startswith("talosctl etcd members on %s gave no answer within 3 s" % silent_node)
