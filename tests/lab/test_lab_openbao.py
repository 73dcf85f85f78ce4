"""The lab against a REAL OpenBao server, no mocks.

The life cycle is ONE test made of steps, so pytest-xdist (`pytest -n 2`) cannot split it across workers:
up -> status -> verified TLS -> KV v2 -> up again -> kill bao -> kill the supervisor -> down -> reset
-> up fast.
The failure tests each run their own lab on their own net, so they can run anywhere, in any order.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import stat
import sys

import hvac
import pytest

from .conftest import wait_for

pytestmark = pytest.mark.lab

NET = "127.77"  # not the default 127.10: a developer's own lab can run at the same time
URL = f"https://{NET}.0.2:8200"
KV_MOUNT, KV_PATH, KV_DATA = "lab-test", "greeting", {"hello": "lab"}


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def client(lab) -> hvac.Client:
    root_token = lab.json("credentials.json")["openbao"]["root_token"]
    return hvac.Client(url=URL, verify=str(lab.root / "pki" / "ca.pem"), token=root_token, timeout=10)


def read_secret(lab) -> dict:
    answer = client(lab).secrets.kv.v2.read_secret_version(path=KV_PATH, mount_point=KV_MOUNT,
                                                           raise_on_deleted_version=True)
    return answer["data"]["data"]


def restarted_and_healthy(lab, old_pid):
    entry = lab.status()["components"]["openbao"]
    return entry if entry["healthy"] and entry["pid"] != old_pid else None


def up_starts_a_healthy_openbao_and_writes_the_inventory_files(lab, seen):
    result = lab.run("up")
    assert "openbao healthy at " + URL in result.stdout

    endpoints = lab.json("endpoints.json")
    assert endpoints["ca_cert"] == str(lab.root / "pki" / "ca.pem")
    assert os.path.isabs(endpoints["ca_cert"])
    assert endpoints["components"]["openbao"]["url"] == URL
    assert endpoints["components"]["openbao"]["healthy"] is True
    assert endpoints["components"]["openbao"]["storage"] == "raft"

    credentials = lab.json("credentials.json")["openbao"]
    assert credentials["root_token"] and len(credentials["unseal_keys"]) == 1
    for secret_file in ("credentials.json", "vault-password", "pki/ca-key.pem", "pki/openbao-key.pem"):
        assert mode(lab.root / secret_file) == 0o600, secret_file
    assert (lab.root / "logs" / "openbao.log").stat().st_size > 0
    assert (lab.root / "logs" / "supervisor.log").stat().st_size > 0
    seen["vault_password"] = (lab.root / "vault-password").read_text()
    seen["ca"] = (lab.root / "pki" / "ca.pem").read_bytes()


def status_reports_pid_health_restarts_and_url(lab, seen):
    status = lab.status()
    assert status["ok"] and status["supervisor"]["alive"]
    entry = status["components"]["openbao"]
    assert entry["alive"] and entry["healthy"] and entry["restarts"] == 0 and entry["url"] == URL
    assert (lab.root / "run" / "openbao.pid").read_text().strip() == str(entry["pid"])
    seen["pids"] = (status["supervisor"]["pid"], entry["pid"])
    table = lab.run("status").stdout
    assert "openbao" in table and URL in table
    # Status describes the lab as started, whatever net the caller's environment names.
    elsewhere = lab.run("status", "--json", extra_env={"TURNKEY_LAB_NET": "127.99"})
    assert URL in elsewhere.stdout and '"ok": true' in elsewhere.stdout


def tls_is_verified_with_the_lab_ca(lab, seen):
    ca = str(lab.root / "pki" / "ca.pem")
    with socket.create_connection((f"{NET}.0.2", 8200), timeout=5) as sock, \
            ssl.create_default_context(cafile=ca).wrap_socket(sock, server_hostname=f"{NET}.0.2") as tls:
        assert tls.version()
    # Without the lab CA the server is not trusted: verification is real.
    with socket.create_connection((f"{NET}.0.2", 8200), timeout=5) as sock, \
            pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(sock, server_hostname=f"{NET}.0.2")


def kv_v2_secret_round_trip(lab, seen):
    bao = client(lab)
    assert bao.is_authenticated()
    bao.sys.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "2"})
    bao.secrets.kv.v2.create_or_update_secret(path=KV_PATH, secret=KV_DATA, mount_point=KV_MOUNT)
    assert read_secret(lab) == KV_DATA


def up_again_is_harmless(lab, seen):
    result = lab.run("up")
    assert "already running and healthy" in result.stdout
    status = lab.status()
    assert (status["supervisor"]["pid"], status["components"]["openbao"]["pid"]) == seen["pids"]
    other_profile = lab.run("up", "--profile", "fast", ok=False)
    assert other_profile.returncode == 1 and "`lab down` first" in other_profile.stderr


def supervisor_restarts_a_killed_openbao_and_unseals_it(lab, seen):
    bao_pid = seen["pids"][1]
    os.kill(bao_pid, signal.SIGKILL)
    entry = wait_for(lambda: restarted_and_healthy(lab, bao_pid), timeout=20)
    assert entry["restarts"] == 1
    # Same raft data, unsealed again with the stored key: the secret is still there.
    assert read_secret(lab) == KV_DATA


def up_restarts_a_dead_supervisor(lab, seen):
    supervisor_pid = lab.status()["supervisor"]["pid"]
    os.kill(supervisor_pid, signal.SIGKILL)
    wait_for(lambda: not lab.status()["supervisor"]["alive"], timeout=5)
    assert lab.run("status", ok=False).returncode != 0
    result = lab.run("up")
    assert "supervisor started" in result.stdout
    status = lab.status()
    assert status["ok"] and status["supervisor"]["pid"] != supervisor_pid
    assert read_secret(lab) == KV_DATA


def no_secret_is_printed_or_logged(lab, seen):
    credentials = lab.json("credentials.json")["openbao"]
    secrets = [credentials["root_token"], *credentials["unseal_keys"], seen["vault_password"].strip()]
    logs = [path.read_text(errors="replace") for path in (lab.root / "logs").iterdir()]
    lab.run("env")
    for text in lab.outputs + logs:
        for secret in secrets:
            assert secret not in text


def down_leaves_no_process_behind(lab, seen):
    assert lab.processes()
    assert "lab stopped" in lab.run("down").stdout
    assert lab.processes() == []
    assert lab.run("status", ok=False).returncode != 0
    assert "not running" in lab.run("down").stdout  # harmless when nothing runs
    assert not (lab.root / "endpoints.json").exists()
    assert (lab.root / "credentials.json").exists()  # raft data needs its unseal key next time


def reset_keeps_vault_password_and_ca_and_up_fast_works(lab, seen):
    lab.run("reset")
    for gone in ("credentials.json", "endpoints.json", "components", "logs", "run"):
        assert not (lab.root / gone).exists(), gone
    lab.run("up", "--profile", "fast")
    endpoints = lab.json("endpoints.json")
    assert endpoints["components"]["openbao"]["storage"] == "inmem"
    assert client(lab).is_authenticated()
    lab.run("down")
    assert lab.processes() == []
    assert (lab.root / "vault-password").read_text() == seen["vault_password"]
    assert (lab.root / "pki" / "ca.pem").read_bytes() == seen["ca"]


STEPS = (
    up_starts_a_healthy_openbao_and_writes_the_inventory_files,
    status_reports_pid_health_restarts_and_url,
    tls_is_verified_with_the_lab_ca,
    kv_v2_secret_round_trip,
    up_again_is_harmless,
    supervisor_restarts_a_killed_openbao_and_unseals_it,
    up_restarts_a_dead_supervisor,
    no_secret_is_printed_or_logged,
    down_leaves_no_process_behind,
    reset_keeps_vault_password_and_ca_and_up_fast_works,
)


def test_openbao_lab_life_cycle(make_lab):
    lab = make_lab(NET)
    seen: dict = {}  # what a step records for later ones (vault password, CA, pids)
    for step in STEPS:
        step(lab, seen)


FAKE_BAO = {
    # Runs but never answers: `up` must give up at --timeout, naming the component and its log.
    "hangs": "echo 'fake bao: listening nowhere'\nexec {py} -c 'import time; time.sleep(300)' \"$@\"\n",
    # Exits at once: the supervisor restarts it with backoff, `up` gives up after a few crashes.
    "crashes": "echo 'fake bao: crashing'\nexit 3\n",
}


@pytest.mark.parametrize(("net", "behaviour", "expected"), [
    ("127.78", "hangs", "openbao not healthy after 2 s"),
    ("127.79", "crashes", "openbao crashed 3 times"),
])
def test_up_names_a_component_that_does_not_get_healthy(make_lab, tmp_path, net, behaviour, expected):
    fake = tmp_path / "bao"
    fake.write_text("#!/bin/sh\n" + FAKE_BAO[behaviour].format(py=sys.executable))
    fake.chmod(0o755)
    other = make_lab(net)
    result = other.run("up", "--timeout", "2" if behaviour == "hangs" else "30", ok=False,
                       extra_env={"TURNKEY_LAB_BAO": str(fake)})
    assert result.returncode == 1
    assert expected in result.stderr
    assert "fake bao: " in result.stderr  # the tail of the component's log
    other.run("down")
    assert other.processes() == []


def test_up_refuses_a_port_already_taken(make_lab):
    other = make_lab("127.80")
    with socket.socket() as squatter:
        squatter.bind(("127.80.0.2", 8200))
        squatter.listen()
        result = other.run("up", ok=False)
    assert result.returncode == 1
    assert "openbao: cannot listen on 127.80.0.2:8200" in result.stderr
    assert other.processes() == []
