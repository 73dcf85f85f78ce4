# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client of the authentik_* modules: the official `authentik-client` (pinned to the Authentik release the
collection deploys, requirements.txt), and the one routine every module uses to make an object look as wanted.

What it adds to the library:

- the connection options (`connection_args()`, doc fragment turnkey.cluster.authentik): `url` (env
  AUTHENTIK_URL), `token` (no_log, env AUTHENTIK_TOKEN), `validate_certs` (default true), `ca_path`,
  `timeout`; plain http is refused while certificates are verified, because the token would travel in clear;
- failures as one sentence with the fix (`AuthentikFailure`): a refused token (401/403) names the bootstrap
  token in the store, an unreachable Authentik its address, a 400 its field errors;
- listing through every page (`Authentik.list_all`), finding one object by a unique field
  (`Authentik.find`) and turning a name into the primary key another object refers to (`Authentik.resolve`);
- `ensure()`: read, compare only the fields the task manages (lists of references compared as sets, redirect
  URIs normalised, dictionaries such as attributes merged key by key), then create, update (PATCH with only
  what differs) or delete, honouring check mode, with a before/after diff of the managed fields in which
  secrets are never shown and references are shown by the names the task used.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys
import traceback
import types

from ansible.module_utils.basic import env_fallback

EXPORT = re.compile(r"^from (authentik_client[\w.]*) import (\w+)(?: as (\w+))?$", re.M)


def lazy_package(name):
    """Puts a stand-in for the package `name` into sys.modules that imports each name it exports on first use.

    authentik-client's __init__ files import all ~900 models and ~20 API classes, whose pydantic validators take
    10 s of CPU to build, in every module run; a task needs three or four of them. The stand-in reads the
    package's own export lines (`from authentik_client.x import Y as Y`), so names and classes are the
    library's, only loaded when asked for."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.submodule_search_locations:
        raise ImportError("no package %s" % name)
    with open(spec.origin) as source:
        exports = {match.group(3) or match.group(2): (match.group(1), match.group(2))
                   for match in EXPORT.finditer(source.read())}
    package = types.ModuleType(name)
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin

    def load(attribute):
        if attribute not in exports:
            raise AttributeError("module %s has no attribute %s" % (name, attribute))
        module_name, real = exports[attribute]
        value = getattr(importlib.import_module(module_name), real)
        setattr(package, attribute, value)
        return value

    package.__getattr__ = load
    sys.modules[name] = package
    parent, _dot, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, package)  # as the import system does: `import a.b` then a.b
    return package


try:
    if "authentik_client" not in sys.modules:
        for _package in ("authentik_client", "authentik_client.api", "authentik_client.models"):
            lazy_package(_package)
    import authentik_client
    import urllib3
    from authentik_client.exceptions import ApiException
    from pydantic import ValidationError
except ImportError:  # reported by Authentik() with how to install it
    for _package in ("authentik_client", "authentik_client.api", "authentik_client.models"):
        sys.modules.pop(_package, None)
    authentik_client = None
    IMPORT_ERROR = traceback.format_exc()
else:
    IMPORT_ERROR = None

AUTHENTIK_RELEASE = "2026.5.6"
FIX_TOKEN = "check the bootstrap token in the store"
HIDDEN = "<hidden>"
HIDDEN_CHANGED = "<hidden, changed>"
PAGE_SIZE = 100

# Options every authentik_* module takes; the doc fragment turnkey.cluster.authentik documents them.
CONNECTION_ARGS = dict(
    url=dict(type="str", required=True, fallback=(env_fallback, ["AUTHENTIK_URL"])),
    token=dict(type="str", required=True, no_log=True, fallback=(env_fallback, ["AUTHENTIK_TOKEN"])),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    timeout=dict(type="int", default=30),
)


class AuthentikFailure(Exception):
    """A failure with what happened and the fix, ready for fail_json."""


def connection_args(**options):
    """A module's options plus the connection options and, unless the module says otherwise, `state`."""
    args = {name: dict(spec) for name, spec in CONNECTION_ARGS.items()}
    args["state"] = dict(type="str", choices=["present", "absent"], default="present")
    args.update(options)
    return args


