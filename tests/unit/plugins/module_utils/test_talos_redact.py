"""Redaction of Talos machine configs by path: the allow-list decides, per document kind, which values a diff
may show; keys stay, everything else is a marker - in parsed configs and in Talos' own dry-run diff text."""

from __future__ import annotations

import difflib

import pytest

from ansible_collections.turnkey.cluster.plugins.module_utils.talos_redact import Redactor, is_shown

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

SECRETS = ("hunter2-registry-password", "dXNlcjpodW50ZXIy", "identity-token-xyz",
           "cGFzc3dvcmRwYXNzd29yZHBhc3N3b3JkcGFzc3dvcmQ=", "c2hhcmVkc2VjcmV0c2hhcmVkc2VjcmV0c2hhcmVkc2U=",
           "abcdef.0123456789abcdef", "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0t", "supersecretfilecontent",
           "aescbc-key-material", "secretbox-key-material", "hcloud-api-token", "csi-token-secret")


@pytest.mark.parametrize("kind, path", [
    ("v1alpha1", "machine.type"),
    ("v1alpha1", "machine.install.disk"),
    ("v1alpha1", "machine.install.image"),
    ("v1alpha1", "machine.network.hostname"),
    ("v1alpha1", "machine.network.interfaces.[].addresses.[]"),
    ("v1alpha1", "machine.network.interfaces.[].routes.[].gateway"),
    ("v1alpha1", "machine.kubelet.nodeIP.validSubnets.[]"),
    ("v1alpha1", "machine.kubelet.extraArgs.rotate-server-certificates"),
    ("v1alpha1", "machine.kubelet.extraConfig.providerID"),
    ("v1alpha1", "machine.nodeLabels.topology.kubernetes.io/zone"),
    ("v1alpha1", "machine.registries.mirrors.docker.io.endpoints.[]"),
    ("v1alpha1", "cluster.clusterName"),
    ("v1alpha1", "cluster.controlPlane.endpoint"),
    ("v1alpha1", "cluster.network.podSubnets.[]"),
    ("v1alpha1", "cluster.network.cni.name"),
    ("v1alpha1", "cluster.apiServer.image"),
    ("v1alpha1", "cluster.inlineManifests.[].name"),
    ("LinkConfig", "addresses.[].address"),
    ("HostnameConfig", "hostname"),
    ("WireguardConfig", "peers.[].publicKey"),
    ("RegistryMirrorConfig", "endpoints.[].url"),
    ("RegistryAuthConfig", "name"),
    ("SideroLinkConfig", "kind"),
])
def test_allowed_paths_are_shown(kind, path):
    assert is_shown(kind, tuple(_segments(path)))


@pytest.mark.parametrize("kind, path", [
    ("v1alpha1", "machine.token"),
    ("v1alpha1", "machine.ca.key"),
    ("v1alpha1", "machine.ca.crt"),
    ("v1alpha1", "cluster.token"),
    ("v1alpha1", "cluster.secret"),
    ("v1alpha1", "cluster.id"),
    ("v1alpha1", "cluster.secretboxEncryptionSecret"),
    ("v1alpha1", "cluster.aescbcEncryptionSecret"),
    ("v1alpha1", "cluster.serviceAccount.key"),
    ("v1alpha1", "cluster.etcd.ca.key"),
    ("v1alpha1", "cluster.inlineManifests.[].contents"),
    ("v1alpha1", "machine.registries.config.registry.example.com.auth.password"),
    ("v1alpha1", "machine.registries.config.registry.example.com.auth.auth"),
    ("v1alpha1", "machine.registries.config.registry.example.com.auth.identityToken"),
    ("v1alpha1", "machine.registries.config.registry.example.com.auth.username"),
    ("v1alpha1", "machine.network.interfaces.[].wireguard.privateKey"),
    ("v1alpha1", "machine.network.interfaces.[].vip.hcloud.apiToken"),
    ("v1alpha1", "machine.files.[].content"),
    ("v1alpha1", "machine.env.http_proxy"),
    ("v1alpha1", "machine.kubelet.extraConfig.staticPodURLHeader.Authorization.[]"),
    ("v1alpha1", "machine.somethingNew"),
    ("v1alpha1", "machine.nodeLabels"),  # a whole map in one value is not a label
    ("WireguardConfig", "privateKey"),
    ("WireguardConfig", "peers.[].presharedKey"),
    ("RegistryAuthConfig", "password"),
    ("RegistryAuthConfig", "identityToken"),
    ("RegistryTLSConfig", "clientIdentity.key"),
    ("HCloudVIPConfig", "apiToken"),
    ("SideroLinkConfig", "apiUrl"),
    ("UserVolumeConfig", "encryption.keys.[].static.passphrase"),
    ("SomeFutureConfig", "anything"),
])
def test_everything_else_is_hidden(kind, path):
    assert not is_shown(kind, tuple(_segments(path)))


