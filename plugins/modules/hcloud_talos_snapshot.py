#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hcloud_talos_snapshot
short_description: Ensure a Hetzner Cloud snapshot of a Talos Image Factory image exists
version_added: 0.1.0
description:
  - Ensures that a Hetzner Cloud snapshot of the Talos image C(hcloud-amd64.raw.xz) for one Image Factory
    schematic and Talos version exists. The snapshot is found by its labels, C(os=talos),
    C(talos-schematic=<schematic id, first 63 characters>), C(talos-version=<version>) and
    C(managed-by=turnkey.cluster); when one is C(available) nothing is changed.
  - When it is missing it is built the way the community does it (Talos documentation, hcloud-upload-image).
    a temporary server labelled C(turnkey-temporary=talos-snapshot-builder) is created, booted into the
    rescue system (C(enable_rescue) then C(reboot)), the image is written to its disk over SSH (or by
    I(write_command)), the server is powered off, C(create_image) makes the snapshot with the labels, the
    module waits until the image is C(available), and the temporary server is deleted.
  - The temporary server is deleted whatever happens, also when a step fails, and a snapshot whose build
    failed is deleted too. Temporary servers left by an interrupted run (the same build, or any builder
    older than I(timeout)) are deleted on the next run.
  - Rate limiting (429) is ridden through, see I(rate_limit_wait). A failure returns Hetzner's error as
    C(hcloud_error).
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.hcloud
options:
  schematic_id:
    description:
      - The Talos Image Factory schematic id (the sha256 of the schematic, 64 hexadecimal characters).
    type: str
    required: true
  talos_version:
    description:
      - The Talos version, for example C(v1.11.5).
    type: str
    required: true
  image_url:
    description:
      - URL of the raw image to write.
      - Default C(https://factory.talos.dev/image/<schematic_id>/<talos_version>/hcloud-amd64.raw.xz).
      - It must be an C(https) URL of a host name or address, an optional port and a path of letters, digits
        and C(. _ ~ % + -) between slashes (no query, no quotes, no shell metacharacters); anything else is
        refused before anything is created.
    type: str
  server_type:
    description:
      - Server type of the temporary server. The snapshot can be used for every type with a disk at least
        as large.
    type: str
    default: cx22
  location:
    description:
      - Location of the temporary server (snapshots are usable in every location).
    type: str
    default: fsn1
  builder_image:
    description:
      - Image the temporary server is created from; it only has to boot, the rescue system does the work.
    type: str
    default: debian-12
  write_command:
    description:
      - Replaces the built-in writer. Without it (or empty) the module writes the image itself - C(sshpass)
        and C(ssh) on the controller log into the rescue system as root with its password, with
        C(StrictHostKeyChecking=accept-new) and a known_hosts file of this build only (the rescue system's
        host key is new for every server, so it is accepted on the first connection and checked on the next
        ones, never ignored); the fixed script C(curl ... "$1" | xz -d | dd of=/dev/sda) goes on the standard
        input of C(bash -s) and the URL is its quoted argument, never part of a command string.
      - Command (argv list) run on the controller, while the temporary server is in its rescue system, to
        write the image to the server's disk. It gets the environment variables C(TALOS_IMAGE_URL),
        C(RESCUE_IPV4), C(RESCUE_IPV6), C(HCLOUD_SERVER_ID), C(SSHPASS) (the rescue system's root password,
        never logged) and C(TALOS_KNOWN_HOSTS) (an empty known_hosts file of this build, for
        C(ssh -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=$TALOS_KNOWN_HOSTS)). Pass the URL
        to a remote shell only as a quoted argument.
      - A non-zero exit fails the build (the temporary server is still deleted).
    type: list
    elements: str
  timeout:
    description:
      - Seconds the whole build may take (server creation, rescue, writing, snapshot, deletion).
    type: int
    default: 900
attributes:
  check_mode:
    support: full
    description: Looks up the snapshot and stale temporary servers and reports what would be built or
      removed (C(would_build)); creates and deletes nothing.
  diff_mode:
    support: none
    description: No diff is returned.
requirements:
  - C(sshpass) and C(ssh) on the controller, for the built-in writer (only when a snapshot is built).
notes:
  - The snapshot is found by labels, never by name or description.
  - Against the lab's Hetzner twin, which has no disks and no SSH, I(write_command) only sees the rescue
    system's address and password; nothing is written.
"""

EXAMPLES = r"""
- name: Ensure the Talos snapshot exists (written over SSH by the built-in writer)
  turnkey.cluster.hcloud_talos_snapshot:
    schematic_id: 376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba
    talos_version: v1.11.5
  register: talos_snapshot

- name: Use it
  hetzner.hcloud.server:
    name: worker1
    server_type: cx32
    image: "{{ talos_snapshot.image_id }}"
"""

RETURN = r"""
image_id:
  description: Id of the snapshot (null in check mode when it would be built).
  returned: success
  type: int
  sample: 300000001
labels:
  description: The labels the snapshot is found by.
  returned: always
  type: dict
  sample: {os: talos, talos-schematic: 376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4b,
           talos-version: v1.11.5, managed-by: turnkey.cluster}
built:
  description: Whether this run built the snapshot.
  returned: always
  type: bool
would_build:
  description: Whether the snapshot is missing (and is or would be built).
  returned: always
  type: bool
image:
  description: The snapshot (id, description, status, created, disk_size, labels).
  returned: when it exists
  type: dict
builder:
  description: Name of the temporary server used (deleted again).
  returned: when a build ran
  type: str
removed_servers:
  description: Names of stale temporary servers deleted (or that would be, in check mode).
  returned: always
  type: list
  elements: str
hcloud_error:
  description: Hetzner's error, C(code), C(message) and C(details).
  returned: failure
  type: dict
hcloud_rate_limit:
  description: How many 429 answers were ridden through (C(throttled)) and the seconds spent waiting.
  returned: always
  type: dict
"""

import os
import re
import shlex
import shutil
import tempfile
import time
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils.hcloud import (
    HAS_HCLOUD,
    HcloudFailure,
    hcloud_argument_spec,
    label_selector,
    run_module,
)

if HAS_HCLOUD:
    from hcloud.images import Image
    from hcloud.locations import Location
    from hcloud.server_types import ServerType

MANAGED_BY = "turnkey.cluster"
TEMPORARY_KEY = "turnkey-temporary"
TEMPORARY_VALUE = "talos-snapshot-builder"
FACTORY_URL = "https://factory.talos.dev/image/%s/%s/hcloud-amd64.raw.xz"
CLEANUP_SECONDS = 120  # extra time the deletion of the temporary server may take after the deadline
# An https URL with nothing a shell (local or remote) could read as syntax: no quotes, spaces, $, ;, &, |,
# backquotes, globs or query strings.
IMAGE_URL = re.compile(r"^https://[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[0-9]{1,5})?(/[A-Za-z0-9._~%+-]+)*/?$")
# The built-in writer's remote side: a fixed script on bash's standard input; the URL is only ever "$1".
REMOTE_WRITE_SCRIPT = """set -euo pipefail
curl --fail --silent --show-error --location --proto '=https' --retry 3 "$1" | xz --decompress --stdout \\
  | dd of=/dev/sda bs=4M conv=fsync status=none
sync
"""
SSH_READY_INTERVAL = 5


def rescue_ssh(sshpass, ssh, known_hosts, address):
    """The argv that logs into the rescue system as root: its host key accepted once (a new server has a new
    key), recorded in this build's own known_hosts, and checked on every later connection."""
    return [sshpass, "-e", ssh, "-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile=" + known_hosts,
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "PubkeyAuthentication=no",
            "-o", "LogLevel=ERROR", "-l", "root", address]


def remote_write_command(url):
    """The remote command string: bash reads the script from stdin and gets the URL as one quoted argument."""
    return "bash -s -- " + shlex.quote(url)


def snapshot_labels(schematic_id, talos_version):
    return {"os": "talos", "talos-schematic": schematic_id[:63], "talos-version": talos_version,
            "managed-by": MANAGED_BY}


def _age(resource):
    created = resource.created
    if created is None:
        return 0.0
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - created).total_seconds()


