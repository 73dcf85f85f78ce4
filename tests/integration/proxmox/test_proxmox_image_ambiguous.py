"""proxmox_image's download-url POST is not retried blindly (issue 10, item 7): after an ambiguous answer
the module reads the node's running download tasks and the storage before it sends the POST again.

One lab on net 127.98 (`lab up --profile fast --components proxmox,image_factory`). The Proxmox twin's
fault injection makes the answers ambiguous: `http_5xx_after` carries the POST out and loses its answer
(a gateway's 504 after the node started the download), `http_5xx` fails it before anything happens. A
`slow` fault keeps the download running while the module looks, as a real 1.2 GB image does. Each case
has its own image file (another Talos version in the name), so the steps do not depend on one another.
"""

from __future__ import annotations

import pytest
import requests

from tests.integration.proxmox.test_proxmox_modules import EMPTY_ID, Lab, image_task
from tests.lab.conftest import LabHandle

pytestmark = [pytest.mark.lab, pytest.mark.toolfree]

NET = "127.98"
PVE = f"https://{NET}.0.3:8006"
FACTORY = f"https://{NET}.0.6:8443"


class ImageLab(Lab):
    """The modules' test harness, pointed at this test's own net, running the modules with layer 01's
    least-privilege token (docs/proxmox-privileges.md), as role proxmox_nodes does."""

    def __init__(self, handle: LabHandle, tmp):
        super().__init__(handle, tmp)
        creds = handle.json("credentials.json")["proxmox"]
        self.admin = (creds["token_id"], creds["token_secret"])
        self.layer00 = (creds["persistent_auth"]["token_id"], creds["persistent_auth"]["token_secret"])
        infrastructure = creds["infrastructure"]
        self.env.update(PROXMOX_URL=PVE, PROXMOX_TOKEN_ID=infrastructure["token_id"],
                        PROXMOX_TOKEN_SECRET=infrastructure["token_secret"])
        self.secret = infrastructure["token_secret"]
        self.secrets = (*self.secrets, self.secret)

    def fault(self, **fault):
        requests.post(f"{PVE}/_lab/faults", json=fault, verify=self.ca, timeout=10).raise_for_status()

    def clear_faults(self):
        requests.delete(f"{PVE}/_lab/faults", verify=self.ca, timeout=10).raise_for_status()

    def api(self, path, token=None, **params):
        token_id, secret = token or (self.env["PROXMOX_TOKEN_ID"], self.secret)
        headers = {"Authorization": "PVEAPIToken=%s=%s" % (token_id, secret)}
        answer = requests.get(f"{PVE}/api2/json/{path}", headers=headers, params=params, verify=self.ca, timeout=10)
        answer.raise_for_status()
        return answer.json()["data"]

    def downloads(self, filename):
        """Every download task of the file the node knows (running or finished), oldest first."""
        tasks = self.api("nodes/pve/tasks", source="all", typefilter="download", limit=500)
        return sorted((t for t in tasks if t["id"] == filename), key=lambda t: t["upid"])

    def download_posts(self, start):
        return [r["status"] for r in self.lab_get(PVE, "requests")[start:]
                if r["method"] == "POST" and r["path"].endswith("/download-url")]

    def volumes(self):
        return {v["volid"]: v for v in self.api("nodes/pve/storage/local/content", content="import")}


def task_for(version):
    """The image task of one case, with its file name (the Talos version makes it a file of its own)."""
    task = image_task(schematic_id=EMPTY_ID, talos_version=version)
    task["turnkey.cluster.proxmox_image"]["factory_url"] = FACTORY
    return task, f"talos-{EMPTY_ID[:12]}-{version}-nocloud-amd64.qcow2"


def run_with_faults(lab: ImageLab, task, *faults):
    for fault in faults:
        lab.fault(**fault)
    try:
        return lab.one(task)
    finally:
        lab.clear_faults()


SLOW = {"kind": "slow", "factor": 40}  # the fast profile's 0.05 s download takes 2 s: still running when read