def test_star_is_one_key_never_a_list_item():
    assert is_shown("v1alpha1", ("machine", "nodeLabels", "rack"))
    assert not is_shown("v1alpha1", ("machine", "nodeLabels", "[]"))
    assert not is_shown("v1alpha1", ("machine", "nodeLabels", "rack", "deeper"))


def test_a_parsed_config_keeps_its_keys_and_allowed_values():
    redactor = Redactor()
    shown = redactor.document({"machine": {"type": "worker", "token": "abcdef.0123456789abcdef",
                                           "nodeLabels": {"rack": "r1"}, "certSANs": [],
                                           "registries": {"config": {"registry.example.com": {"auth": {
                                               "password": "hunter2-registry-password"}}}}}})
    assert shown["machine"]["type"] == "worker" and shown["machine"]["nodeLabels"] == {"rack": "r1"}
    assert shown["machine"]["certSANs"] == []
    assert shown["machine"]["token"].startswith("(hidden ")
    password = shown["machine"]["registries"]["config"]["registry.example.com"]["auth"]["password"]
    assert password.startswith("(hidden ") and "hunter2" not in password
    # equal values get equal markers within one redactor, and none outside it
    assert redactor.mark("x") == redactor.mark("x") != redactor.mark("y")
    assert Redactor().mark("x") != redactor.mark("x")


# Two configs as Talos encodes them (yaml.v3, four spaces), before and after a change of secrets.
OLD = """version: v1alpha1
machine:
    type: controlplane
    token: abcdef.0123456789abcdef
    ca:
        crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t
        key: LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0t
    files:
        - content: |
            first line
            token=supersecretfilecontent
          path: /var/etc/app.conf
          op: create
    registries:
        config:
            registry.example.com:
                auth:
                    username: robot
                    password: old-registry-password
    nodeLabels:
        rack: r1
cluster:
    clusterName: lab
    secretboxEncryptionSecret: secretbox-key-material
    aescbcEncryptionSecret: aescbc-key-material
    inlineManifests:
        - name: proxmox-csi
          contents: |-
            kind: Secret
            stringData:
                token_secret: csi-token-secret
---
apiVersion: v1alpha1
kind: WireguardConfig
name: wg0
privateKey: b2xkb2xkb2xkb2xkb2xkb2xkb2xkb2xkb2xkb2xkb2w=
peers:
    - publicKey: 8ll5ELCTHvMvLzRT3B8HqwZ9rwzfFc0DRhF5ow7X1jE=
      presharedKey: b2xkc2hhcmVkb2xkc2hhcmVkb2xkc2hhcmVkb2xkcw==
      allowedIPs:
        - 10.9.0.0/24
"""
NEW = (OLD.replace("old-registry-password", "hunter2-registry-password")
       .replace("b2xkb2xkb2xkb2xkb2xkb2xkb2xkb2xkb2xkb2xkb2w=", "cGFzc3dvcmRwYXNzd29yZHBhc3N3b3JkcGFzc3dvcmQ=")
       .replace("b2xkc2hhcmVkb2xkc2hhcmVkb2xkc2hhcmVkb2xkcw==", "c2hhcmVkc2VjcmV0c2hhcmVkc2VjcmV0c2hhcmVkc2U=")
       .replace("rack: r1", "rack: r2")
       + "---\napiVersion: v1alpha1\nkind: RegistryAuthConfig\nname: ghcr.io\npassword: dXNlcjpodW50ZXIy\n"
         "identityToken: identity-token-xyz\n"
         "---\napiVersion: v1alpha1\nkind: HCloudVIPConfig\nname: 10.0.0.9\nlink: eth0\napiToken: hcloud-api-token\n")


