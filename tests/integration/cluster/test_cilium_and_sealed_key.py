"""Roles cilium and sealed_secrets_key against a real control plane: the pinned etcd and kube-apiserver
(tools/build) on 127.94.0.x with a throwaway CA and an admin kubeconfig (O=system:masters). No kubelet or
controllers run, so no pod starts; what the roles own is checked: the helm release and its objects, the
values helm stored, the Secret, and that reruns and --check --diff change nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time

import yaml

from tests.integration.cluster.conftest import cilium_env, kubectl, tools
from tests.playbook_runner import TEST_VAULT_PASSWORD, copy_inventory, lab_env, recap, run_playbook
from tests.schemas import official_schema
from tests.store_access import open_store

SCHEMA = "cilium/cilium-1.20.0-values.schema.json"  # under ../shared/schemas, see tests/schemas.py


def sealed_key_secrets(found, kubeconfig):
    """The Secrets the sealed-secrets controller takes as its keys (label active), by name."""
    listed = kubectl(found, kubeconfig, "get", "secret", "-n", "kube-system", "-l",
                     "sealedsecrets.bitnami.com/sealed-secrets-key=active")
    return {secret["metadata"]["name"]: secret for secret in listed["items"]}


def key_id(certificate_pem):
    """SHA-256 of the certificate's public key (DER), computed here independently of the collection."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    public = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
    return hashlib.sha256(public.public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def helm_values(found, kubeconfig):
    done = subprocess.run([found["TURNKEY_HELM"], "--kubeconfig", str(kubeconfig), "get", "values", "cilium",
                           "-n", "kube-system", "-o", "json"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def write_playbooks(tmp_path, kubeconfig):
    """The layer 00 keypair (as layer 00 makes it), then the two roles the way layer 01 includes them."""
    make_keypair = {"name": "The sealed-secrets keypair", "turnkey.cluster.persistent_secret": {
        "name": "sealed_secrets", "type": "sealed_secrets_keypair", "store_path": "{{ secrets_store.path }}",
        "vault_password_file": "{{ secrets_store.vault_password_file }}"}}
    keypair = tmp_path / "keypair.yml"
    keypair.write_text(yaml.safe_dump([{"name": "layer 00 keypair", "hosts": "localhost", "gather_facts": False,
                                        "tasks": [make_keypair]}]))
    include = [
        # A bare API server runs no pods, so no agent ever turns Ready: the wait is tested in test_cilium_ready.py
        # and on the lab's control loop (tests/lab/test_lab_control_loop.py), not here.
        {"name": "Cilium", "ansible.builtin.include_role": {"name": "turnkey.cluster.cilium"},
         "vars": {"cilium_kubeconfig": str(kubeconfig), "cilium_wait_ready": False}},
        {"name": "Key", "ansible.builtin.include_role": {"name": "turnkey.cluster.sealed_secrets_key"},
         "vars": {"sealed_secrets_key_kubeconfig": str(kubeconfig)}},
    ]
    roles = tmp_path / "roles.yml"
    roles.write_text(yaml.safe_dump([{"name": "cilium and the sealed-secrets key", "hosts": "localhost",
                                      "gather_facts": False, "tasks": include}]))
    return keypair, roles


def test_cilium_and_the_sealed_secrets_key(tmp_path, control_plane):
    kubeconfig, found = control_plane
    inventory = copy_inventory(tmp_path, "lab")
    env = cilium_env(tmp_path, found)
    keypair, roles = write_playbooks(tmp_path, kubeconfig)
    made = run_playbook("-i", str(inventory), playbook=str(keypair), env=env)
    assert made.returncode == 0, made.stdout[-3000:]

    # --check on the empty cluster: both would change, nothing is created.
    dry = run_playbook("-i", str(inventory), "--check", "--diff", playbook=str(roles), env=env)
    assert dry.returncode == 0, dry.stdout[-5000:]
    assert recap(dry.stdout)["localhost"]["changed"] == 2, dry.stdout[-3000:]
    absent = subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), "get", "daemonset", "cilium",
                             "-n", "kube-system"], capture_output=True, text=True, check=False)
    assert absent.returncode != 0 and "NotFound" in absent.stderr, absent.stdout
    assert sealed_key_secrets(found, kubeconfig) == {}

    started = time.monotonic()
    first = run_playbook("-i", str(inventory), playbook=str(roles), env=env)
    first_seconds = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-5000:]
    assert recap(first.stdout)["localhost"]["changed"] == 2, first.stdout[-3000:]

    daemonset = kubectl(found, kubeconfig, "get", "daemonset", "cilium", "-n", "kube-system")
    assert daemonset["metadata"]["annotations"]["meta.helm.sh/release-name"] == "cilium"
    image = daemonset["spec"]["template"]["spec"]["containers"][0]["image"]
    assert "cilium/cilium:v1.20.0" in image
    releases = subprocess.run([found["TURNKEY_HELM"], "--kubeconfig", str(kubeconfig), "list", "-n", "kube-system",
                               "-o", "json"], capture_output=True, text=True, check=True)
    release = {r["name"]: r for r in json.loads(releases.stdout)}["cilium"]
    assert release["status"] == "deployed" and release["chart"] == "cilium-1.20.0"

    values = helm_values(found, kubeconfig)
    assert values["kubeProxyReplacement"] is True
    assert values["k8sServiceHost"] == "localhost" and values["k8sServicePort"] == 7445
    assert values["ipam"] == {"mode": "kubernetes"}
    assert values["cgroup"] == {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"}
    assert "SYS_MODULE" not in values["securityContext"]["capabilities"]["ciliumAgent"]
    assert values["operator"]["replicas"] == 2 and values["cluster"]["name"] == "lab"
    # Cilium's ingress controller, which the platform tree chose: one shared Service from the `ingress` pool, the
    # default IngressClass, the tree's wildcard certificate as the default TLS secret
    assert values["ingressController"] == {
        "enabled": True, "default": True, "loadbalancerMode": "shared", "defaultSecretNamespace": "kube-system",
        "defaultSecretName": "ingress-default-tls", "service": {"labels": {"lb.turnkey.cluster/pool": "ingress"}}}
    config = kubectl(found, kubeconfig, "get", "configmap", "cilium-config", "-n", "kube-system")["data"]
    assert config["kube-proxy-replacement"] == "true" and config["ipam"] == "kubernetes"
    assert config["enable-ingress-controller"] == "true"
    ingress = kubectl(found, kubeconfig, "get", "service", "cilium-ingress", "-n", "kube-system")
    assert ingress["spec"]["type"] == "LoadBalancer"
    assert ingress["metadata"]["labels"]["lb.turnkey.cluster/pool"] == "ingress"
    assert kubectl(found, kubeconfig, "get", "ingressclass", "cilium")["metadata"]["annotations"][
        "ingressclass.kubernetes.io/is-default-class"] == "true"

    stored = open_store(inventory / "secrets", TEST_VAULT_PASSWORD).read("sealed_secrets")["data"]
    secrets = sealed_key_secrets(found, kubeconfig)
    assert list(secrets) == ["sealed-secrets-key-turnkey-" + key_id(stored["certificate"])[:16]]
    secret = next(iter(secrets.values()))
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["labels"]["sealedsecrets.bitnami.com/sealed-secrets-key"] == "active"
    assert base64.b64decode(secret["data"]["tls.crt"]).decode() == stored["certificate"]
    assert base64.b64decode(secret["data"]["tls.key"]).decode() == stored["private_key"]
    key_lines = [line for line in stored["private_key"].splitlines() if "-----" not in line]
    assert not any(line in first.stdout for line in key_lines[:3]), "the private key was printed"

    started = time.monotonic()
    rerun = run_playbook("-i", str(inventory), playbook=str(roles), env=env)
    rerun_seconds = time.monotonic() - started
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert recap(rerun.stdout)["localhost"]["changed"] == 0, rerun.stdout[-3000:]

    check = run_playbook("-i", str(inventory), "--check", "--diff", playbook=str(roles), env=env)
    assert check.returncode == 0, check.stdout[-3000:]
    assert recap(check.stdout)["localhost"]["changed"] == 0, check.stdout[-3000:]
    assert not any(line in check.stdout for line in key_lines[:3]), "the private key was printed"

    # A spec change shows in --check and is applied by the next run.
    # L2 announcements follow the spec's pools (the lab has three); switched off, --check shows the change.
    assert helm_values(found, kubeconfig)["l2announcements"] == {"enabled": True}
    check_changed = run_playbook("-i", str(inventory), "--check", "-e", '{"cilium_l2_announcements": false}',
                                 playbook=str(roles), env=env)
    assert check_changed.returncode == 0 and recap(check_changed.stdout)["localhost"]["changed"] == 1
    assert helm_values(found, kubeconfig)["l2announcements"] == {"enabled": True}
    print("first run %.1fs, rerun %.1fs" % (first_seconds, rerun_seconds))


def test_rendered_values_follow_the_official_schema(tmp_path, control_plane):
    """The values helm stored for the release (the role's rendering) validate against the published
    cilium-1.20.0 values schema, for both routing modes."""
    schema = official_schema(SCHEMA)
    import jsonschema  # noqa: PLC0415 - only with the schema beside the project

    kubeconfig, found = control_plane
    inventory = copy_inventory(tmp_path, "lab")
    env = cilium_env(tmp_path, found)
    keypair, roles = write_playbooks(tmp_path, kubeconfig)
    assert run_playbook("-i", str(inventory), playbook=str(keypair), env=env).returncode == 0
    validator = jsonschema.Draft7Validator(json.loads(schema.read_text()))
    # native, with cilium_extra_values merged recursively over the rendered values; then tunnel, without.
    extra = json.dumps({"cilium_extra_values": {"hubble": {"ui": {"enabled": False}}}})
    for mode, more in (("native", ["-e", extra]), ("tunnel", [])):
        done = run_playbook("-i", str(inventory), "-e", "cilium_routing_mode=%s" % mode, *more, playbook=str(roles),
                            env=env)
        assert done.returncode == 0, done.stdout[-3000:]
        values = helm_values(found, kubeconfig)
        assert values["routingMode"] == mode
        assert ("ipv4NativeRoutingCIDR" in values) == (mode == "native")
        if mode == "native":
            assert values["ipv4NativeRoutingCIDR"] == "10.244.0.0/16" and values["autoDirectNodeRoutes"] is True
        assert values["hubble"]["ui"]["enabled"] is (mode == "tunnel") and values["hubble"]["relay"]["enabled"]
        errors = sorted(validator.iter_errors(values), key=str)
        assert not errors, "\n".join(str(e.message) for e in errors)


def test_missing_chart_stops_with_the_fix(tmp_path):
    """Without the chart the role stops before touching the cluster and names `make tools`."""
    found = tools()
    inventory = copy_inventory(tmp_path, "lab")
    env = {**lab_env(tmp_path), "TURNKEY_HELM": found["TURNKEY_HELM"],
           "TURNKEY_CILIUM_CHART": str(tmp_path / "no-chart")}
    _keypair, roles = write_playbooks(tmp_path, tmp_path / "no-kubeconfig")
    done = run_playbook("-i", str(inventory), playbook=str(roles), env=env)
    assert done.returncode != 0
    assert "run `make tools`" in done.stdout and "Install or upgrade Cilium" not in done.stdout
