"""A real control plane for the cluster-role tests: the pinned etcd and kube-apiserver (tools/build) on
127.94.0.x with a throwaway CA and an admin kubeconfig (O=system:masters). No kubelet or controllers run,
so no pod starts by itself."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import shutil
import socket
import subprocess
import sys
import time

import pytest
import yaml

from tests.playbook_runner import lab_env
from tests.tools import built_tools

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


def start_control_plane(found, root, pki, files, start, etcd_port, peer_port, api_port):
    """Starts etcd and kube-apiserver on the given ports; the admin kubeconfig."""
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
    return kubeconfig


def wait_until_ready(found, kubeconfig, processes):
    """None once the API server serves kube-system; else why not (a server exited, or 120 s passed)."""
    deadline = time.monotonic() + 120
    while True:
        ready = kube(found, kubeconfig, "get", "--raw", "/readyz", check=False)
        namespace = kube(found, kubeconfig, "get", "namespace", "kube-system", check=False)
        if ready.returncode == 0 and namespace.returncode == 0:
            return None
        if any(process.poll() is not None for process in processes):
            return "a server exited"
        if time.monotonic() > deadline:
            return "not ready in 120 s"
        time.sleep(1)


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    """etcd + kube-apiserver on 127.94.0.1; yields (kubeconfig path, tools)."""
    found = tools()
    root = tmp_path_factory.mktemp("control-plane")
    pki = root / "pki"
    pki.mkdir()
    files = write_pki(pki)
    logs = []
    processes = []

    def start(name, args):
        log = open(root / (name + ".log"), "w")  # noqa: SIM115 - closed in the finalizer
        logs.append(log)
        processes.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root))

    try:
        # A port probed free can be taken before the server binds it (the other xdist worker's servers and client
        # connections share the address): that start is tried again on new ports, anything else fails at once.
        for attempt in range(3):
            etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
            kubeconfig = start_control_plane(found, root, pki, files, start, etcd_port, peer_port, api_port)
            failed = wait_until_ready(found, kubeconfig, processes)
            if not failed:
                break
            for log in logs:
                log.flush()
            output = (root / "etcd.log").read_text()[-2000:] + "\n" + (root / "kube-apiserver.log").read_text()[-3000:]
            if "address already in use" not in output or attempt == 2:
                pytest.fail("the control plane did not start (%s):\n%s" % (failed, output))
            stop(processes)
            processes.clear()
            for log in logs:
                log.close()
            logs.clear()
            shutil.rmtree(root / "etcd", ignore_errors=True)
        yield kubeconfig, found
    finally:
        stop(processes)
        for log in logs:
            log.close()


def stop(processes):
    for process in reversed(processes):
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)  # a throwaway control plane: no need for a graceful end
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def kubectl(found, kubeconfig, *args):
    """kubectl's JSON output on the control plane; fails the test on an error."""
    return json.loads(kube(found, kubeconfig, *args, "-o", "json").stdout)


def kube(found, kubeconfig, *args, stdin=None, check=True):
    """kubectl on the control plane; fails the test on an error unless check is false. The finished process."""
    done = subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), *args], input=stdin,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 or not check, done.stderr
    return done


def cilium_env(tmp_path, found):
    """The environment of a playbook run of role cilium: an isolated lab state folder, helm and the chart."""
    return {**lab_env(tmp_path), "TURNKEY_HELM": found["TURNKEY_HELM"],
            "TURNKEY_CILIUM_CHART": found["TURNKEY_CILIUM_CHART"]}


def bare_control_plane(tmp_path_factory, address):
    """control_plane on another address, with only what a control plane needs (the cluster tests also ask for helm
    and the Cilium chart): for the tests of other folders that need an API server on their own net. A generator
    for their module-scoped fixture to `yield from`."""
    with pytest.MonkeyPatch.context() as patch:
        this = sys.modules[__name__]
        patch.setattr(this, "ADDRESS", address)
        patch.setattr(this, "NEEDED", ("TURNKEY_ETCD", "TURNKEY_KUBE_APISERVER", "TURNKEY_KUBECTL"))
        yield from control_plane.__wrapped__(tmp_path_factory)