def normalise_redirect_uris(value):
    """Redirect URIs as Authentik stores them: {matching_mode, url, redirect_uri_type}, the type defaulting to
    authorization, sorted (the order does not change which URI matches)."""
    if value is None:
        return None
    entries = [{"matching_mode": entry.get("matching_mode") or "strict", "url": entry["url"],
                "redirect_uri_type": entry.get("redirect_uri_type") or "authorization"} for entry in value]
    return sorted(entries, key=lambda entry: (entry["redirect_uri_type"], entry["url"], entry["matching_mode"]))


class Kind:
    """One kind of Authentik object as the client reaches it.

    api/prefix: the client's API class and method prefix (<prefix>_list, _create, _partial_update, _destroy);
    key: the unique field a task names the object by; path: the field the object's URL takes (pk, or slug for
    applications); model: the request model (Patched<model> for updates); filters: list arguments per field
    where they are not the field's name (list_filters: those the API takes as a list); unordered: lists
    compared as sets; merged: dictionaries whose keys the task sets while other keys stay; secret: fields never
    shown; refs: fields holding primary keys of other objects (shown by name in the diff); normalisers: per
    field, a function both sides go through."""

    def __init__(self, label, api, prefix, key, model=None, path="pk", filters=None, unordered=(), merged=(),
                 secret=(), refs=(), normalisers=None, list_filters=()):
        self.label = label
        self.api = api
        self.prefix = prefix
        self.key = key
        self.model = model
        self.path = path
        self.filters = filters or {}
        self.unordered = frozenset(unordered)
        self.merged = frozenset(merged)
        self.secret = frozenset(secret)
        self.refs = frozenset(refs)
        self.normalisers = normalisers or {}
        self.list_filters = frozenset(list_filters)

    def normalise(self, field, value):
        if value is None:
            return None
        if field in self.normalisers:
            return self.normalisers[field](value)
        if field in self.unordered:
            return sorted(str(item) for item in value)
        return value


FLOW_REFS = ("authorization_flow", "invalidation_flow", "authentication_flow")
GROUP = Kind("group", "CoreApi", "core_groups", "name", "GroupRequest", unordered=("parents", "users", "roles"),
             merged=("attributes",), refs=("parents",))
USER = Kind("user", "CoreApi", "core_users", "username", "UserRequest", unordered=("groups", "roles"),
            merged=("attributes",), refs=("groups",))
SCOPE_MAPPING = Kind("scope mapping", "PropertymappingsApi", "propertymappings_provider_scope", "name",
                     "ScopeMappingRequest", list_filters=("managed",))
OAUTH2_PROVIDER = Kind("OAuth2 provider", "ProvidersApi", "providers_oauth2", "name", "OAuth2ProviderRequest",
                       unordered=("property_mappings",), secret=("client_secret",),
                       refs=FLOW_REFS + ("signing_key", "property_mappings"),
                       normalisers={"redirect_uris": normalise_redirect_uris})
PROXY_PROVIDER = Kind("proxy provider", "ProvidersApi", "providers_proxy", "name", "ProxyProviderRequest",
                      filters={"name": "name__iexact"}, unordered=("property_mappings",),
                      refs=FLOW_REFS + ("property_mappings",))
APPLICATION = Kind("application", "CoreApi", "core_applications", "slug", "ApplicationRequest", path="slug",
                   refs=("provider",))
OUTPOST = Kind("outpost", "OutpostsApi", "outposts_instances", "name", "OutpostRequest",
               filters={"name": "name__iexact", "managed": "managed__iexact"}, unordered=("providers",),
               merged=("config",), refs=("providers",))
FLOW = Kind("flow", "FlowsApi", "flows_instances", "slug")
KEYPAIR = Kind("certificate keypair", "CryptoApi", "crypto_certificatekeypairs", "name")


def plain(model):
    """A client model as plain JSON data (UUIDs as strings), read-only fields included."""
    return model.model_dump(mode="json", by_alias=True)


