# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.turnkey.cluster.plugins.module_utils.cluster_spec import sso_vault_app

# Documented in sso_vault_app.yml beside this file.


class FilterModule:
    def filters(self):
        return {"sso_vault_app": sso_vault_app}
