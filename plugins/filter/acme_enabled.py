# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.turnkey.cluster.plugins.module_utils.cluster_spec import acme_enabled

# Documented in acme_enabled.yml beside this file.


class FilterModule:
    def filters(self):
        return {"acme_enabled": acme_enabled}
