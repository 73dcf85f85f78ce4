# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared code of the access-control modules (proxmox_role, proxmox_user, proxmox_token): their common
main(), reading and deleting one object, and the ACL entries of one user or API token, kept exact."""

from __future__ import annotations

from ansible_collections.turnkey.cluster.plugins.module_utils.proxmox import (
    PROXMOX_REQUIRED_ONE_OF,
    PROXMOX_REQUIRED_TOGETHER,
    ProxmoxClient,
    ProxmoxError,
    proxmox_argument_spec,
)


def access_module_args(**options):
    """AnsibleModule() arguments: the options plus the connection options (doc fragment
    turnkey.cluster.proxmox), with check mode and the connection's option rules."""
    argument_spec = proxmox_argument_spec()
    argument_spec.update(options)
    return dict(argument_spec=argument_spec, supports_check_mode=True,
                required_together=PROXMOX_REQUIRED_TOGETHER, required_one_of=PROXMOX_REQUIRED_ONE_OF)


def run_access_module(module, run, **fail_fields):
    """Checks a C(userid) option, runs run(module, client) and exits with its result and the retry count;
    a ProxmoxError fails with Proxmox's own error text and fail_fields."""
    userid = module.params.get("userid")
    if userid is not None and "@" not in userid:
        module.fail_json(msg="userid must be name@realm, got %r" % userid)
    client = ProxmoxClient(module)
    try:
        result = run(module, client)
    except ProxmoxError as exc:
        client.fail(exc, **fail_fields)
    result["retried"] = client.retried
    module.exit_json(**result)


def get_or_none(client, path, *missing):
    """client.get(path), or None when Proxmox says the object is missing: it answers 500 with one of the
    texts in `missing` (for example C(no such user))."""
    try:
        return client.get(path)
    except ProxmoxError as exc:
        if any(text in (exc.proxmox_error or "") for text in missing):
            return None
        raise


def delete_object(module, client, result, path, before):
    """The state=absent end of a module whose object exists: reports the deletion (with a diff from
    `before`) and deletes it unless in check mode."""
    result.update(changed=True, changes=["delete"])
    if module._diff:
        result["diff"] = dict(before=before, after={})
    if not module.check_mode:
        client.delete(path)
    return result


def acl_option():
    """The C(acls) option: list of {path, role, propagate}."""
    return dict(type="list", elements="dict", options=dict(
        path=dict(type="str", required=True),
        role=dict(type="str", required=True),
        propagate=dict(type="bool", default=True),
    ))


def current_acls(client, kind, ugid):
    """{(path, role): propagate} of the entries naming this user (kind 'user') or token (kind 'token')."""
    entries = client.get("access/acl") or []
    return {(entry["path"], entry["roleid"]): int(entry.get("propagate", 1)) for entry in entries
            if entry.get("type") == kind and entry.get("ugid") == ugid}


def wanted_acls(acls):
    return {(acl["path"], acl["role"]): int(acl["propagate"]) for acl in acls}


def acl_plan(have, want):
    """(entries to put, entries to delete): a changed propagate flag is put again, which replaces it."""
    put = {key: value for key, value in want.items() if have.get(key) != value}
    delete = sorted(key for key in have if key not in want)
    return put, delete


def acl_list(entries):
    """Sorted, readable entries for results and diffs."""
    return [dict(path=path, role=role, propagate=bool(propagate))
            for (path, role), propagate in sorted(entries.items())]


def _put_acl(client, **params):
    # Not client.put(): the ACL's own parameter is called 'path'.
    client.retry(lambda: client.api("access/acl").put(**params), "PUT access/acl")


def apply_acls(client, kind, ugid, put, delete):
    target = "users" if kind == "user" else "tokens"
    for path, role in delete:
        _put_acl(client, path=path, roles=role, delete=1, **{target: ugid})
    for (path, role), propagate in sorted(put.items()):
        _put_acl(client, path=path, roles=role, propagate=propagate, **{target: ugid})
