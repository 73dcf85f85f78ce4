"""The real OpenBao's OIDC login wired to an Authentik (twin) provider, as role vault_oidc wires Vault's UI: the
method at oidc/, one role, and one external group aliased from the `groups` claim to a policy. For the lab tests
whose relying party is OpenBao (test_lab_authentik_oidc, test_sso_login_check)."""

from __future__ import annotations


def configure_oidc(bao, *, issuer: str, client_id: str, client_secret: str, ca_pem: str, role: str, callback: str,
                   scopes: list[str], group: str, policy: str, policy_hcl: str) -> None:
    """bao: an hvac client with the root token."""
    bao.sys.enable_auth_method("oidc")
    bao.auth.oidc.configure(oidc_discovery_url=issuer, oidc_client_id=client_id, oidc_client_secret=client_secret,
                            oidc_discovery_ca_pem=ca_pem, default_role=role)
    bao.auth.oidc.create_role(role, user_claim="preferred_username", allowed_redirect_uris=[callback],
                              groups_claim="groups", oidc_scopes=scopes, token_policies=["default"],
                              bound_audiences=[client_id])
    bao.sys.create_or_update_policy(policy, policy_hcl)
    made = bao.secrets.identity.create_or_update_group(group, group_type="external", policies=[policy])
    accessor = bao.sys.list_auth_methods()["oidc/"]["accessor"]
    bao.secrets.identity.create_or_update_group_alias(group, mount_accessor=accessor, canonical_id=made["data"]["id"])
