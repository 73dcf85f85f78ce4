"""Roles cilium and sealed_secrets_key against a real control plane: the pinned etcd and kube-apiserver
(tools/build) on 127.94.0.x with a throwaway CA and an admin kubeconfig (O=system:masters). No kubelet or
controllers run, so no pod starts; what the roles own is checked: the helm release and its objects, the
values helm stored, the Secret, and that reruns and --check --diff change nothing."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import socket
import subprocess
import time

import pytest
import yaml

from tests.playbook_runner import REPO, TEST_VAULT_PASSWORD, copy_inventory, lab_env, recap, run_playbook
from tests.store_access import open_store
from tests.tools import built_tools

SCHEMA = REPO.parent / "shared" / "schemas" / "cilium" / "cilium-1.20.0-values.schema.json"
ADDRESS = "127.94.0.1"
NEEDED = ("TURNKEY_ETCD", "TURNKEY_KUBE_APISERVER", "TURNKEY_HELM", "TURNKEY_KUBECTL", "TURNKEY_CILIUM_CHART")


def tools():
    return built_tools(*NEEDED)


def free_port():
    with socket.socket() as probe:
        probe.bind((ADDRESS, 0))
        return probe.getsockname()[1]


def write_pki(folder):
    """A CA, the API server's serving cert, the service-account key and an admin client cert."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    now = datetime.datetime.now(datetime.UTC)

    def pem_key(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def name(cn, org=None):
        parts = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(parts)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("turnkey-test-ca")).issuer_name(name("turnkey-test-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def issue(cn, org, usage, sans=()):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn, org)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server = issue("kube-apiserver", None, ExtendedKeyUsageOID.SERVER_AUTH, [
        x509.IPAddress(ipaddress.ip_address(ADDRESS)), x509.DNSName("localhost"), x509.DNSName("kubernetes")])
    admin_key, admin = issue("turnkey-admin", "system:masters", ExtendedKeyUsageOID.CLIENT_AUTH)
    sa_key = ec.generate_private_key(ec.SECP256R1())
    files = {"ca.crt": ca.public_bytes(serialization.Encoding.PEM),
             "server.crt": server.public_bytes(serialization.Encoding.PEM), "server.key": pem_key(server_key),
             "admin.crt": admin.public_bytes(serialization.Encoding.PEM), "admin.key": pem_key(admin_key),
             "sa.key": pem_key(sa_key),
             "sa.pub": sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)}
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
        (folder / file_name).chmod(0o600)
    return files


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    """etcd + kube-apiserver on 127.94.0.1; yields (kubeconfig path, tools)."""
    found = tools()
    root = tmp_path_factory.mktemp("control-plane")
    pki = root / "pki"
    pki.mkdir()
    files = write_pki(pki)
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    logs = []
    processes = []

    def start(name, args):
        log = open(root / (name + ".log"), "w")  # noqa: SIM115 - closed in the finalizer
        logs.append(log)
        processes.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root))

    try:
        start("etcd", [found["TURNKEY_ETCD"], "--name", "test", "--data-dir", str(root / "etcd"),
                       "--listen-client-urls", "http://%s:%d" % (ADDRESS, etcd_port),
                       "--advertise-client-urls", "http://%s:%d" % (ADDRESS, etcd_port),
                       "--listen-peer-urls", "http://%s:%d" % (ADDRESS, peer_port),
                       "--initial-advertise-peer-urls", "http://%s:%d" % (ADDRESS, peer_port),
                       "--initial-cluster", "test=http://%s:%d" % (ADDRESS, peer_port),
                       "--listen-metrics-urls", "", "--log-level", "warn"])
        start("kube-apiserver", [
            found["TURNKEY_KUBE_APISERVER"], "--etcd-servers", "http://%s:%d" % (ADDRESS, etcd_port),
            "--bind-address", ADDRESS, "--advertise-address", ADDRESS, "--secure-port", str(api_port),
            "--tls-cert-file", str(pki / "server.crt"), "--tls-private-key-file", str(pki / "server.key"),
            "--client-ca-file", str(pki / "ca.crt"), "--authorization-mode", "Node,RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(pki / "sa.pub"),
            "--service-account-signing-key-file", str(pki / "sa.key"),
            "--service-cluster-ip-range", "10.96.0.0/12", "--cert-dir", str(root / "certs"),
            "--allow-privileged=true", "--enable-priority-and-fairness=false", "--profiling=false"])
        kubeconfig = root / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "admin",
            "clusters": [{"name": "test", "cluster": {
                "server": "https://%s:%d" % (ADDRESS, api_port),
                "certificate-authority-data": base64.b64encode(files["ca.crt"]).decode()}}],
            "users": [{"name": "admin", "user": {
                "client-certificate-data": base64.b64encode(files["admin.crt"]).decode(),
                "client-key-data": base64.b64encode(files["admin.key"]).decode()}}],
            "contexts": [{"name": "admin", "context": {"cluster": "test", "user": "admin"}}]}))
        kubeconfig.chmod(0o600)
        deadline = time.monotonic() + 120
        while True:
            ready = subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), "get", "--raw",
                                    "/readyz"], capture_output=True, text=True, check=False)
            namespace = subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), "get",
                                        "namespace", "kube-system"], capture_output=True, text=True, check=False)
            if ready.returncode == 0 and namespace.returncode == 0:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                for log in logs:
                    log.flush()
                pytest.fail("the control plane did not start:\n%s\n%s" % (
                    (root / "etcd.log").read_text()[-2000:], (root / "kube-apiserver.log").read_text()[-3000:]))
            time.sleep(1)
        yield kubeconfig, found
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=5)  # a throwaway control plane: no need for a graceful end
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


