# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side name of the one private-file writer, which lives in module_utils so modules share it."""

from __future__ import annotations

from ansible_collections.turnkey.cluster.plugins.module_utils.private_files import write_private_file

__all__ = ["write_private_file"]
