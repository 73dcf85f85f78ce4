# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one writer of files that hold secrets or must never be seen half-written.

Here in module_utils so modules (which cannot import plugin_utils) and controller plugins share it.
"""

from __future__ import annotations

import os
import tempfile


def write_private_file(path, data):
    """Writes bytes or text to path atomically with mode 0600; its folder is made 0700 when missing.

    Temporary file in the same folder, fsync of the file, rename, fsync of the folder: after a crash or a
    power cut the path holds either the old content or the new one, never a torn or empty file, and no
    temporary file is left behind.
    """
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data.encode("utf-8") if isinstance(data, str) else data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    # The rename is durable only once the folder's entry is on disk.
    folder_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)
    return path
