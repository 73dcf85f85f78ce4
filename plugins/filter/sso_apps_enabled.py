# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.turnkey.cluster.plugins.module_utils.cluster_spec import sso_enabled_apps

# Documented in sso_apps_enabled.yml beside this file.
KINDS = (None, "oidc", "proxy")


def sso_apps_enabled(apps, kind=None):
    """The enabled apps of sso_apps, the spec's defaults filled in; only those of type `kind` when given."""
    if kind not in KINDS:
        raise AnsibleFilterError("sso_apps_enabled: kind %r is not oidc or proxy" % (kind,))
    return sso_enabled_apps(apps, kind)


class FilterModule:
    def filters(self):
        return {"sso_apps_enabled": sso_apps_enabled}
