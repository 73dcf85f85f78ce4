# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Role verify's judges: each turns what a check read (k8s_info, git, dig answers) into report entries
{component, status, detail}. They only judge; the role reads."""

from __future__ import annotations

import datetime
import os
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

from ansible_collections.turnkey.cluster.plugins.module_utils.cluster_spec import VAULT_SSO_APP

# Documented in verify_checks.yml beside this file.


def _entry(component, ok, detail):
    return {"component": component, "status": "ok" if ok else "failed", "detail": detail}


def _text(value):
    """A value as Jinja's ~ writes it."""
    return str(value)


def _ready(obj):
    """The object's Ready condition, {} without one."""
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((cond for cond in conditions if cond.get("type") == "Ready"), {})


def _unread(result):
    """True when a k8s_info read did not answer."""
    return "resources" not in (result or {}) or bool(result.get("failed", False))


def _first_line(text):
    return _text(text).split("\n", maxsplit=1)[0]


def pushed_sha(pushed):
    """The commit layer 02 pushed, from the registered `git rev-parse HEAD`; '' when it could not be read."""
    pushed = pushed or {}
    return _text(pushed.get("stdout", "")).strip() if pushed.get("rc", 1) == 0 else ""


def verify_nodes(result):
    """Every node Ready."""
    result = result or {}
    if _unread(result):
        return [_entry("nodes", False, "cannot read the nodes: " + _text(result.get("msg", "no answer")))]
    nodes = result["resources"]
    bad = []
    for node in nodes:
        cond = _ready(node)
        if cond.get("status", "") != "True":
            bad.append("%s (%s)" % (node["metadata"]["name"], _text(cond.get("reason", "no Ready condition"))))
    if not nodes:
        detail = "no nodes"
    elif bad:
        detail = "not Ready: " + ", ".join(bad)
    else:
        detail = "%d nodes Ready: %s" % (len(nodes), ", ".join(node["metadata"]["name"] for node in nodes))
    return [_entry("nodes", nodes and not bad, detail)]


def _unread_kind(result, kind):
    return [_entry(kind, False, "cannot read the %ss: %s" % (kind, _first_line(result.get("msg", "no answer"))))]


def verify_flux_source(result, pushed, clone, namespace, name):
    """Flux's GitRepository exists and is Ready at the commit layer 02 pushed."""
    result, pushed = result or {}, pushed or {}
    if _unread(result):
        return _unread_kind(result, "GitRepository")
    sha = pushed_sha(pushed)
    source = (result["resources"] or [{}])[0]
    have = _text(((source.get("status") or {}).get("artifact") or {}).get("revision", "")) if source else ""
    cond = _ready(source)
    ready = cond.get("status", "") == "True"
    at_commit = bool(sha) and have.endswith(":" + sha)
    if not source:
        detail = "it does not exist"
    elif not sha:
        why = _text(pushed.get("stderr", "") or pushed.get("msg", "")).strip()
        detail = "no pushed commit known (%s: %s)" % (clone, why)
    elif at_commit and ready:
        detail = "Ready at the pushed commit " + have
    else:
        detail = "has %s, not the pushed commit %s (Ready=%s, %s: %s)" % (
            have or "no artifact", sha, _text(cond.get("status", "Unknown")), _text(cond.get("reason", "")),
            _text(cond.get("message", "")))
    return [_entry("flux source %s/%s" % (namespace, name), at_commit and ready, detail)]


