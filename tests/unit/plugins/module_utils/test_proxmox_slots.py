"""The storage slots of module proxmox_vm (module_utils proxmox_slots): a semaphore across processes made of
N flock()ed files. Real processes (fork), real files, real locks."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import stat
import time

import pytest

from ansible_collections.turnkey.cluster.plugins.module_utils.proxmox_slots import (
    SlotError,
    StorageSlots,
    default_folder,
    slot_key,
)

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

FORK = multiprocessing.get_context("fork")
KEY = slot_key("127.120.0.3:8006", "pve", "local-zfs")


def take(slots):
    with slots.hold():
        pass


def hold_and_count(folder, key, count, inside, most, guard, seconds, together):
    """One module run: takes a slot, notes how many holders there are now, keeps the slot a while (or, with
    `together`, until every process is inside: a cap would break that barrier)."""
    with StorageSlots(folder, key, count, timeout=60).hold():
        with guard:
            inside.value += 1
            most.value = max(most.value, inside.value)
        if together is not None:
            together.wait(30)
        time.sleep(seconds)
        with guard:
            inside.value -= 1


def run_holders(folder, keys, count, seconds=0.5, together=False):
    guard = FORK.Lock()
    inside, most = FORK.Value("i", 0, lock=False), FORK.Value("i", 0, lock=False)
    barrier = FORK.Barrier(len(keys)) if together else None
    workers = [FORK.Process(target=hold_and_count,
                            args=(str(folder), key, count, inside, most, guard, seconds, barrier))
               for key in keys]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * len(workers)
    return most.value


@pytest.mark.parametrize("count", [1, 3])
def test_at_most_count_holders_at_once_across_processes(tmp_path, count):
    # eight module processes on one storage: never more than `count` inside, and `count` do run together
    assert run_holders(tmp_path, [KEY] * 8, count) == count


def test_without_the_slots_the_same_processes_overlap(tmp_path):
    # the counter above is able to see more than the cap: with the cap off all eight are inside at once
    assert run_holders(tmp_path, [KEY] * 8, 0, seconds=0, together=True) == 8
    assert list(tmp_path.iterdir()) == []  # no cap: no folder, no files


def test_each_storage_and_endpoint_has_its_own_slots(tmp_path):
    keys = [slot_key("127.120.0.3:8006", "pve", "local-zfs"), slot_key("127.120.0.3:8006", "pve", "local-lvm"),
            slot_key("127.121.0.3:8006", "pve", "local-zfs")]
    assert len(set(keys)) == 3
    assert run_holders(tmp_path, keys, 1, seconds=0, together=True) == 3


def child_holds(folder, ready):
    slots = StorageSlots(folder, KEY, 1, timeout=60)
    with slots.hold():
        ready.set()
        time.sleep(600)


def test_a_killed_holder_frees_its_slot(tmp_path):
    ready = FORK.Event()
    child = FORK.Process(target=child_holds, args=(str(tmp_path), ready))
    child.start()
    assert ready.wait(30)
    slots = StorageSlots(str(tmp_path), KEY, 1, timeout=0.3)
    with pytest.raises(SlotError, match="no storage slot came free within 0.3 s"):
        take(slots)
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    slots.timeout = 30
    with slots.hold():
        pass  # the dead module's flock() went with it


def test_waiting_for_a_slot_times_out_naming_the_folder(tmp_path):
    slots = StorageSlots(str(tmp_path), KEY, 2, timeout=0.2)
    path = tmp_path / KEY
    path.mkdir(mode=0o700)
    held = []
    for i in range(2):  # another process holding both slots (an open file description of its own)
        fd = os.open(path / ("slot-%d" % i), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.append(fd)
    try:
        with pytest.raises(SlotError) as error:
            take(slots)
        assert str(path) in str(error.value) and "all 2 slots" in str(error.value)
        fcntl.flock(held[1], fcntl.LOCK_UN)
        slots.timeout = 30
        with slots.hold():
            pass  # the free one is taken
        assert slots.waited >= 0
    finally:
        for fd in held:
            os.close(fd)


def test_folders_and_files_are_private(tmp_path):
    folder = tmp_path / "slots"
    with StorageSlots(str(folder), KEY, 2, timeout=5).hold():
        pass
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / KEY).stat().st_mode) == 0o700
    assert sorted(p.name for p in (folder / KEY).iterdir()) == ["slot-0", "slot-1"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in (folder / KEY).iterdir()} == {0o600}


def test_a_folder_others_can_write_is_refused(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(SlotError, match="only it can write"):
        take(StorageSlots(str(folder), KEY, 1, timeout=5))
    assert not (folder / KEY).exists()


def test_a_symlink_in_place_of_the_folder_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "slots").symlink_to(target)
    with pytest.raises(SlotError, match="must be a folder"):
        take(StorageSlots(str(tmp_path / "slots"), KEY, 1, timeout=5))


def test_the_default_folder_is_per_user_and_keys_are_one_path_component():
    assert default_folder().endswith("turnkey-proxmox-slots-%d" % os.geteuid())
    assert slot_key("[::1]:8006", "pve", "local/zfs") == "___1__8006-pve-local_zfs"
