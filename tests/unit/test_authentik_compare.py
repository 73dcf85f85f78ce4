"""The authentik_* modules' pure comparison and normalisation (module_utils/authentik.py): what counts as a change,
what a diff shows, and how Authentik's errors read. Driven with Authentik-shaped data; the modules against the
lab's Authentik twin are in tests/integration/test_authentik_modules.py."""

from __future__ import annotations

import json
import socket

import pytest

from ansible_collections.turnkey.cluster.plugins.module_utils import authentik as ak

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

GRAFANA_URI = "https://grafana.cluster.example.com/login/generic_oauth"


def provider(**fields):
    current = {"pk": 3, "name": "grafana-oauth2", "client_id": "grafana", "client_secret": "s3cret",
               "client_type": "confidential", "authorization_flow": "flow-a", "invalidation_flow": "flow-i",
               "property_mappings": ["m-openid", "m-email", "m-groups"],
               "redirect_uris": [{"matching_mode": "strict", "url": GRAFANA_URI, "redirect_uri_type": "authorization"}]}
    current.update(fields)
    return current


def test_redirect_uris_are_normalised_with_authentiks_defaults_and_sorted():
    given = [{"url": "https://b.example.com/cb"}, {"url": "https://a.example.com/cb", "matching_mode": "regex"}]
    assert ak.normalise_redirect_uris(given) == [
        {"matching_mode": "regex", "url": "https://a.example.com/cb", "redirect_uri_type": "authorization"},
        {"matching_mode": "strict", "url": "https://b.example.com/cb", "redirect_uri_type": "authorization"}]
    assert ak.normalise_redirect_uris(None) is None


def test_an_unchanged_provider_needs_nothing_even_with_lists_in_another_order():
    wanted = {"name": "grafana-oauth2", "client_secret": "s3cret", "client_id": "grafana",
              "property_mappings": ["m-groups", "m-openid", "m-email"],
              "redirect_uris": [{"url": GRAFANA_URI, "matching_mode": "strict", "redirect_uri_type": "authorization"}],
              "sub_mode": None}
    assert ak.pending(ak.OAUTH2_PROVIDER, provider(), wanted) == {}
    assert ak.plan(ak.OAUTH2_PROVIDER, provider(), wanted, "present")[0] == "none"


def test_one_changed_redirect_uri_is_the_only_field_sent():
    new = [{"url": GRAFANA_URI.replace("grafana.", "grafana2."), "matching_mode": "strict",
            "redirect_uri_type": "authorization"}]
    wanted = {"name": "grafana-oauth2", "client_secret": "s3cret", "redirect_uris": new,
              "property_mappings": ["m-openid", "m-email", "m-groups"]}
    action, changes, after = ak.plan(ak.OAUTH2_PROVIDER, provider(), wanted, "present")
    assert (action, changes) == ("update", {"redirect_uris": new})
    assert after["redirect_uris"] == new and after["client_id"] == "grafana"


def test_a_different_client_secret_is_a_change_but_never_shown():
    wanted = {"name": "grafana-oauth2", "client_secret": "other"}
    action, changes, after = ak.plan(ak.OAUTH2_PROVIDER, provider(), wanted, "present")
    assert (action, changes) == ("update", {"client_secret": "other"})
    before_view = ak.view(ak.OAUTH2_PROVIDER, provider(), wanted)
    after_view = ak.view(ak.OAUTH2_PROVIDER, after, wanted, changed=changes)
    assert before_view == {"client_secret": ak.HIDDEN, "name": "grafana-oauth2"}
    assert after_view == {"client_secret": ak.HIDDEN_CHANGED, "name": "grafana-oauth2"}
    assert "s3cret" not in json.dumps([before_view, after_view]) and "other" not in json.dumps(after_view)
    assert "client_secret" not in ak.public(ak.OAUTH2_PROVIDER, after)


def test_references_show_by_the_names_the_task_used_and_sets_sorted():
    labels = {"m-openid": "goauthentik.io/providers/oauth2/scope-openid", "m-groups": "Groups Mapping",
              "flow-a": "default-provider-authorization-implicit-consent"}
    shown = ak.view(ak.OAUTH2_PROVIDER, provider(), ["property_mappings", "authorization_flow"], labels)
    assert shown == {"authorization_flow": "default-provider-authorization-implicit-consent",
                     "property_mappings": ["Groups Mapping", "goauthentik.io/providers/oauth2/scope-openid", "m-email"]}


def test_attributes_are_merged_key_by_key_so_authentiks_own_keys_stay():
    current = {"name": "grafana-admins", "attributes": {"goauthentik.io/user/sources": True, "team": "a"}}
    assert ak.pending(ak.GROUP, current, {"attributes": {"team": "a"}}) == {}
    assert ak.pending(ak.GROUP, current, {"attributes": {"team": "b"}}) == {
        "attributes": {"goauthentik.io/user/sources": True, "team": "b"}}
    assert ak.pending(ak.GROUP, {"name": "x", "attributes": None}, {"attributes": {}}) == {}


def test_options_not_given_are_not_managed():
    current = {"username": "operator", "name": "Op", "email": "op@example.com", "groups": ["g1", "g2"]}
    wanted = {"username": "operator", "name": None, "email": None, "groups": None, "is_active": None}
    assert ak.plan(ak.USER, current, wanted, "present")[:2] == ("none", {})
    assert ak.pending(ak.USER, current, {"groups": ["g2", "g1"]}) == {}
    assert ak.pending(ak.USER, current, {"groups": ["g1"]}) == {"groups": ["g1"]}