def _judge(kind, obj, sha="", namespace=None, source_name=None):
    """One Kustomization, HelmRelease or ExternalSecret."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    cond = _ready(obj)
    ref = (obj.get("spec") or {}).get("sourceRef") or {}
    on_source = (kind == "Kustomization" and ref.get("kind", "") == "GitRepository"
                 and ref.get("name", "") == source_name
                 and ref.get("namespace", meta.get("namespace")) == namespace)
    applied = _text(status.get("lastAppliedRevision") or "")
    at_commit = not on_source or (bool(sha) and applied.endswith(":" + sha))
    synced = kind != "ExternalSecret" or cond.get("reason", "") == "SecretSynced"
    is_ready = cond.get("status", "") == "True" and synced
    what = "Synced" if kind == "ExternalSecret" else "Ready"
    # Flux's Ready is about the generation it observed: a spec changed since then is not judged yet.
    observed = status.get("observedGeneration", -1)
    current = kind == "ExternalSecret" or observed == meta.get("generation", 0)
    if is_ready:
        detail = what
    else:
        detail = "not %s (Ready=%s, %s: %s)" % (
            what, _text(cond.get("status", "Unknown")), _text(cond.get("reason", "no condition yet")),
            _text(cond.get("message", "")))
    if on_source:
        detail += ", applied " + (applied or "nothing")
        if not at_commit:
            detail += ", not the pushed commit " + (sha or "(unknown)")
    chart = status.get("lastAttemptedRevision", "")
    if kind == "HelmRelease" and chart:
        detail += ", chart " + _text(chart)
    if not current:
        detail += ", not reconciled since its last change (generation %s, observed %s)" % (
            _text(meta.get("generation", "?")), _text(observed))
    return _entry("%s %s/%s" % (kind, meta.get("namespace", ""), meta.get("name", "")),
                  is_ready and at_commit and current, detail)


def verify_kustomizations(result, pushed, namespace, source_name):
    """Every Kustomization Ready at its observed generation; those on Flux's source applied the pushed commit.
    None at all is a failure."""
    result = result or {}
    if _unread(result):
        return _unread_kind(result, "Kustomization")
    if not result["resources"]:
        return [_entry("Kustomization", False, "none in the cluster")]
    sha = pushed_sha(pushed)
    return [_judge("Kustomization", obj, sha, namespace, source_name) for obj in result["resources"]]


def verify_helmreleases(result):
    """Every HelmRelease Ready at its observed generation (the chart version it attempted named)."""
    result = result or {}
    if _unread(result):
        return _unread_kind(result, "HelmRelease")
    return [_judge("HelmRelease", obj) for obj in result["resources"]]


# creationPolicy values under which External Secrets keeps a target Secret of its own (Merge and None make none).
_TARGET_OWNED = ("Owner", "Orphan")


def _missing_target(obj, present):
    """The ns/name of the ExternalSecret's target Secret when External Secrets should keep it and it is not there."""
    meta, target = obj.get("metadata") or {}, (obj.get("spec") or {}).get("target") or {}
    if target.get("creationPolicy", "Owner") not in _TARGET_OWNED:
        return ""
    name = "%s/%s" % (meta.get("namespace", ""), target.get("name") or meta.get("name", ""))
    return "" if name in present else name


def verify_external_secrets(result, secrets):
    """Every ExternalSecret Ready with reason SecretSynced and its target Secret among those External Secrets
    manages (a k8s_info read): a Ready condition outlives a deleted target until the next sync."""
    result = result or {}
    if _unread(result):
        return _unread_kind(result, "ExternalSecret")
    if _unread(secrets):
        return [_judge("ExternalSecret", obj) for obj in result["resources"]] + [_entry(
            "Secret", False, "cannot read the Secrets External Secrets manages: "
            + _first_line(secrets.get("msg", "no answer")))]
    present = {"%s/%s" % (s["metadata"].get("namespace", ""), s["metadata"]["name"]) for s in secrets["resources"]}
    entries = []
    for obj in result["resources"]:
        entry = _judge("ExternalSecret", obj)
        missing = _missing_target(obj, present)
        if missing:
            entry.update(status="failed", detail=entry["detail"] + ", but its target Secret %s is missing (External "
                         "Secrets re-creates it at its next sync: is its controller running?)" % missing)
        entries.append(entry)
    return entries


def _sorted(values):
    """Jinja's sort: case-insensitive, stable."""
    return sorted(values, key=lambda value: value.lower())


def verify_dns_expected(records, zone):
    """{'<absolute name>/<type>': sorted expected contents} for the A/AAAA records, in the records' order."""
    zone = _text(zone)
    hosts = {}
    for record in records or []:
        if record.get("type") not in ("A", "AAAA"):
            continue
        name = _text(record["name"])
        if not name.endswith("."):
            name = zone + "." if name == "@" else "%s.%s." % (name, zone)
        key = "%s/%s" % (name, record["type"])
        content = record["content"]
        contents = [content] if isinstance(content, str) else content
        merged = []
        for value in hosts.get(key, []) + [_text(value) for value in contents]:
            if value not in merged:
                merged.append(value)
        hosts[key] = _sorted(merged)
    return hosts


def _where(server):
    return "%s %s:%s" % (server["name"], server["address"], _text(server.get("port", 53)))


