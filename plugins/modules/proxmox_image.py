#!/usr/bin/python
# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proxmox_image
short_description: Download a Talos image from the Image Factory to a Proxmox VE storage, once
version_added: 0.1.0
description:
  - Makes a Proxmox VE storage hold the Talos disk image of one schematic and Talos version, as a volume
    of content type C(import) (what C(import-from) of a VM disk reads), with the storage's
    C(download-url) task.
  - The file name is keyed by the schematic, the version, the platform and the architecture
    (C(talos-<schematic[:12]>-<version>-<platform>-<arch>.<format>)), so a volume of that name is that
    image; when the storage already lists it nothing is downloaded.
  - Waits for the download task; a failed task fails the module with Proxmox's error and the task log.
  - The C(download-url) POST is not idempotent (a second one for a file being downloaded starts a second
    download, for a file already there it fails). After an ambiguous answer (a timeout, a reset, a gateway's
    5xx - the download may have started) it is not sent again blindly - the node's running download tasks
    (C(GET /nodes/{node}/tasks?source=active)) are read, one for this file is waited for, and the storage is
    read again; only when no download of the file ran and the volume is not there is the POST repeated.
author: turnkey.cluster maintainers (!UNKNOWN)
extends_documentation_fragment:
  - turnkey.cluster.proxmox
options:
  schematic_id:
    description: The Image Factory schematic ID (module M(turnkey.cluster.talos_schematic) returns it).
    type: str
    required: true
  talos_version:
    description: The Talos version, C(v1.13.9).
    type: str
    required: true
  platform:
    description: Image platform.
    type: str
    choices: [nocloud, metal]
    default: nocloud
  arch:
    description: Image architecture.
    type: str
    choices: [amd64, arm64]
    default: amd64
  image_format:
    description: Image file type; Proxmox VE imports C(qcow2) and C(raw) disk images.
    type: str
    choices: [qcow2, raw]
    default: qcow2
  factory_url:
    description: The Image Factory the node downloads from, C(https://host[:port]).
    type: str
    default: https://factory.talos.dev
  url:
    description: Download this URL instead of the one derived from O(factory_url) and the options above.
    type: str
  filename:
    description: File name on the storage instead of the derived one (keep it keyed by the image).
    type: str
  storage:
    description: The storage that gets the image; it must allow the content type C(import).
    type: str
    default: local
  checksum:
    description: Expected checksum of the file; Proxmox refuses the download when it differs.
    type: str
  checksum_algorithm:
    description: Algorithm of O(checksum).
    type: str
    choices: [md5, sha1, sha224, sha256, sha384, sha512]
    default: sha256
  verify_certificates:
    description: Whether the Proxmox node verifies the factory's TLS certificate while downloading.
    type: bool
    default: true
  timeout:
    description: Seconds the download task may run.
    type: int
    default: 900
attributes:
  check_mode:
    support: full
    description: Reads the storage's content and reports whether the image would be downloaded.
  diff_mode:
    support: full
    description: Shows the volume before and after.
"""

EXAMPLES = r"""
- name: Talos image on the node's import storage
  turnkey.cluster.proxmox_image:
    api_url: "{{ proxmox.api_url }}"
    api_token_id: "{{ proxmox.token_id }}"
    api_token_secret: "{{ proxmox.token_secret }}"
    ca_path: "{{ proxmox.ca_path | default(omit) }}"
    node: "{{ proxmox.node }}"
    storage: "{{ proxmox.image_storage }}"
    schematic_id: "{{ schematic.id }}"
    talos_version: "{{ cluster_versions.talos }}"
  register: image
# image.volid is then used as import-from of turnkey.cluster.proxmox_vm.
"""

RETURN = r"""
volid:
  description: The volume, C(<storage>:import/<filename>).
  returned: success
  type: str
  sample: local:import/talos-376567988ad3-v1.13.9-nocloud-amd64.qcow2
filename:
  description: The file name on the storage.
  returned: success
  type: str
url:
  description: The URL downloaded (or that would be).
  returned: success
  type: str
size:
  description: Size in bytes of the volume, when it exists.
  returned: when the volume exists
  type: int
upid:
  description: The download task (after an ambiguous answer, the one found running for the file, if any was).
  returned: when downloaded
  type: str
retried:
  description: Transient failures absorbed by retrying a read or a call Proxmox refused before acting (a lock timeout).
  returned: success
  type: int
reread:
  description: Ambiguous answers to the download POST settled by reading the node's tasks and the storage.
  returned: success
  type: int
task_log:
  description: The task's log lines, on failure.
  returned: failure of the download task
  type: list
  elements: str
proxmox_error:
  description: Proxmox's error text.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.turnkey.cluster.plugins.module_utils.proxmox import (
    PROXMOX_REQUIRED_ONE_OF,
    PROXMOX_REQUIRED_TOGETHER,
    ProxmoxClient,
    ProxmoxError,
    proxmox_argument_spec,
)