def test_creation_starts_from_the_defaults_with_dictionaries_merged():
    defaults = {"providers": [], "config": {"authentik_host": "https://default", "log_level": "info"}}
    wanted = {"name": "kagent-outpost", "type": "proxy", "providers": [4], "config": {"authentik_host": "https://a"},
              "managed": None}
    action, body, after = ak.plan(ak.OUTPOST, None, wanted, "present", defaults)
    assert action == "create" and body is after
    assert body == {"name": "kagent-outpost", "type": "proxy", "providers": [4],
                    "config": {"authentik_host": "https://a", "log_level": "info"}}
    assert defaults["config"]["authentik_host"] == "https://default"  # the defaults are not changed in place


def test_absent_deletes_only_what_exists():
    assert ak.plan(ak.GROUP, {"pk": "u", "name": "g"}, {}, "absent") == ("delete", {}, None)
    assert ak.plan(ak.GROUP, None, {}, "absent") == ("none", {}, None)


def test_a_400_names_every_field_error_even_inside_lists():
    body = json.dumps({"redirect_uris": [{"url": ["Enter a valid URL."]}],
                       "name": ["provider with this name already exists."],
                       "non_field_errors": ["Either internal_host or mode forward_single is required."]})
    message = ak.explain_status(400, "Bad Request", body, "creating OAuth2 provider grafana-oauth2")
    assert message == ("Authentik rejected creating OAuth2 provider grafana-oauth2: redirect_uris[0].url: Enter a "
                       "valid URL.; name: provider with this name already exists.; Either internal_host or mode "
                       "forward_single is required.")


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_names_the_store(status):
    body = json.dumps({"detail": "Token invalid/expired", "code": "authentication_failed"})
    assert ak.explain_status(status, "Forbidden", body, "listing groups") == (
        "Authentik refused the token (HTTP %d: Token invalid/expired) while listing groups: check the bootstrap "
        "token in the store" % status)


def test_other_answers_keep_status_and_detail():
    assert ak.explain_status(500, "Internal Server Error", "boom", "listing groups") == (
        "listing groups: Authentik answered HTTP 500 (boom)")
    assert ak.explain_status(404, "Not Found", json.dumps({"detail": "No Group matches the given query."}),
                             "updating group x") == (
        "updating group x: Authentik has no such object (HTTP 404: No Group matches the given query.)")


def test_the_librarys_own_classes_are_loaded_lazily():
    """The stand-in package hands out authentik-client's classes; a request model validates like the library's."""
    import authentik_client.models

    assert ak.authentik_client.GroupRequest.__module__ == "authentik_client.models.group_request"
    assert authentik_client.models.Group.__name__ == "Group"
    with pytest.raises(ak.ValidationError) as failure:
        ak.authentik_client.OAuth2ProviderRequest.from_dict({"name": "x"})
    message = ak.explain_model_error(failure.value, "creating OAuth2 provider x")
    assert message.startswith("creating OAuth2 provider x: does not fit Authentik 2026.5.6's API (")
    assert "authorization_flow: UUID input should be a string" in message
    assert "redirect_uris: Input should be a valid list" in message


def test_an_update_sends_only_the_changed_fields():
    """A PATCH of the redirect URIs must not send null for the fields not given (it would clear the signing key)."""
    uris = [{"matching_mode": "strict", "url": GRAFANA_URI, "redirect_uri_type": "authorization"}]
    model = ak.request_model(ak.OAUTH2_PROVIDER, "update", {"redirect_uris": uris}, "updating x")
    assert type(model).__name__ == "PatchedOAuth2ProviderRequest"
    assert ak.authentik_client.ApiClient().sanitize_for_serialization(model) == {"redirect_uris": uris}
    created = ak.request_model(ak.GROUP, "create", {"name": "g", "parents": []}, "creating group g")
    assert ak.authentik_client.ApiClient().sanitize_for_serialization(created) == {"name": "g", "parents": []}
    with pytest.raises(ak.AuthentikFailure, match=r"^creating group g: does not fit Authentik 2026.5.6's API \(name: "):
        ak.request_model(ak.GROUP, "create", {"name": ""}, "creating group g")


def test_plain_http_and_a_missing_ca_are_refused_before_any_request(tmp_path):
    params = {"url": "http://127.112.0.1:9000", "token": "t", "validate_certs": True, "ca_path": None}
    with pytest.raises(ak.AuthentikFailure, match="is not https: the token would travel in clear"):
        ak.Authentik(params)
    params.update(url="https://127.112.0.1:9443", ca_path=str(tmp_path / "nope.pem"))
    with pytest.raises(ak.AuthentikFailure, match="ca_path .*nope.pem does not exist"):
        ak.Authentik(params)


def test_an_unreachable_authentik_is_named():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.112.0.1", 0))
        port = probe.getsockname()[1]
    url = "https://127.112.0.1:%d" % port
    client = ak.Authentik({"url": url, "token": "t", "validate_certs": True, "ca_path": None, "timeout": 5})
    with pytest.raises(ak.AuthentikFailure) as failure:
        client.find(ak.GROUP, "grafana-admins")
    assert str(failure.value).startswith("Authentik unreachable at %s: " % url)
    assert "Connection refused" in str(failure.value) and "(while listing groups)" in str(failure.value)