def field_errors(body):
    """Authentik's 400 body ({field: [messages]}, nested for lists of objects) as `field: message; ...`."""
    try:
        data = json.loads(body) if isinstance(body, (str, bytes)) else body
    except ValueError:
        return (body or "").strip()[:500] if isinstance(body, str) else str(body)

    def walk(value, where):
        if isinstance(value, dict):
            for key, inner in value.items():
                if key == "code" and isinstance(inner, str) and where == "":
                    continue
                yield from walk(inner, "%s.%s" % (where, key) if where else key)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                if isinstance(inner, (dict, list)):
                    yield from walk(inner, "%s[%d]" % (where, index))
                else:
                    yield where, str(inner)
        elif value not in (None, ""):
            yield where, str(value)

    parts = ["%s: %s" % (where, message) if where and where != "non_field_errors" else message
             for where, message in walk(data, "")]
    return "; ".join(parts) or str(data)


def explain_status(status, reason, body, what):
    """One sentence for an HTTP error answer of Authentik to `what`."""
    detail = ""
    try:
        parsed = json.loads(body) if body else None
        if isinstance(parsed, dict) and isinstance(parsed.get("detail"), str):
            detail = parsed["detail"]
    except ValueError:
        parsed = None
    if status in (401, 403):
        return "Authentik refused the token (HTTP %s: %s) while %s: %s" % (
            status, detail or reason or "forbidden", what, FIX_TOKEN)
    if status == 400:
        return "Authentik rejected %s: %s" % (what, field_errors(body))
    if status == 404:
        return "%s: Authentik has no such object (HTTP 404: %s)" % (what, detail or reason)
    text = detail or (body or "").strip()[:300] or reason
    return "%s: Authentik answered HTTP %s (%s)" % (what, status, text)


def explain_model_error(exc, what):
    """A pydantic ValidationError of the client (a request that does not fit the document, or an answer the
    client cannot read) as `field: message`."""
    parts = []
    for error in exc.errors()[:6]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append("%s: %s" % (where, error.get("msg")) if where else error.get("msg"))
    return "%s: does not fit Authentik %s's API (%s)" % (what, AUTHENTIK_RELEASE, "; ".join(parts))


