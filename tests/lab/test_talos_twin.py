"""The Talos node twin (lab/talos-twin) driven by the real, unmodified talosctl: maintenance mode,
apply-config --insecure, configured mode with the talosconfig client certificate, dry-run diffs, apply
modes, bootstrap. Each test runs its own twin on its own 127.91.<n>.0/24 addresses."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

REPO = Path(__file__).resolve().parents[2]
BUILD_TWIN = REPO / "lab" / "talos-twin" / "build.sh"
TOOLS_BUILD = REPO / "tools" / "build"
X509_UNKNOWN = "x509: certificate signed by unknown authority"


@pytest.fixture(scope="module")
def talosctl() -> str:
    result = subprocess.run([str(TOOLS_BUILD), "--print-path", "talosctl"], capture_output=True, text=True,
                            timeout=60, check=False)
    if result.returncode != 0:
        pytest.fail("talosctl is not built: run `make tools` first\n" + result.stderr)
    return result.stdout.strip()


@pytest.fixture(scope="module")
def twin_binary() -> str:
    # builds on the first use (about 90 s with warm module caches), then a no-op
    result = subprocess.run([str(BUILD_TWIN)], capture_output=True, text=True, timeout=1200, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


class Twin:
    def __init__(self, binary: str, root: Path, nodes: dict[str, str], user_data: dict[str, Path] | None = None):
        self.binary, self.root = binary, root
        self.nodes_file, self.state = root / "nodes.json", root / "state"
        self.proc: subprocess.Popen | None = None
        self.extra_args: list[str] = []  # e.g. --etcd/--kube-apiserver for the control plane behind bootstrap
        self.user_data = user_data or {}  # by node name: a cloud server's user data file, read at boot
        self.write_nodes(nodes)

    def write_nodes(self, nodes: dict[str, str]) -> None:
        tmp = self.nodes_file.with_suffix(".tmp")
        entries = [{"name": name, "ip": ip} for name, ip in nodes.items()]
        for entry in entries:
            if entry["name"] in self.user_data:
                entry["user_data"] = str(self.user_data[entry["name"]])
        tmp.write_text(json.dumps(entries))
        tmp.replace(self.nodes_file)

    def start(self, *ips: str) -> None:
        self.log = open(self.root / "twin.log", "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([self.binary, "--nodes", str(self.nodes_file), "--state", str(self.state),
                                      "--reload", "200ms", *self.extra_args], stdout=self.log, stderr=subprocess.STDOUT)
        for ip in ips:
            wait_listening(ip)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        with contextlib.suppress(AttributeError):
            self.log.close()


def wait_listening(ip: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((ip, 50000), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on {ip}:50000 after {timeout} s")
        time.sleep(0.1)


@pytest.fixture
def make_twin(twin_binary, tmp_path):
    twins: list[Twin] = []

    def make(nodes: dict[str, str]) -> Twin:
        twin = Twin(twin_binary, tmp_path, nodes)
        twin.start(*nodes.values())
        twins.append(twin)
        return twin

    yield make
    for twin in twins:
        twin.stop()


@pytest.fixture
def cluster_configs(talosctl, tmp_path) -> Path:
    out = tmp_path / "gen"
    run(talosctl, "gen", "config", "twin", "https://127.91.0.100:6443", "-o", str(out))
    return out


def run(talosctl: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([talosctl, *args], capture_output=True, text=True, timeout=60, check=False)
    result.output = result.stdout + result.stderr
    if ok:
        assert result.returncode == 0, f"talosctl {' '.join(args)} failed:\n{result.output}"
    else:
        assert result.returncode != 0, f"talosctl {' '.join(args)} should have failed:\n{result.output}"
    return result


def configured(talosctl, gen: Path, ip: str, *args: str, endpoint: str | None = None, ok: bool = True):
    return run(talosctl, "--talosconfig", str(gen / "talosconfig"), "-n", ip, "-e", endpoint or ip, *args, ok=ok)


def apply_insecure(talosctl, ip: str, config: Path) -> subprocess.CompletedProcess:
    return run(talosctl, "apply-config", "--insecure", "-n", ip, "-e", ip, "-f", str(config))


def test_maintenance_mode_answers_version_insecure(talosctl, make_twin):
    make_twin({"m1": "127.91.1.2"})
    out = run(talosctl, "version", "--insecure", "-n", "127.91.1.2", "-e", "127.91.1.2").output
    server = out.split("Server:", 1)[1]
    assert "NODE:        127.91.1.2" in server
    assert "Tag:         v1.13.9" in server


def test_apply_insecure_switches_to_configured_mode_and_persists(talosctl, make_twin, cluster_configs):
    ip = "127.91.2.2"
    twin = make_twin({"cp1": ip})
    out = apply_insecure(talosctl, ip, cluster_configs / "controlplane.yaml").output
    assert "Applied configuration without a reboot" in out

    out = configured(talosctl, cluster_configs, ip, "version").output
    assert "NODE:        %s" % ip in out and "Enabled:     RBAC" in out
    # a configured node wants the client certificate: the maintenance client is refused at the TLS level
    assert "error getting version" in run(talosctl, "version", "--insecure", "-n", ip, "-e", ip, ok=False).output
    # maintenance-only apply is over
    run(talosctl, "apply-config", "--insecure", "-n", ip, "-e", ip, "-f", str(cluster_configs / "controlplane.yaml"),
        ok=False)

    state = json.loads((twin.state / "cp1" / "state.json").read_text())
    assert state["applies"][0]["mode"] == "auto(no_reboot)" and state["applies"][0]["maintenance"] is True
    twin.stop()
    twin.start(ip)
    configured(talosctl, cluster_configs, ip, "version")


def patched(talosctl, gen: Path, patch: dict, name: str) -> Path:
    patch_file = gen / (name + ".patch.yaml")
    patch_file.write_text(yaml.safe_dump(patch))
    out = gen / (name + ".yaml")
    run(talosctl, "machineconfig", "patch", str(gen / "controlplane.yaml"), "-p", "@" + str(patch_file), "-o", str(out))
    return out


def test_dry_run_reports_the_diff_and_changes_nothing(talosctl, make_twin, cluster_configs):
    ip = "127.91.3.2"
    twin = make_twin({"cp1": ip})
    apply_insecure(talosctl, ip, cluster_configs / "controlplane.yaml")
    applied = (twin.state / "cp1" / "config.yaml").read_bytes()

    same = configured(talosctl, cluster_configs, ip, "apply-config", "-f", str(cluster_configs / "controlplane.yaml"),
                      "--dry-run").output
    assert "Dry run summary:" in same and "No changes." in same

    labels = patched(talosctl, cluster_configs, {"machine": {"nodeLabels": {"zone": "a"}}}, "labels")
    out = configured(talosctl, cluster_configs, ip, "apply-config", "-f", str(labels), "--dry-run").output
    assert "Applied configuration without a reboot (skipped in dry-run)." in out
    assert "+        zone: a" in out

    env = patched(talosctl, cluster_configs, {"machine": {"env": {"FOO": "bar"}}}, "env")
    out = configured(talosctl, cluster_configs, ip, "apply-config", "-f", str(env), "--dry-run").output
    assert "Applied configuration with a reboot (skipped in dry-run)." in out
    assert "+        FOO: bar" in out

    assert (twin.state / "cp1" / "config.yaml").read_bytes() == applied
    assert len(json.loads((twin.state / "cp1" / "state.json").read_text())["applies"]) == 1


def test_apply_modes_are_honoured_and_recorded(talosctl, make_twin, cluster_configs):
    ip = "127.91.4.2"
    twin = make_twin({"cp1": ip})
    apply_insecure(talosctl, ip, cluster_configs / "controlplane.yaml")
    node_dir = twin.state / "cp1"
    env = patched(talosctl, cluster_configs, {"machine": {"env": {"FOO": "bar"}}}, "env")

    # a change that needs a reboot is refused in no-reboot mode, with the reason
    out = configured(talosctl, cluster_configs, ip, "apply-config", "-f", str(env), "--mode", "no-reboot",
                     ok=False).output
    assert "code = InvalidArgument" in out and "can't be applied in immediate mode" in out

    out = configured(talosctl, cluster_configs, ip, "apply-config", "-f", str(env), "--mode", "staged").output
    assert "Staged configuration to be applied after the next reboot" in out
    assert (node_dir / "staged.yaml").read_bytes() == env.read_bytes()
    assert "FOO: bar" not in (node_dir / "config.yaml").read_text()

    out = configured(talosctl, cluster_configs, ip, "apply-config", "-f", str(env), "--mode", "reboot").output
    assert "Applied configuration with a reboot" in out
    assert "FOO: bar" in (node_dir / "config.yaml").read_text() and not (node_dir / "staged.yaml").exists()

    labels = patched(talosctl, cluster_configs, {"machine": {"env": {"FOO": "bar"}, "nodeLabels": {"zone": "a"}}},
                     "labels")
    assert "without a reboot" in configured(talosctl, cluster_configs, ip, "apply-config", "-f", str(labels)).output

    state = json.loads((node_dir / "state.json").read_text())
    assert [a["mode"] for a in state["applies"]] == ["auto(no_reboot)", "staged", "reboot", "auto(no_reboot)"]
    assert state["reboots"] == 1


def test_bootstrap_once_then_already_exists(talosctl, make_twin, cluster_configs):
    cp, worker, fresh = "127.91.5.2", "127.91.5.3", "127.91.5.4"
    twin = make_twin({"cp1": cp, "w1": worker, "cp2": fresh})
    apply_insecure(talosctl, cp, cluster_configs / "controlplane.yaml")
    apply_insecure(talosctl, worker, cluster_configs / "worker.yaml")

    configured(talosctl, cluster_configs, cp, "bootstrap")
    out = configured(talosctl, cluster_configs, cp, "bootstrap", ok=False).output
    assert "rpc error: code = AlreadyExists desc = etcd data directory is not empty" in out

    # a worker has no key for machine.ca: its certificate comes from the control plane's, as through trustd
    out = configured(talosctl, cluster_configs, worker, "bootstrap", ok=False).output
    assert "code = Unimplemented desc = bootstrap is only available on control plane nodes" in out

    # a node still in maintenance mode serves a self-signed certificate the talosconfig CA does not trust,
    # directly or through a configured endpoint
    assert X509_UNKNOWN in configured(talosctl, cluster_configs, fresh, "bootstrap", ok=False).output
    out = configured(talosctl, cluster_configs, fresh, "bootstrap", endpoint=cp, ok=False).output
    assert "127.91.5.4: rpc error: code = Unavailable" in out and X509_UNKNOWN in out

    assert json.loads((twin.state / "cp1" / "state.json").read_text())["bootstrapped"] is True
    twin.stop()
    twin.start(cp)
    assert "AlreadyExists" in configured(talosctl, cluster_configs, cp, "bootstrap", ok=False).output


def test_nodes_file_is_reread_and_nodes_answer_together(talosctl, make_twin, cluster_configs):
    a, b = "127.91.6.2", "127.91.6.3"
    twin = make_twin({"cp1": a})
    twin.write_nodes({"cp1": a, "cp2": b})
    wait_listening(b)
    for ip in (a, b):
        apply_insecure(talosctl, ip, cluster_configs / "controlplane.yaml")
    out = configured(talosctl, cluster_configs, "%s,%s" % (a, b), "version", endpoint=a).output
    assert "NODE:        %s" % a in out and "NODE:        %s" % b in out

    twin.write_nodes({"cp2": b})

    def gone():
        with socket.socket() as probe:
            probe.settimeout(0.5)
            return probe.connect_ex((a, 50000)) != 0

    deadline = time.monotonic() + 10
    while not gone():
        assert time.monotonic() < deadline, "cp1 still listens after leaving the nodes file"
        time.sleep(0.1)


def reader_talosconfig(gen: Path) -> Path:
    """A copy of the talosconfig whose client certificate carries the os:reader role, signed by machine.ca."""
    machine_ca = yaml.safe_load((gen / "controlplane.yaml").read_text().split("\n---\n")[0])["machine"]["ca"]
    ca_cert = x509.load_pem_x509_certificate(base64.b64decode(machine_ca["crt"]))
    # Talos writes the PKCS#8 key under an "ED25519 PRIVATE KEY" header
    ca_pem = base64.b64decode(machine_ca["key"]).decode()
    ca_key = serialization.load_der_private_key(base64.b64decode("".join(ca_pem.strip().splitlines()[1:-1])), None)

    key = ed25519.Ed25519PrivateKey.generate()
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "os:reader")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, None))
    config = yaml.safe_load((gen / "talosconfig").read_text())
    context = config["contexts"][config["context"]]
    context["crt"] = base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()
    context["key"] = base64.b64encode(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption())).decode()
    path = gen / "reader-talosconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_role_comes_from_the_client_certificate(talosctl, make_twin, cluster_configs):
    ip = "127.91.7.2"
    make_twin({"cp1": ip})
    apply_insecure(talosctl, ip, cluster_configs / "controlplane.yaml")
    reader = str(reader_talosconfig(cluster_configs))

    run(talosctl, "--talosconfig", reader, "-n", ip, "-e", ip, "version")
    for args in (["bootstrap"], ["apply-config", "-f", str(cluster_configs / "controlplane.yaml")]):
        out = run(talosctl, "--talosconfig", reader, "-n", ip, "-e", ip, *args, ok=False).output
        assert "code = PermissionDenied desc = not authorized" in out, out