def verify_dns(answers, expected, servers):
    """Each expected host/type answered by every server with exactly the expected contents. answers: the
    registered results of a loop over expected keys x servers (item [key, server]), each with the dig lookup's
    answer in ansible_facts.verify_dns_answer."""
    servers, answers = list(servers or []), list(answers or [])
    if len(answers) != len(expected) * len(servers):
        raise AnsibleFilterError("verify_dns needs one answer per host and server: %d answers for %d hosts x %d "
                                 "servers" % (len(answers), len(expected), len(servers)))
    out, answer_iter = [], iter(answers)
    for key, want in expected.items():
        bad, seen = [], []
        for server in servers:
            answer = next(answer_iter)
            if list(answer.get("item") or [])[:1] != [key]:
                raise AnsibleFilterError("verify_dns: answer for %r where %r was expected"
                                         % ((answer.get("item") or [None])[0], key))
            got = _sorted([text for text in map(_text, (answer.get("ansible_facts") or {}).get(
                "verify_dns_answer") or []) if text != ""])
            seen.append("%s: %s" % (_where(server), ", ".join(got) or "no answer"))
            if got != want:
                bad.append(server["name"])
        if not servers:
            detail = "no DNS server to ask (dns.api_url, verify_dns_servers)"
        else:
            detail = ("wrong or missing on %s (expected %s): " % (" and ".join(bad), ", ".join(want)) if bad
                      else "") + "; ".join(seen)
        out.append(_entry("dns " + key.replace("./", " "), servers and not bad, detail))
    return out


def verify_certificates(endpoints, tls_results, cert_results, warn_days, now=None):
    """Each endpoint answered over verified TLS with a certificate not expired; fewer than warn_days days left is
    a warning. tls_results and cert_results: the registered loop results of ansible.builtin.uri and
    community.crypto.get_certificate over the endpoints, in their order."""
    now = now or datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    out = []
    for endpoint, tls, cert in zip(endpoints or [], tls_results or [], cert_results or [], strict=True):
        tls_failed = int(tls.get("status", -1)) <= 0
        not_after = cert.get("not_after")
        expires = datetime.datetime.strptime(not_after, "%Y%m%d%H%M%SZ") if "not_after" in cert else None
        days = (expires - now).days if expires else -1
        if tls_failed or expires is None or cert.get("expired", True):
            status = "failed"
        else:
            status = "warning" if days < int(warn_days) else "ok"
        if tls_failed:
            detail = "TLS to %s failed: %s" % (endpoint["url"], _text(tls.get("msg", "no answer")))
        elif expires is None:
            detail = "cannot read the certificate: " + _text(cert.get("msg", "no answer"))
        elif cert.get("expired"):
            detail = "expired on " + _text(not_after)
        else:
            issuer = cert.get("issuer")
            issuer = issuer.get("commonName", _text(issuer)) if isinstance(issuer, dict) else _text(issuer)
            detail = "valid for %s, issued by %s, expires %s UTC, %d days left%s" % (
                urlsplit(endpoint["url"]).hostname, issuer, expires, days,
                " (under %s: renew it)" % warn_days if status == "warning" else "")
        out.append({"component": "certificate " + _text(endpoint["name"]), "status": status, "detail": detail})
    return out