class Authentik:
    """The client of one Authentik, with lookups remembered for the diff (`labels`: primary key -> name)."""

    def __init__(self, params, check_mode=False):
        if authentik_client is None:
            raise AuthentikFailure("the Python library 'authentik-client' (%s) is needed on the controller: "
                                   "pip install -r requirements.txt" % AUTHENTIK_RELEASE)
        self.url = params["url"].rstrip("/")
        verify = params.get("validate_certs", True)
        if not self.url.startswith(("https://", "http://")):
            raise AuthentikFailure("Authentik address %s is not a URL: give https://host[:port]" % self.url)
        if self.url.startswith("http://") and verify:
            raise AuthentikFailure(
                "Authentik address %s is not https: the token would travel in clear; use Authentik's TLS address "
                "(validate_certs=false is only for throw-away test servers)" % self.url)
        config = authentik_client.Configuration(host=self.url + "/api/v3", access_token=params["token"])
        config.verify_ssl = verify
        if verify and params.get("ca_path"):
            if not os.path.isfile(params["ca_path"]):
                raise AuthentikFailure("ca_path %s does not exist; point it at the CA bundle that signed "
                                       "Authentik's certificate" % params["ca_path"])
            config.ssl_ca_cert = params["ca_path"]
        # Connection failures are retried (nothing was sent); an answer, or a broken read, is not.
        config.retries = urllib3.util.Retry(total=2, connect=2, read=0, status=0, other=0, backoff_factor=0.3,
                                            raise_on_status=False)
        self.api_client = authentik_client.ApiClient(config)
        self.timeout = params.get("timeout") or 30
        self.check_mode = check_mode
        self.labels = {}
        self.warnings = []
        self._apis = {}

    def api(self, name):
        if name not in self._apis:
            self._apis[name] = getattr(authentik_client, name)(self.api_client)
        return self._apis[name]

    def call(self, what, api, method, *args, **kwargs):
        """One client call; every failure becomes an AuthentikFailure naming what was being done."""
        function = getattr(self.api(api), method)
        try:
            return function(*args, _request_timeout=self.timeout, **kwargs)
        except ApiException as exc:
            raise AuthentikFailure(explain_status(exc.status, exc.reason, exc.body, what)) from None
        except ValidationError as exc:
            raise AuthentikFailure(explain_model_error(exc, what)) from None
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, urllib3.exceptions.SSLError):
                raise AuthentikFailure("Authentik at %s: TLS verification failed (%s); set ca_path to the CA that "
                                       "signed its certificate" % (self.url, _short(reason))) from None
            raise AuthentikFailure("Authentik unreachable at %s: %s (while %s); check that it runs and that the "
                                   "address is right" % (self.url, _short(reason), what)) from None

    def list_all(self, kind, **filters):
        """Every object of a kind matching the list filters, through all pages, as plain data."""
        results, page = [], 1
        while page:
            answer = self.call("listing %ss" % kind.label, kind.api, kind.prefix + "_list", page=page,
                               page_size=PAGE_SIZE, **filters)
            results.extend(plain(item) for item in answer.results)
            following = int(answer.pagination.next or 0)
            page = following if following > page else 0
        return results

    def find(self, kind, value, field=None):
        """The one object whose `field` (the kind's key by default) is exactly `value`, or None."""
        field = field or kind.key
        argument = kind.filters.get(field, field)
        asked = [value] if field in kind.list_filters else value
        matches = [item for item in self.list_all(kind, **{argument: asked}) if item.get(field) == value]
        if len(matches) > 1:
            raise AuthentikFailure("%d %ss have %s %r in Authentik; rename all but one" % (
                len(matches), kind.label, field, value))
        return matches[0] if matches else None

    def resolve(self, kinds, value, field=None, hint=None):
        """The primary key of the object named `value` (the first of `kinds` that has it), remembered for the
        diff. Missing: a failure naming what to create first, or in check mode a placeholder and a warning
        (an earlier task of the same check run would have created it)."""
        kinds = kinds if isinstance(kinds, (list, tuple)) else (kinds,)
        for kind in kinds:
            found = self.find(kind, value, field)
            if found is not None:
                self.labels[str(found["pk"])] = value
                return found["pk"]
        what = " or ".join(kind.label for kind in kinds)
        if self.check_mode:
            placeholder = "<%s %s, not in Authentik yet>" % (what, value)
            self.labels[placeholder] = value
            self.warnings.append("check mode: no %s %r in Authentik yet; assuming an earlier task creates it" % (
                what, value))
            return placeholder
        raise AuthentikFailure("no %s with %s %r in Authentik; create it first%s" % (
            what, field or kinds[0].key, value, " (%s)" % hint if hint else ""))

    def resolve_all(self, kinds, values, field=None, hint=None):
        return None if values is None else [self.resolve(kinds, value, field, hint) for value in values]

    def scope_mapping(self, value):
        """A scope mapping by its managed id (goauthentik.io/...) or by its name."""
        field = "managed" if value.startswith("goauthentik.io/") else "name"
        return self.resolve(SCOPE_MAPPING, value, field, "turnkey.cluster.authentik_scope_mapping")


def provider_refs(client, params):
    """What a provider task names by slug or name, as primary keys: its flows and scope mappings."""
    refs = {field: client.resolve(FLOW, params[field]) for field in FLOW_REFS if params.get(field) is not None}
    if params.get("property_mappings") is not None:
        refs["property_mappings"] = [client.scope_mapping(value) for value in params["property_mappings"]]
    return refs


PROVIDER_REQUIRED = {"authorization_flow": "authorization_flow", "invalidation_flow": "invalidation_flow"}


def _short(exc):
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def pending(kind, current, wanted):
    """The fields to send so that `current` has the wanted values: {field: value}. Fields wanted as None are not
    managed; merged dictionaries are sent whole (current keys kept, wanted keys set)."""
    changes = {}
    for field, value in wanted.items():
        if value is None:
            continue
        have = current.get(field)
        if field in kind.merged:
            merged = dict(have or {}, **value)
            if merged != (have or {}):
                changes[field] = merged
        elif kind.normalise(field, have) != kind.normalise(field, value):
            changes[field] = value
    return changes