def talos_diff(old, new):
    """The unified diff Talos' dry run prints (three lines of context, headers `--- a` and `+++ b`)."""
    return "\n".join(difflib.unified_diff(old.splitlines(), new.splitlines(), "a", "b", lineterm=""))


def test_dry_run_diff_shows_allowed_values_and_hides_the_rest():
    diff = talos_diff(OLD, NEW)
    assert all(s in diff for s in ("hunter2-registry-password", "identity-token-xyz"))  # the test is real
    shown = Redactor().dry_run_diff(diff, NEW)
    for secret in SECRETS + ("old-registry-password", "b2xkb2xkb2xk", "b2xkc2hhcmVk", "robot"):
        assert secret not in shown, secret
    assert "-        rack: r1\n+        rack: r2" in shown
    assert "+kind: RegistryAuthConfig\n+name: ghcr.io\n+password: (hidden " in shown
    assert "+name: 10.0.0.9\n+link: eth0\n+apiToken: (hidden " in shown
    assert " kind: WireguardConfig\n name: wg0\n-privateKey: (hidden " in shown
    assert "    - publicKey: 8ll5ELCTHvMvLzRT3B8HqwZ9rwzfFc0DRhF5ow7X1jE=" in shown
    assert len(shown.splitlines()) == len(diff.splitlines())  # line for line, the same diff


def test_context_lines_removed_lines_and_multi_line_values_are_placed_by_path():
    # A change next to secrets: the context lines around it carry the token, the CA key and a file's content.
    new = OLD.replace("op: create", "op: overwrite").replace("clusterName: lab", "clusterName: lab2")
    diff = talos_diff(OLD, new)
    shown = Redactor().dry_run_diff(diff, new)
    for secret in SECRETS:
        assert secret not in shown, secret
    assert "-          op: create\n+          op: overwrite" in shown
    assert "-    clusterName: lab\n+    clusterName: lab2" in shown
    assert "           path: /var/etc/app.conf" in shown
    # the literal block's lines are hidden one by one, keeping their indentation
    assert "             (hidden " in shown and "first line" not in shown
    # the removed side is placed in the node's config: a secret only the old config had is hidden too
    removed = Redactor().dry_run_diff(talos_diff(NEW, OLD), OLD)
    for secret in SECRETS:
        assert secret not in removed, secret
    assert "-kind: RegistryAuthConfig\n-name: ghcr.io\n-password: (hidden " in removed


def test_a_diff_that_does_not_fit_the_config_hides_every_value():
    diff = talos_diff(OLD, NEW)
    shown = Redactor().dry_run_diff(diff, NEW.replace("clusterName: lab", "clusterName: other"))
    for secret in SECRETS + ("rack: r2", "10.0.0.9", "eth0"):
        assert secret not in shown, secret
    assert "+        rack: (hidden " in shown and "+---" in shown
    without_config = Redactor().dry_run_diff(diff, "")
    assert "hunter2" not in without_config and "rack: r2" not in without_config
    assert "@@ -1,3 +1,3 @@ diff too large to display" in Redactor().dry_run_diff(
        "@@ -1,3 +1,3 @@ diff too large to display", NEW)


def _segments(dotted):
    """A dotted path with the dots inside label keys and registry hosts kept (those tests name them)."""
    for key in ("topology.kubernetes.io/zone", "registry.example.com", "docker.io"):
        dotted = dotted.replace(key, key.replace(".", "\0"))
    return [part.replace("\0", ".") for part in dotted.split(".")]