def kubectl(found, kubeconfig, *args):
    done = subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), *args, "-o", "json"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


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
        {"name": "Cilium", "ansible.builtin.include_role": {"name": "turnkey.cluster.cilium"},
         "vars": {"cilium_kubeconfig": str(kubeconfig)}},
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
    env = {**lab_env(tmp_path), "TURNKEY_HELM": found["TURNKEY_HELM"],
           "TURNKEY_CILIUM_CHART": found["TURNKEY_CILIUM_CHART"]}
    keypair, roles = write_playbooks(tmp_path, kubeconfig)
    made = run_playbook("-i", str(inventory), playbook=str(keypair), env=env)
    assert made.returncode == 0, made.stdout[-3000:]

    # --check on the empty cluster: both would change, nothing is created.
    dry = run_playbook("-i", str(inventory), "--check", "--diff", playbook=str(roles), env=env)
    assert dry.returncode == 0, dry.stdout[-5000:]
    assert recap(dry.stdout)["localhost"]["changed"] == 2, dry.stdout[-3000:]
    for kind, name in (("daemonset", "cilium"), ("secret", "sealed-secrets-key-turnkey")):
        absent = subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), "get", kind, name, "-n",
                                 "kube-system"], capture_output=True, text=True, check=False)
        assert absent.returncode != 0 and "NotFound" in absent.stderr, (kind, absent.stdout)

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
    config = kubectl(found, kubeconfig, "get", "configmap", "cilium-config", "-n", "kube-system")["data"]
    assert config["kube-proxy-replacement"] == "true" and config["ipam"] == "kubernetes"

    secret = kubectl(found, kubeconfig, "get", "secret", "sealed-secrets-key-turnkey", "-n", "kube-system")
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["labels"]["sealedsecrets.bitnami.com/sealed-secrets-key"] == "active"
    stored = open_store(inventory / "secrets", TEST_VAULT_PASSWORD).read("sealed_secrets")["data"]
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
    check_changed = run_playbook("-i", str(inventory), "--check", "-e", "cilium_l2_announcements=false",
                                 playbook=str(roles), env=env)
    assert check_changed.returncode == 0 and recap(check_changed.stdout)["localhost"]["changed"] == 1
    assert helm_values(found, kubeconfig)["l2announcements"] == {"enabled": True}
    print("first run %.1fs, rerun %.1fs" % (first_seconds, rerun_seconds))


def test_rendered_values_follow_the_official_schema(tmp_path, control_plane):
    """The values helm stored for the release (the role's rendering) validate against the published
    cilium-1.20.0 values schema, for both routing modes."""
    if not SCHEMA.exists():
        pytest.skip("%s is absent (../shared/schemas is not beside the project)" % SCHEMA)
    import jsonschema  # noqa: PLC0415 - only with the schema beside the project

    kubeconfig, found = control_plane
    inventory = copy_inventory(tmp_path, "lab")
    env = {**lab_env(tmp_path), "TURNKEY_HELM": found["TURNKEY_HELM"],
           "TURNKEY_CILIUM_CHART": found["TURNKEY_CILIUM_CHART"]}
    keypair, roles = write_playbooks(tmp_path, kubeconfig)
    assert run_playbook("-i", str(inventory), playbook=str(keypair), env=env).returncode == 0
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
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
