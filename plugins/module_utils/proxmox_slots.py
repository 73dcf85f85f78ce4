# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A controller-side semaphore for the requests that take a Proxmox VE storage's lock.

Every disk allocation (create, clone, a new cloud-init drive, template, destroy) holds the storage's
lock (/var/lock/pve-manager/pve-storage-<id>) and Proxmox gives up waiting after 10 s ("can't lock file ...
got timeout"). StorageSlots lets at most `count` such requests of this controller be in flight against one
storage of one Proxmox endpoint, across every module process (Ansible's forks): `count` lock files
(`slot-0` ...) in a folder named after the endpoint, node and storage, each flock()ed while its holder's
request (and the task it started) runs. So a play needs no `throttle` around a whole module run: the reads,
the config and the polling of every fork run at once, and only the requests on the storage queue.

flock() locks die with their process: a killed module never leaves a slot taken.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import re
import stat
import tempfile
import time
from contextlib import contextmanager


class SlotError(Exception):
    """No slot came free in time, or the slots' folder is not safe to use; the message says which."""


def default_folder():
    """Per user, shared by every run of that user on this controller (the semaphore's scope)."""
    return os.path.join(tempfile.gettempdir(), "turnkey-proxmox-slots-%d" % os.geteuid())


def slot_key(endpoint, node, storage):
    """The folder name of one storage: readable, one path component."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", "%s-%s-%s" % (endpoint, node, storage))


def private_folder(path):
    """Creates path (0700) or checks an existing one is a folder of this user that no one else can write
    (the default lives in the shared temp folder); ValueError otherwise."""
    try:
        os.mkdir(path, 0o700)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise ValueError("%s must be a folder of uid %d that only it can write (found mode %o, uid %d)"
                         % (path, os.geteuid(), stat.S_IMODE(info.st_mode), info.st_uid))
    return path


class StorageSlots:
    """At most `count` holders at once of one storage's slots (0: no cap, nothing is created)."""

    def __init__(self, folder, key, count, timeout):
        self.folder = folder
        self.key = key
        self.count = count
        self.timeout = timeout
        self.waited = 0.0  # seconds spent waiting for a slot, summed over every hold()

    @property
    def path(self):
        return os.path.join(self.folder, self.key)

    def _try(self, fds):
        """The first slot this process could lock, or None; a random start spreads the holders."""
        start = random.randrange(self.count)
        for i in range(self.count):
            fd = fds[(start + i) % self.count]
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
        return None

    @contextmanager
    def hold(self):
        """Waits for a free slot (up to `timeout` seconds, then SlotError) and holds it for the block."""
        if self.count <= 0:
            yield
            return
        try:
            private_folder(self.folder)
            private_folder(self.path)
            fds = [os.open(os.path.join(self.path, "slot-%d" % i), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                   for i in range(self.count)]
        except (OSError, ValueError) as exc:
            raise SlotError("storage slots in %s: %s" % (self.path, exc)) from None
        try:
            started = time.monotonic()
            delay = 0.02
            while True:
                held = self._try(fds)
                if held is not None:
                    break
                if time.monotonic() - started > self.timeout:
                    raise SlotError(
                        "no storage slot came free within %g s: other requests of this controller held all %d "
                        "slots of %s (each flock()ed by a running module; `fuser %s/slot-*` names them)"
                        % (self.timeout, self.count, self.path, self.path))
                time.sleep(delay)
                delay = min(delay * 1.5, 0.25)
            self.waited += time.monotonic() - started
            try:
                yield
            finally:
                fcntl.flock(held, fcntl.LOCK_UN)
        finally:
            for fd in fds:
                os.close(fd)
