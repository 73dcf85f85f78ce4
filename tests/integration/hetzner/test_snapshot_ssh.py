"""The snapshot builder's own SSH into the Hetzner rescue system (turnkey.cluster.hcloud_talos_snapshot
without write_command), through real ansible-playbook runs against the lab's Hetzner twin and Image Factory
twin on net 127.73.

The twin's servers have documentation addresses and no SSH, so the rescue system's side stands in here:
`sshpass` checks it got the password in its environment; `ssh` records its options, does what
StrictHostKeyChecking=accept-new does with a new host (adds its key to the known_hosts file it was given)
and hands the remote command string to a real `sh -c`, as sshd does; on that "remote" side `bash` records
the arguments and the script it received. Nothing reaches a disk.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys

import pytest

from tests.integration.hetzner.nodes_lab import NodesLab
from tests.playbook_runner import BIN

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]

NET = "127.73"
SCHEMATIC = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
VERSION = "v1.13.9"
FACTORY = f"https://{NET}.0.6:8443"
URL = f"{FACTORY}/image/{SCHEMATIC}/{VERSION}/hcloud-amd64.raw.xz"
BUILDERS = "turnkey-temporary=talos-snapshot-builder"

SSHPASS = """#!/bin/sh
[ "$1" = -e ] && [ -n "$SSHPASS" ] || { echo "sshpass: no -e or no SSHPASS" >&2; exit 3; }
shift
exec "$@"
"""

# ssh as the rescue system's sshd would answer it: new host key recorded (accept-new), command to sh -c.
SSH = """#!%(python)s
import json, os, subprocess, sys
argv = sys.argv[1:]
options = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-o")
known_hosts = options.get("UserKnownHostsFile", "")
host = argv[argv.index("-l") + 2]
command = " ".join(argv[argv.index("-l") + 3:])
record = {"argv": argv, "command": command,
          "known_hosts_folder_mode": oct(os.stat(os.path.dirname(known_hosts)).st_mode & 0o777)
          if os.path.isdir(os.path.dirname(known_hosts)) else None}
if options.get("StrictHostKeyChecking") == "accept-new" and os.path.isdir(os.path.dirname(known_hosts)):
    seen = open(known_hosts).read() if os.path.exists(known_hosts) else ""
    record["host_key_was_known"] = host in seen
    if host not in seen:
        with open(known_hosts, "a") as out:
            out.write(host + " ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRescueSystemHostKeyStandIn\\n")
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
remote = dict(os.environ, PATH=os.environ["STAND_IN_REMOTE"] + ":" + os.environ["PATH"])
sys.exit(subprocess.run(["sh", "-c", command], env=remote).returncode)
"""

# The rescue system's bash: what it was asked to run (its argv and the script on its standard input).
BASH = """#!%(python)s
import json, os, sys
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write(json.dumps({"bash": sys.argv[1:], "script": sys.stdin.read()}) + "\\n")
"""


def stand_ins(folder):
    local, remote = folder / "bin", folder / "remote"
    local.mkdir()
    remote.mkdir()
    for path, text in ((local / "sshpass", SSHPASS), (local / "ssh", SSH), (remote / "bash", BASH)):
        path.write_text(text % {"python": sys.executable} if "%(python)s" in text else text)
        path.chmod(stat.S_IRWXU)
    return {"PATH": "%s:%s:%s" % (local, BIN, os.environ["PATH"]), "STAND_IN_REMOTE": str(remote),
            "STAND_IN_LOG": str(folder / "log.jsonl")}


@pytest.fixture
def lab(make_lab, tmp_path):
    handle = make_lab(NET)
    handle.run("up", "--profile", "fast", "--components", "hetzner,image_factory")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", str(handle.root / "pki" / "ca.pem"))
        yield NodesLab(handle, tmp_path, net=NET)


def snapshot_task(name, **extra):
    return {"name": name, "turnkey.cluster.hcloud_talos_snapshot": {
        "schematic_id": SCHEMATIC, "talos_version": VERSION, "timeout": 120, **extra}}


def test_urls_a_shell_could_read_are_refused_before_anything_is_created(lab, tmp_path):
    marker = tmp_path / "interpreted"
    hostile = {
        "quote": f"{FACTORY}/image/a';touch${{IFS}}{marker};'.raw.xz",
        "substitution": f"{FACTORY}/image/$(touch${{IFS}}{marker}).raw.xz",
        "space": f"{FACTORY}/image/a b.raw.xz",
        "plain http": URL.replace("https://", "http://"),
        "query": URL + "?x=1&touch",
    }
    tasks = [{**snapshot_task(name, image_url=url), "ignore_errors": True} for name, url in hostile.items()]
    results = lab.play(tasks, expect_failure=True)
    for name, url in hostile.items():
        assert results[name]["failed"] and "image_url %r" % url in results[name]["msg"], results[name]
    assert not marker.exists()
    assert lab.client.servers.get_all(label_selector=BUILDERS) == []
    assert lab.writes() == []  # refused before the API was asked for anything


def test_built_in_writer_accepts_the_new_host_key_once_and_passes_the_url_as_an_argument(lab, tmp_path):
    lab.env.update(stand_ins(tmp_path))
    results = lab.play([snapshot_task("Talos snapshot", image_url=URL)])
    assert results["Talos snapshot"]["built"] and results["Talos snapshot"]["image_id"]
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    calls = [record for record in records if "argv" in record]
    assert [call["command"] for call in calls] == ["true", "bash -s -- " + URL]

    known_hosts = set()
    for call in calls:
        argv = call["argv"]
        options = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-o"]
        assert "StrictHostKeyChecking=accept-new" in options and "StrictHostKeyChecking=no" not in options
        known = [option.split("=", 1)[1] for option in options if option.startswith("UserKnownHostsFile=")]
        assert len(known) == 1 and known[0] != "/dev/null"
        known_hosts.add(known[0])
        assert call["known_hosts_folder_mode"] == "0o700"  # this build's own, private folder
        assert argv[argv.index("-l") + 1] == "root" and argv[argv.index("-l") + 2].startswith("203.0.113.")
    assert len(known_hosts) == 1  # one file for the build: the key accepted first is checked after
    assert [call["host_key_was_known"] for call in calls] == [False, True]
    assert not os.path.exists(os.path.dirname(known_hosts.pop()))  # removed with the build

    remote = [record for record in records if "bash" in record]
    assert len(remote) == 1
    assert remote[0]["bash"] == ["-s", "--", URL]  # the remote shell saw the URL as one argument
    assert URL not in remote[0]["script"] and '"$1"' in remote[0]["script"]
    assert shlex.split(calls[-1]["command"]) == ["bash", "-s", "--", URL]
    assert lab.client.servers.get_all(label_selector=BUILDERS) == []
