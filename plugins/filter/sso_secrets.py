# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.turnkey.cluster.plugins.module_utils.cluster_spec import (
    merge_by_name,
    sso_kv_secrets,
    sso_store_secrets,
)

# Documented in sso_secrets.yml beside this file.

KINDS = ("store", "kv")


def sso_secrets(spec, kind="store", given=None):
    """The generate-once secrets (kind store) or their Vault kv entries (kind kv) the SSO spec implies, after
    the operator's own list (given), whose entries win by name."""
    if not isinstance(spec, (list, tuple)) or not 3 <= len(spec) <= 4:
        raise AnsibleFilterError("sso_secrets: the input is (sso_apps, sso_users, authentik) or "
                                 "(sso_apps, sso_users, authentik, dns), got %r" % (spec,))
    if kind not in KINDS:
        raise AnsibleFilterError("sso_secrets: kind %r is not one of %s" % (kind, ", ".join(KINDS)))
    apps, users, authentik = spec[0] or [], spec[1] or [], spec[2] or {}
    dns = spec[3] if len(spec) == 4 else None
    if kind == "store":
        return merge_by_name(given, sso_store_secrets(apps, users, authentik, dns))
    return merge_by_name(given, sso_kv_secrets(apps, authentik, dns))


class FilterModule:
    def filters(self):
        return {"sso_secrets": sso_secrets}