def image_view(image):
    return {"id": image.id, "description": image.description, "status": image.status,
            "created": image.created.isoformat() if image.created else None, "disk_size": image.disk_size,
            "labels": image.labels}


class Builder:
    def __init__(self, module, api):
        self.module = module
        self.api = api
        self.client = api.client
        params = module.params
        self.labels = snapshot_labels(params["schematic_id"], params["talos_version"])
        self.builder_labels = {TEMPORARY_KEY: TEMPORARY_VALUE, "managed-by": MANAGED_BY,
                               "talos-schematic": self.labels["talos-schematic"],
                               "talos-version": params["talos_version"]}
        self.timeout = params["timeout"]
        self.deadline = time.monotonic() + self.timeout
        self.url = params["image_url"] or FACTORY_URL % (params["schematic_id"], params["talos_version"])

    # -- lookups --------------------------------------------------------------------------------------
    def snapshots(self):
        images = self.api.call(self.client.images.get_all, type=["snapshot"],
                               label_selector=label_selector(self.labels))
        return sorted(images, key=lambda image: image.id)

    def stale_builders(self):
        """Temporary servers of this same build (a run that was killed), or of any build older than timeout."""
        servers = self.api.call(self.client.servers.get_all,
                                label_selector="%s=%s" % (TEMPORARY_KEY, TEMPORARY_VALUE))
        return [server for server in servers
                if all(server.labels.get(k) == v for k, v in self.builder_labels.items())
                or _age(server) > self.timeout]

    # -- steps ----------------------------------------------------------------------------------------
    def wait(self, action, what):
        return self.api.wait_action(action, self.deadline, what)

    def delete_server(self, server, deadline):
        """Deletes a server, retrying while it is locked by a running action, and waits for the deletion."""
        try:
            action = self.api.call_unlocked(deadline, self.client.servers.delete, server)
        except HcloudFailure as failure:
            if failure.code == "not_found":
                return
            raise
        self.api.wait_action(action, deadline, "deleting server %s" % server.name)

    def wait_available(self, image):
        interval = 0.2
        while image.status != "available":
            if time.monotonic() >= self.deadline:
                raise HcloudFailure("timeout", "snapshot %s is still %s" % (image.id, image.status),
                                    {"image": image.id})
            time.sleep(interval)
            interval = min(interval * 2, 5.0)
            image = self.api.call(self.client.images.get_by_id, image.id)
        return image

    def write_image(self, server, root_password):
        net = server.public_net
        ipv4 = net.ipv4.ip if net and net.ipv4 else ""
        ipv6 = net.ipv6.ip if net and net.ipv6 else ""
        folder = tempfile.mkdtemp(prefix="turnkey-talos-snapshot-")  # 0700, this build's known_hosts only
        known_hosts = os.path.join(folder, "known_hosts")
        try:
            if self.module.params["write_command"]:
                environ = {"TALOS_IMAGE_URL": self.url, "HCLOUD_SERVER_ID": str(server.id),
                           "SSHPASS": root_password, "RESCUE_IPV4": ipv4, "RESCUE_IPV6": ipv6,
                           "TALOS_KNOWN_HOSTS": known_hosts}
                rc, out, err = self.module.run_command(self.module.params["write_command"], environ_update=environ)
                what = "write_command"
            else:
                rc, out, err = self.write_over_ssh(ipv4 or ipv6.split("/")[0], root_password, known_hosts)
                what = "writing the image over SSH"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if rc != 0:
            raise HcloudFailure("write_failed", "%s exited with %d" % (what, rc),
                                {"rc": rc, "stdout": out[-2000:], "stderr": err[-2000:]})

    def write_over_ssh(self, address, root_password, known_hosts):
        """Waits for the rescue system's SSH, then runs the fixed script there with the URL as its argument."""
        sshpass, ssh = self.module.get_bin_path("sshpass"), self.module.get_bin_path("ssh")
        if not sshpass or not ssh:
            raise HcloudFailure("write_failed", "the built-in writer needs sshpass and ssh on the controller "
                                                "(or set write_command)", {})
        login = rescue_ssh(sshpass, ssh, known_hosts, address)
        environ = {"SSHPASS": root_password}
        while True:
            rc, out, err = self.module.run_command(login + ["true"], environ_update=environ)
            if rc == 0:
                break
            if time.monotonic() + SSH_READY_INTERVAL >= self.deadline:
                return rc, out, "the rescue system's SSH did not answer: " + err
            time.sleep(SSH_READY_INTERVAL)
        return self.module.run_command(login + [remote_write_command(self.url)], data=REMOTE_WRITE_SCRIPT,
                                       binary_data=True, environ_update=environ)

    def build(self):
        """Temporary server -> rescue -> write -> power off -> snapshot -> available. Returns the image.
        The server is deleted in every case, the snapshot too when the build failed."""
        params = self.module.params
        suffix = os.urandom(3).hex()
        name = "talos-builder-%s-%s-%s" % (params["schematic_id"][:8].lower(),
                                           params["talos_version"].replace(".", "-").lower(), suffix)
        self.name = name
        server = image = None
        done = False
        builder_image = params["builder_image"]
        try:
            created = self.api.call(
                self.client.servers.create, name=name, server_type=ServerType(name=params["server_type"]),
                image=Image(id=int(builder_image)) if builder_image.isdigit() else Image(name=builder_image),
                location=Location(name=params["location"]), labels=self.builder_labels, start_after_create=True)
            server = created.server
            self.wait(created.action, "creating the temporary server")
            for action in created.next_actions or []:
                self.wait(action, "starting the temporary server")
            rescue = self.api.call(self.client.servers.enable_rescue, server, type="linux64")
            self.module.no_log_values.add(rescue.root_password)
            self.wait(rescue.action, "enabling the rescue system")
            self.wait(self.api.call(self.client.servers.reboot, server), "rebooting into the rescue system")
            server = self.api.call(self.client.servers.get_by_id, server.id)
            self.write_image(server, rescue.root_password)
            self.wait(self.api.call(self.client.servers.power_off, server), "powering the server off")
            made = self.api.call(self.client.servers.create_image, server, type="snapshot", labels=self.labels,
                                 description="Talos %s, schematic %s (turnkey.cluster)" % (
                                     params["talos_version"], params["schematic_id"]))
            image = made.image
            self.wait(made.action, "creating the snapshot")
            image = self.wait_available(self.api.call(self.client.images.get_by_id, image.id))
            done = True
            return image
        finally:
            cleanup_deadline = max(self.deadline, time.monotonic()) + CLEANUP_SECONDS
            problems = []
            if server is not None:
                try:
                    self.delete_server(server, cleanup_deadline)
                except HcloudFailure as failure:
                    problems.append("temporary server %s: %s" % (name, failure))
            if image is not None and not done:
                try:
                    self.api.call(self.client.images.delete, image)
                except HcloudFailure as failure:
                    if failure.code != "not_found":
                        problems.append("failed snapshot %s: %s" % (image.id, failure))
            self.cleanup_problems = problems