def volume_size(client, storage, volid):
    """The size of the volume as the storage lists it (0 when it does not say), or None when it is not there."""
    content = client.get(client.node_path("storage", storage, "content"), content="import")
    sizes = [entry.get("size") or 0 for entry in content or [] if entry.get("volid") == volid]
    return sizes[0] if sizes else None


def download_landed(client, storage, filename, volid, timeout, found):
    """For run_task, after an ambiguous answer to download-url: did the download take effect? A download
    task of this file still running is waited for (its failure fails the module, as if it had been
    answered); then the volume decides. Proxmox names a download task by its file (the UPID's id)."""

    def landed():
        for task in client.get(client.node_path("tasks"), source="active", typefilter="download") or []:
            if task.get("id") == filename and task.get("upid"):
                client.wait_task(task["upid"], timeout, "download of %s" % volid)
                found["upid"] = task["upid"]
        return volume_size(client, storage, volid) is not None

    return landed


def main():
    argument_spec = proxmox_argument_spec()
    argument_spec.update(
        schematic_id=dict(type="str", required=True),
        talos_version=dict(type="str", required=True),
        platform=dict(type="str", choices=["nocloud", "metal"], default="nocloud"),
        arch=dict(type="str", choices=["amd64", "arm64"], default="amd64"),
        image_format=dict(type="str", choices=["qcow2", "raw"], default="qcow2"),
        factory_url=dict(type="str", default="https://factory.talos.dev"),
        url=dict(type="str"),
        filename=dict(type="str"),
        storage=dict(type="str", default="local"),
        checksum=dict(type="str"),
        checksum_algorithm=dict(type="str", choices=["md5", "sha1", "sha224", "sha256", "sha384", "sha512"],
                                default="sha256"),
        verify_certificates=dict(type="bool", default=True),
        timeout=dict(type="int", default=900),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_together=PROXMOX_REQUIRED_TOGETHER, required_one_of=PROXMOX_REQUIRED_ONE_OF)
    params = module.params
    schematic, version = params["schematic_id"], params["talos_version"]
    image = "%s-%s.%s" % (params["platform"], params["arch"], params["image_format"])
    url = params["url"] or "%s/image/%s/%s/%s" % (params["factory_url"].rstrip("/"), schematic, version, image)
    filename = params["filename"] or "talos-%s-%s-%s" % (schematic[:12], version, image)
    storage = params["storage"]
    volid = "%s:import/%s" % (storage, filename)

    client = ProxmoxClient(module)
    result = dict(changed=False, volid=volid, filename=filename, url=url)

    def done():
        result.update(retried=client.retried, reread=client.reread)
        module.exit_json(**result)

    try:
        size = volume_size(client, storage, volid)
        if size is not None:
            result["size"] = size
            done()
        result["changed"] = True
        if module._diff:
            result["diff"] = dict(before={}, after={"volid": volid, "url": url})
        if module.check_mode:
            done()
        request = dict(url=url, content="import", filename=filename)
        request["verify-certificates"] = 1 if params["verify_certificates"] else 0
        if params["checksum"]:
            request["checksum"] = params["checksum"]
            request["checksum-algorithm"] = params["checksum_algorithm"]
        found = {}
        upid, _status = client.run_task("post", client.node_path("storage", storage, "download-url"),
                                        "download of %s to %s" % (url, volid), timeout=params["timeout"],
                                        landed=download_landed(client, storage, filename, volid, params["timeout"],
                                                               found), **request)
        if upid or found.get("upid"):
            result["upid"] = upid or found["upid"]
        size = volume_size(client, storage, volid)
        if size is not None:
            result["size"] = size
    except ProxmoxError as exc:
        client.fail(exc, volid=volid, url=url)
    done()


if __name__ == "__main__":
    main()