def an_answer_lost_after_the_download_started_is_settled_by_waiting_for_that_download(lab: ImageLab):
    task, filename = task_for("v1.11.6")
    start = len(lab.lab_get(PVE, "requests"))
    code, result = run_with_faults(lab, task, {"kind": "http_5xx_after", "status": 504, "match": "download-url"},
                                   SLOW)
    assert code == 0 and result["changed"], result.get("msg")
    # one POST (its answer lost), never a second: a blind retry would start a second download of the file,
    # or fail with "refusing to override existing file" once the first had finished
    assert lab.download_posts(start) == [504]
    assert result["reread"] == 1 and result["retried"] == 0
    [download] = lab.downloads(filename)
    assert download["status"] == "OK" and result["upid"] == download["upid"]
    assert result["volid"] in lab.volumes() and result["size"] == lab.volumes()[result["volid"]]["size"] > 0
    code, rerun = lab.one(task)
    assert code == 0 and not rerun["changed"] and lab.download_posts(start) == [504]


def an_answer_lost_before_the_node_acted_is_sent_again(lab: ImageLab):
    task, filename = task_for("v1.12.5")
    start = len(lab.lab_get(PVE, "requests"))
    code, result = run_with_faults(lab, task, {"kind": "http_5xx", "status": 504, "match": "download-url"})
    assert code == 0 and result["changed"], result.get("msg")
    # nothing ran and no file: only then is the POST repeated
    assert lab.download_posts(start) == [504, 200]
    assert result["reread"] == 1 and result["retried"] == 0
    [download] = lab.downloads(filename)
    assert download["status"] == "OK" and result["upid"] == download["upid"]
    assert result["volid"] in lab.volumes()


def a_download_that_fails_after_a_lost_answer_fails_the_module_with_its_error(lab: ImageLab):
    task, filename = task_for("v1.13.0")
    start = len(lab.lab_get(PVE, "requests"))
    code, result = run_with_faults(lab, task, {"kind": "http_5xx_after", "status": 504, "match": "download-url"},
                                   {"kind": "task_fail", "match": "download", "message": "download failed: 404"},
                                   SLOW)
    assert code != 0 and result["proxmox_error"] == "download failed: 404", result
    assert result["task_log"][-1] == "TASK ERROR: download failed: 404"
    assert lab.download_posts(start) == [504]  # the failure is reported, not hidden by a second download
    [download] = lab.downloads(filename)
    assert result["upid"] == download["upid"] and download["status"] == "download failed: 404"
    assert result["volid"] not in lab.volumes()


def the_task_list_shows_a_token_its_own_tasks_and_an_auditor_all(lab: ImageLab):
    """Who sees the downloads in GET /nodes/{node}/tasks, as on Proxmox: the token that started them, and
    whoever has Sys.Audit on the node (the admin); not layer 00's token, which has neither."""
    mine = {t["upid"] for t in lab.api("nodes/pve/tasks", typefilter="download", limit=500)}
    assert len(mine) == 3  # the three downloads of the steps before, finished ("archive", the default)
    assert lab.api("nodes/pve/tasks", source="active", typefilter="download") == []
    assert mine <= {t["upid"] for t in lab.api("nodes/pve/tasks", lab.admin, typefilter="download", limit=500)}
    assert lab.api("nodes/pve/tasks", lab.layer00, source="all", limit=500) == []


def the_twins_refused_nothing(lab: ImageLab):
    assert lab.lab_get(PVE, "rejects") == []


STEPS = (an_answer_lost_after_the_download_started_is_settled_by_waiting_for_that_download,
         an_answer_lost_before_the_node_acted_is_sent_again,
         a_download_that_fails_after_a_lost_answer_fails_the_module_with_its_error,
         the_task_list_shows_a_token_its_own_tasks_and_an_auditor_all, the_twins_refused_nothing)


@pytest.fixture(scope="module")
def image_lab(tmp_path_factory):
    handle = LabHandle(tmp_path_factory.mktemp("pve-image") / "state", NET)
    try:
        handle.run("up", "--profile", "fast", "--components", "proxmox,image_factory")
        yield ImageLab(handle, tmp_path_factory.mktemp("pve-image-plays"))
    finally:
        handle.run("down", ok=False)
        handle.kill_everything()


@pytest.mark.parametrize("step", STEPS, ids=[step.__name__ for step in STEPS])
def test_proxmox_image_ambiguous_answers(image_lab, step):
    step(image_lab)