def run(module, api, result):
    builder = Builder(module, api)
    stale = builder.stale_builders()
    result["removed_servers"] = [server.name for server in stale]
    snapshots = builder.snapshots()
    available = [image for image in snapshots if image.status == "available"]
    unfinished = [image for image in snapshots if image.status != "available"]
    result["would_build"] = not available and not [i for i in unfinished if _age(i) <= builder.timeout]
    if module.check_mode:
        if available:
            result.update(image_id=available[-1].id, image=image_view(available[-1]))
        result["changed"] = bool(stale) or result["would_build"]
        return

    for server in stale:
        builder.delete_server(server, builder.deadline)
        result["changed"] = True
    if available:
        image = available[-1]
    else:
        for image in unfinished:
            if _age(image) > builder.timeout:  # left by an interrupted run
                api.call(api.client.images.delete, image)
                result["changed"] = True
        younger = [image for image in unfinished if _age(image) <= builder.timeout]
        if younger:  # another run is making it right now
            image = builder.wait_available(younger[-1])
        else:
            try:
                image = builder.build()
            finally:
                result["builder"] = builder.name
                if builder.cleanup_problems:
                    result["cleanup_problems"] = builder.cleanup_problems
            result.update(built=True, changed=True)
    if getattr(builder, "cleanup_problems", None):
        module.fail_json(msg="The snapshot was built but cleaning up failed: %s"
                             % "; ".join(builder.cleanup_problems), **result)
    result.update(image_id=image.id, image=image_view(image))


def main():
    options = dict(
        schematic_id=dict(type="str", required=True),
        talos_version=dict(type="str", required=True),
        image_url=dict(type="str"),
        server_type=dict(type="str", default="cx22"),
        location=dict(type="str", default="fsn1"),
        builder_image=dict(type="str", default="debian-12"),
        write_command=dict(type="list", elements="str"),
        timeout=dict(type="int", default=900),
    )
    module = AnsibleModule(argument_spec=hcloud_argument_spec(**options), supports_check_mode=True)
    url = module.params["image_url"] or FACTORY_URL % (module.params["schematic_id"], module.params["talos_version"])
    if not IMAGE_URL.match(url):
        module.fail_json(msg="image_url %r: use an https URL of a host, an optional port and a path of letters, "
                             "digits and . _ ~ %% + - (no quotes, spaces, query or shell characters)" % url)
    labels = snapshot_labels(module.params["schematic_id"], module.params["talos_version"])
    run_module(module, run, {"changed": False, "labels": labels, "built": False, "would_build": False,
                             "removed_servers": [], "image_id": None},
               "Could not ensure the Talos snapshot %s" % label_selector(labels))


if __name__ == "__main__":
    main()