def view(kind, obj, fields, labels=None, changed=()):
    """The managed fields of an object for a diff: secrets hidden, references by name, sets sorted."""
    labels = labels or {}
    shown = {}
    for field in sorted(fields):
        value = obj.get(field)
        if field in kind.secret:
            shown[field] = (HIDDEN_CHANGED if field in changed else HIDDEN) if value is not None else None
            continue
        if field in kind.refs and value is not None:
            if isinstance(value, list):
                value = [labels.get(str(item), item) for item in value]
            else:
                value = labels.get(str(value), value)
        shown[field] = kind.normalise(field, value)
    return shown


def public(kind, obj):
    """An object as a module returns it: secrets left out."""
    return {key: value for key, value in (obj or {}).items() if key not in kind.secret}


def plan(kind, current, wanted, state, create_defaults=None):
    """What ensure() would do: (action, changes, predicted object). Pure; the unit tests drive it."""
    managed = {field: value for field, value in wanted.items() if value is not None}
    if state == "absent":
        return ("delete", {}, None) if current is not None else ("none", {}, None)
    if current is None:
        body = dict(create_defaults or {})
        for field, value in managed.items():
            if field in kind.merged:
                body[field] = dict(body.get(field) or {}, **value)
            else:
                body[field] = value
        return "create", body, body
    changes = pending(kind, current, managed)
    return ("update" if changes else "none"), changes, dict(current, **changes)


def request_model(kind, action, fields, what):
    """The client's request model (Patched<model> for an update) holding exactly `fields`.

    model_validate, not the generated from_dict: from_dict sets every field, so a PATCH would send null for each
    nullable field not given (and clear, say, the provider's signing key)."""
    name = kind.model if action == "create" else "Patched" + kind.model
    try:
        return getattr(authentik_client, name).model_validate(fields)
    except ValidationError as exc:
        raise AuthentikFailure(explain_model_error(exc, what)) from None


def ensure(client, kind, name, wanted, state="present", diff=False, create_defaults=None, required=()):
    """Makes the object of `kind` named `name` look as `wanted` ({field: value}; None leaves a field alone), or
    deletes it with state=absent (never an object Authentik manages itself). `create_defaults`: fields (or a
    function returning them) a created object starts from; `required`: {module option: field} creating it needs.
    Returns (the module result: changed, operation, object, diff when asked; the object as it was, or None)."""
    current = client.find(kind, name)
    if state == "absent" and current is not None and current.get("managed"):
        raise AuthentikFailure("%s %s is Authentik's own (%s) and cannot be deleted" % (
            kind.label, name, current["managed"]))
    if callable(create_defaults):  # asked for only when the object is created
        create_defaults = create_defaults() if current is None and state == "present" else None
    action, changes, after = plan(kind, current, wanted, state, create_defaults)
    missing = [option for option, field in dict(required).items() if changes.get(field) in (None, "", [])]
    if action == "create" and missing:
        raise AuthentikFailure("%s %s does not exist; creating it needs %s" % (kind.label, name, ", ".join(missing)))
    result = dict(changed=action != "none", operation=action)
    fields = [field for field, value in wanted.items() if value is not None]
    if diff:
        header = "%s %s" % (kind.label, name)
        result["diff"] = dict(before=view(kind, current, fields, client.labels) if current is not None else {},
                              after=view(kind, after, fields, client.labels, changed=changes)
                              if after is not None else {},
                              before_header=header, after_header=header)
    if action == "none" or client.check_mode:
        result["object"] = public(kind, after if action != "delete" else None)
        return result, current
    what = "%s %s %s" % ({"create": "creating", "update": "updating", "delete": "deleting"}[action], kind.label,
                         name)
    if action == "delete":
        client.call(what, kind.api, kind.prefix + "_destroy", current[kind.path])
        result["object"] = {}
        return result, current
    request = request_model(kind, action, changes, what)
    if action == "create":
        answer = client.call(what, kind.api, kind.prefix + "_create", request)
    else:
        answer = client.call(what, kind.api, kind.prefix + "_partial_update", current[kind.path], request)
    result["object"] = public(kind, plain(answer))
    return result, current


def run_module(module, work):
    """Builds the client from the module's options, runs work(client) -> result and exits with it; every
    AuthentikFailure fails the task with its sentence."""
    try:
        client = Authentik(module.params, check_mode=module.check_mode)
        result = work(client)
        for warning in client.warnings:
            module.warn(warning)
    except AuthentikFailure as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)
