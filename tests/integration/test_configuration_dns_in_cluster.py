"""Layer 03 with PowerDNS in the cluster (dns.deploy in_cluster): the API is reached over TLS, verified with the CA the
cluster holds for it (Secret dns/powerdns-api-tls, which cert-manager makes in a real cluster), read over the admin
kubeconfig from the real kube-apiserver. The lab's real PowerDNS stands in for the pod, and a TLS front on loopback
(tests/tls_front.py) for the pod's ghostunnel. Without that Secret the run stops before PowerDNS is touched; a CA
that did not sign the front's certificate is refused; cert-manager's updates may come from the pods' network."""

from __future__ import annotations

import subprocess

import pytest
import requests
import yaml

from tests.integration.cluster.conftest import control_plane  # noqa: F401 # pylint: disable=unused-import
from tests.integration.platform_tree.conftest import test_ca as another_ca
from tests.lab.test_lab_pdns import require_pdns
from tests.playbook_runner import copy_inventory, recap, run_playbook
from tests.tls_front import tls_front

pytestmark = pytest.mark.lab

NET = "127.131"
FRONT = f"{NET}.0.50"
ZONE = "lab.turnkey.test"
POD_CIDR = "10.244.0.0/16"


def certificates(handle, folder, address):
    """(cert, key) of the front, for address, signed by the lab's CA, and two CAs as PEM: that one (the cluster's CA
    in this test) and another that signed nothing here."""
    from turnkey_lab import pki  # noqa: PLC0415
    from turnkey_lab.state import Lab  # noqa: PLC0415

    cert, key = pki.ensure_server_cert(Lab.at(handle.root, handle.net), "powerdns-api-front", address)
    cas = {"cluster-ca": (handle.root / "pki" / "ca.pem").read_text(), "other-ca": another_ca(folder).read_text()}
    return cert, key, cas


def kubectl(found, kubeconfig, *args, stdin=None):
    done = subprocess.run([found["TURNKEY_KUBECTL"], "--kubeconfig", str(kubeconfig), *args], input=stdin,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def put_api_certificate(found, kubeconfig, ca, cert, key):
    """Secret dns/powerdns-api-tls as cert-manager makes it: tls.crt, tls.key and the issuing CA's ca.crt."""
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": "powerdns-api-tls", "namespace": "dns"},
              "stringData": {"tls.crt": cert.read_text(), "tls.key": key.read_text(), "ca.crt": ca}}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dns"}}
    kubectl(found, kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "-",
            stdin=yaml.safe_dump_all([namespace, secret]))


def test_layer_03_reaches_powerdns_in_the_cluster_over_tls_it_verifies_with_the_clusters_ca(
        make_lab, control_plane, tmp_path):  # noqa: F811
    require_pdns()
    kubeconfig, found = control_plane
    handle = make_lab(NET)
    handle.run("up", "--profile", "fast", "--components", "pdns")
    pdns = handle.json("endpoints.json")["components"]["pdns"]
    key = handle.json("credentials.json")["pdns"]["api_key"]
    cert, cert_key, pem = certificates(handle, tmp_path, FRONT)
    with tls_front(FRONT, 8443, cert, cert_key, pdns["api_url"]) as url:
        inventory = copy_inventory(tmp_path, "lab", {"set": {
            "platform_tree_acme": True,  # the ACME issuer on: cert-manager's updates, from the pods' network too
            "talos_cluster_kubeconfig": str(kubeconfig),
            "sso_apps": [], "sso_users": [],
            "dns": {"zone": ZONE, "deploy": "in_cluster", "api_url": url, "api_key": key, "validate_certs": True,
                    "nameservers": [{"name": "ns1." + ZONE, "address": "127.2.3.3"}], "records": []}},
            "unset": ["dns.secondary"]})
        state = tmp_path / "state"
        env = {"TURNKEY_LAB_DIR": str(handle.root), "TURNKEY_STATE_DIR": str(state)}
        # Layer 00's key of cert-manager's updates (the rest of the store plays no part here).
        layer00 = tmp_path / "layer00.yml"
        layer00.write_text(yaml.safe_dump([{"name": "layer 00", "hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "The ACME DNS-01 key", "turnkey.cluster.persistent_secret": {
                "name": "acme_dns01_tsig", "type": "token", "length": 64, "store_path": "{{ secrets_store.path }}",
                "vault_password_file": "{{ secrets_store.vault_password_file }}"}}]}]))
        made = run_playbook("-i", str(inventory), playbook=str(layer00), env=env)
        assert made.returncode == 0, made.stdout[-3000:]

        def configure():
            run = run_playbook("-i", str(inventory), "--tags", "configuration",
                               playbook="playbooks/03-configuration.yml", env=env, timeout=600)
            assert key not in run.stdout + run.stderr
            return run

        def zone_exists():
            answer = requests.get(f"{pdns['api_url']}/api/v1/servers/localhost/zones/{ZONE}.",
                                  headers={"X-API-Key": key}, timeout=10)
            return answer.status_code == 200

        # No certificate in the cluster yet: stop, naming the Secret and the layer that makes it; PowerDNS untouched.
        missing = configure()
        assert missing.returncode != 0
        assert "Secret dns/powerdns-api-tls" in missing.stdout and "--tags services" in missing.stdout, \
            missing.stdout[-3000:]
        assert not zone_exists()

        # A CA in the cluster that did not sign the front's certificate: TLS verification refuses the API.
        put_api_certificate(found, kubeconfig, pem["other-ca"], cert, cert_key)
        refused = configure()
        assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stdout, refused.stdout[-3000:]
        assert not zone_exists()

        # The CA that signed it: the zone is made over verified TLS; the CA is kept in the state folder.
        put_api_certificate(found, kubeconfig, pem["cluster-ca"], cert, cert_key)
        first = configure()
        assert first.returncode == 0, first.stdout[-3000:]
        assert zone_exists()
        assert (state / "dns-ca.pem").read_text() == pem["cluster-ca"]
        metadata = requests.get(f"{pdns['api_url']}/api/v1/servers/localhost/zones/{ZONE}./metadata/"
                                "ALLOW-DNSUPDATE-FROM", headers={"X-API-Key": key}, timeout=10).json()
        # With PowerDNS in the cluster, cert-manager's pod reaches its Service from the pod's own address.
        assert POD_CIDR in metadata["metadata"] and "127.2.0.0/16" in metadata["metadata"], metadata

        again = configure()
        assert again.returncode == 0 and recap(again.stdout)["localhost"]["changed"] == 0, again.stdout[-3000:]