def verify_sso_plan(apps, users, secrets, secret_reads, cluster):
    """The logins for each oidc app: its admin (the first user in its admin_group) and one user not in it, or
    its first user when it has no admin group; each with the problem that stops it ('' when none). secrets: the
    gathered 'client:<app>' and 'password:<user>' values (only their presence is read); secret_reads: the
    registered k8s_info loop over the apps' Secrets (read when cluster is true)."""
    users, out = list(users or []), []
    for index, app in enumerate(apps or []):
        name = app["name"]
        uris = list(app.get("redirect_uris", []))
        # Vault's app logs in through Vault itself, at its UI's callback (docs/verify.md)
        ui_callbacks = [uri for uri in uris if "/ui/vault/auth/" in uri] if name == VAULT_SSO_APP else []
        base = {"app": name, "redirect_uri": (ui_callbacks + uris + [""])[0],
                "namespace": app.get("namespace", name), "vault": bool(ui_callbacks)}
        secret = "%s/%s-oidc" % (base["namespace"], name)
        read = secret_reads[index] if cluster else {}
        if secrets.get("client:" + name):
            secret_problem = ""
        elif not cluster:
            secret_problem = "the store has no sso_client_secret_" + name.replace("-", "_")
        elif "resources" not in read:
            secret_problem = "cannot read Secret %s: %s" % (secret, _first_line(read.get("msg", "no answer")))
        else:
            secret_problem = "Secret %s %s (External Secrets syncs it from Vault kv/sso/%s)" % (
                secret, "has no client_secret" if read["resources"] else "does not exist", name)
        group = app.get("admin_group", "")
        if group:
            admins = [user for user in users if "groups" in user and group in user["groups"]]
            others = [user for user in users if user not in admins]
            picks = ([{"user": admins[0]["name"], "expect_admin": True}] if admins else
                     [{"user": "", "expect_admin": True,
                       "problem": "no sso_users entry is in its admin group " + _text(group)}])
            picks += [{"user": others[0]["name"], "expect_admin": False}] if others else []
        else:
            picks = ([{"user": users[0]["name"], "expect_admin": False}] if users else
                     [{"user": "", "expect_admin": False, "problem": "sso_users is empty: nobody to log in"}])
        mapped = app.get("vault_policies") or {}
        for pick in picks:
            user = next((user for user in users if user["name"] == pick["user"]), {})
            granted = sorted({policy for group in user.get("groups", []) for policy in mapped.get(group, [])})
            pick["vault_expect_policies"] = sorted(set(mapped.get(group, []) if pick["expect_admin"] and group else
                                                       granted))
            pick["vault_forbid_policies"] = ([] if pick["expect_admin"] else
                                             sorted(set(mapped.get(group, [])) - set(granted)))
            password_problem = ("" if secrets.get("password:" + pick["user"], "") else
                                "the store has no sso_password_" + pick["user"].replace("-", "_"))
            problem = pick.get("problem", "") or secret_problem or password_problem
            out.append({**base, **pick, "admin_group": group, "problem": problem})
    return out


# ansible-core 2.19 keeps a module's unhandled exception in `exception` and gives the result no `msg`
NO_MESSAGE = "the login check ended without a message (its error is in the run's output above)"


def verify_sso_logins(logins, report_dir):
    """Each planned login: its problem, or the sso_login_check result (the ID token's audience, issuer and
    groups); the screenshot named relative to the report folder when it is in it."""
    out = []
    for login in logins or []:
        item = login["item"]
        shot = login.get("screenshot") or ""
        claims = login.get("claims") or {}
        role = " (admin)" if item["expect_admin"] and item["admin_group"] else (
            " (not admin)" if item["admin_group"] else "")
        failed = bool(item["problem"]) or bool(login.get("failed", False)) or "claims" not in login
        if item["problem"]:
            detail = item["problem"]
        elif "claims" not in login:
            detail = _text(login.get("msg") or NO_MESSAGE)
        elif "vault_policies" in claims:
            detail = "logged in to Vault's UI through %s as %s, Vault token policies: %s" % (
                _text(claims.get("iss", "?")), _text(claims.get("vault_user", "?")),
                ", ".join(claims["vault_policies"]) or "none")
        else:
            detail = "logged in at %s, ID token for %s from %s, groups: %s" % (
                item["redirect_uri"], _text(claims.get("aud", "?")), _text(claims.get("iss", "?")),
                ", ".join(claims.get("groups", [])) or "none")
        out.append({"component": "sso %s as %s%s" % (item["app"], item["user"] or "(nobody)", role),
                    "status": "failed" if failed else "ok", "detail": detail,
                    "screenshot": os.path.basename(shot) if shot and os.path.dirname(shot) == report_dir else ""})
    return out


CHECKS = {
    "nodes": verify_nodes,
    "flux_source": verify_flux_source,
    "kustomizations": verify_kustomizations,
    "helmreleases": verify_helmreleases,
    "external_secrets": verify_external_secrets,
    "dns_expected": verify_dns_expected,
    "dns": verify_dns,
    "certificates": verify_certificates,
    "sso_plan": verify_sso_plan,
    "sso_logins": verify_sso_logins,
}


def verify_checks(data, check, *args, **kwargs):
    """Runs the judge named check on data (what the role read) with the judge's own arguments."""
    if check not in CHECKS:
        raise AnsibleFilterError("verify_checks: unknown check %r, expected one of %s" % (check, ", ".join(CHECKS)))
    try:
        return CHECKS[check](data, *args, **kwargs)
    except TypeError as error:
        raise AnsibleFilterError("verify_checks(%r): %s" % (check, error)) from None


class FilterModule:
    def filters(self):
        return {"verify_checks": verify_checks}
