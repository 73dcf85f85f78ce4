"""The lab's kube-apiserver without admission webhooks, and the cert-manager stand-in (lab/turnkey_lab/components/
cert_manager.py) against it.

One cluster made by the Talos node twin (a real etcd + kube-apiserver behind `talosctl bootstrap`, no controller
manager or KWOK: nothing here needs pods to run), its state folder inside the lab's, where the lab's components find
it. cert-manager is the real chart v1.21.1 from its Go module, rendered with `helm template` and applied as it is
(CRDs, Deployment, ServiceAccount, RBAC, and its validating and mutating webhooks with failurePolicy Fail); the
platform tree's own issuers and certificates (k8s/) are what it issues. Lab net 127.108.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.cluster.conftest import control_plane  # noqa: F401  # pylint: disable=unused-import
from tests.lab.test_lab_flux import Cluster, condition, supervised
from tests.lab.test_talos_twin import Twin, run, talosctl, twin_binary  # noqa: F401  # pylint: disable=unused-import
from tests.lab.test_talos_twin_cluster import node_config
from tests.tools import TOOLS_ENV, built_tools

from .conftest import wait_for

NET = "127.108"
NODE = NET + ".1.1"
ENDPOINT = "https://%s.1.100:6443" % NET
REPO = Path(__file__).resolve().parents[2]
# the chart layer 02 installs: the version the lab chart repository packages (tools/versions.env)
CERT_MANAGER = "github.com/cert-manager/cert-manager@" + re.search(
    r"^LAB_CHART_CERT_MANAGER_VERSION=(\S+)$", (REPO / "tools" / "versions.env").read_text(), re.M).group(1)
TREE = {"cluster_name": "lab", "cluster_domain": "lab.example", "ingress_issuer": "cluster-ca",
        "acme_server": "https://acme.lab.invalid/directory", "acme_email": "ops@lab.example",
        "acme_dns01_nameserver": "127.0.0.1:53"}


def chart_folder() -> Path:
    """cert-manager's chart as its Go module holds it (`go mod download`, into the tools' module cache)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(go, os.X_OK):
        pytest.fail("go is not installed: it fetches cert-manager's module (its chart and CRDs)", pytrace=False)
    env = {**os.environ, "GOMODCACHE": str(TOOLS_ENV.parent.parent / "go" / "mod"), "GOWORK": "off",
           "GOFLAGS": "-modcacherw"}
    with tempfile.TemporaryDirectory() as empty:  # outside any module
        done = subprocess.run([go, "mod", "download", "-json", CERT_MANAGER], cwd=empty, env=env, capture_output=True,
                              text=True, check=False)
    info = json.loads(done.stdout or "{}")
    assert done.returncode == 0 and not info.get("Error"), done.stdout + done.stderr
    return Path(info["Dir"]) / "deploy" / "charts" / "cert-manager"


def tree_documents(relative: str) -> list[dict]:
    """A file of the platform tree with the cluster settings substituted, as Flux's post-build does."""
    text = (REPO / "k8s" / relative).read_text()
    for key, value in TREE.items():
        text = text.replace("${%s}" % key, value)
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def lab_cluster(twin_binary, talosctl, tmp_path_factory):  # noqa: F811
    """(lab root, Cluster): the twin's cluster, its state where the lab's components look for it."""
    tools = built_tools("TURNKEY_ETCD", "TURNKEY_KUBE_APISERVER", "TURNKEY_KUBECTL", "TURNKEY_HELM")
    root = tmp_path_factory.mktemp("lab") / "state"
    twin_root = root / "components" / "talos"
    twin_root.mkdir(parents=True)
    gen = root.parent / "gen"
    run(talosctl, "gen", "config", "certs", ENDPOINT, "-o", str(gen), "--with-docs=false", "--with-examples=false")
    twin = Twin(twin_binary, twin_root, {"cp1": NODE})
    twin.extra_args = ["--etcd", tools["TURNKEY_ETCD"], "--kube-apiserver", tools["TURNKEY_KUBE_APISERVER"]]
    twin.start(NODE)
    try:
        run(talosctl, "apply-config", "--insecure", "-n", NODE, "-e", NODE, "-f", str(node_config(gen, "cp1")))
        talosconfig = str(gen / "talosconfig")
        run(talosctl, "--talosconfig", talosconfig, "-n", NODE, "-e", NODE, "bootstrap")
        kubeconfig = root.parent / "kubeconfig"
        run(talosctl, "--talosconfig", talosconfig, "-n", NODE, "-e", NODE, "kubeconfig", str(kubeconfig), "--force",
            "--merge=false")
        cluster = Cluster(kubeconfig, tools["TURNKEY_KUBECTL"])
        wait_for(lambda: cluster.run("get", "namespace", "kube-system", ok=False).returncode == 0, 120, 1)
        yield root, cluster, tools
    finally:
        twin.stop()


def webhook_trap(cluster: Cluster, name: str) -> None:
    """A validating and a mutating webhook with failurePolicy Fail on ConfigMaps, behind a Service with no
    endpoints: an API server that calls webhooks refuses every ConfigMap create in the namespace."""
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"trap": name}}})
    cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nobody", "namespace": name},
                   "spec": {"ports": [{"port": 443, "targetPort": 10250}], "selector": {"app": "nobody"}}})
    hook = {"name": "trap.lab.example", "failurePolicy": "Fail", "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "namespaceSelector": {"matchLabels": {"trap": name}},
            "clientConfig": {"service": {"name": "nobody", "namespace": name, "path": "/check"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["configmaps"]}]}
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        cluster.apply({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
                       "metadata": {"name": "%s-%s" % (name, kind.lower())}, "webhooks": [hook]})


def create_configmap(cluster: Cluster, namespace: str):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe", "namespace": namespace},
            "data": {"a": "b"}}
    return cluster.run("create", "-f", "-", stdin=yaml.safe_dump(body), ok=False)


def test_lab_api_server_calls_no_admission_webhooks(lab_cluster, control_plane):  # noqa: F811
    _root, cluster, tools = lab_cluster
    # a plain kube-apiserver (webhooks on, as on a real cluster): the unreachable webhook refuses the object
    plain = Cluster(control_plane[0], tools["TURNKEY_KUBECTL"])
    webhook_trap(plain, "trap-plain")
    refused = create_configmap(plain, "trap-plain")
    assert refused.returncode != 0 and "failed calling webhook" in refused.stderr, refused.stderr
    # the lab's (the Talos twin passes --disable-admission-plugins): the same webhooks are stored, never called
    webhook_trap(cluster, "trap-lab")
    created = create_configmap(cluster, "trap-lab")
    assert created.returncode == 0, created.stderr
    assert cluster.get("validatingwebhookconfiguration", "trap-lab-validatingwebhookconfiguration")


def install_chart(cluster: Cluster, helm: str) -> list[dict]:
    rendered = subprocess.run([helm, "template", "cert-manager", str(chart_folder()), "--namespace", "cert-manager",
                               "--set", "crds.enabled=true"], capture_output=True, text=True, check=True).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    crds = [d for d in documents if d["kind"] == "CustomResourceDefinition"]
    for crd in crds:
        cluster.apply(crd)
    for crd in crds:
        cluster.run("wait", "--for=condition=Established", "--timeout=60s", "crd/" + crd["metadata"]["name"])
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cert-manager"}})
    # everything else but the startupapicheck Job (a Helm hook that needs a pod network to reach the webhook)
    for document in documents:
        if document["kind"] not in ("CustomResourceDefinition", "Job"):
            cluster.apply(document)
    return documents


def ready(cluster: Cluster, *args: str, status: tuple[str, ...] = ("True", "False")) -> dict:
    """The object's Ready condition once it has one with a status (one of `status`)."""
    def check():
        found = condition(cluster.get(*args))
        return found if found.get("status") in status else None
    return wait_for(check, 120, 0.5)


def secret_data(cluster: Cluster, namespace: str, name: str) -> dict[str, bytes]:
    secret = cluster.get("secret", name, "-n", namespace)
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def test_cert_manager_stand_in_issues_the_trees_internal_ca(lab_cluster, make_lab, tmp_path):
    root, cluster, tools = lab_cluster
    lab = make_lab(NET)
    lab.root = root  # the folder that already holds the twin's cluster
    lab.run("up", "--components", "cert-manager")
    assert lab.status()["components"]["cert-manager"]["healthy"]
    wait_for(lambda: "not installed" in supervised(lab)["cert-manager"]["detail"], 30)

    documents = install_chart(cluster, tools["TURNKEY_HELM"])
    webhooks = [d for d in documents if d["kind"].endswith("WebhookConfiguration")]
    assert {w["failurePolicy"] for d in webhooks for w in d["webhooks"]} == {"Fail"}  # stored, never called
    wait_for(lambda: supervised(lab)["cert-manager"]["detail"] == "cert-manager-stand-in ready", 60, 0.5)
    # it acts as the chart's ServiceAccount, with the chart's RBAC
    kubeconfig = root / "components" / "cert-manager" / "kubeconfig"
    whoami = json.loads(cluster.run("auth", "whoami", "-o", "json", kubeconfig=kubeconfig).stdout)
    assert whoami["status"]["userInfo"]["username"] == "system:serviceaccount:cert-manager:cert-manager"
    assert cluster.run("auth", "can-i", "create", "deployments", "-n", "default", kubeconfig=kubeconfig,
                       ok=False).stdout.strip() == "no"

    # the CRD schemas still validate what the webhook would have (an issuerRef is required)
    bad = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
           "metadata": {"name": "bad", "namespace": "default"}, "spec": {"secretName": "bad"}}
    refused = cluster.run("create", "-f", "-", stdin=yaml.safe_dump(bad), ok=False)
    assert refused.returncode != 0 and "issuerRef" in refused.stderr, refused.stderr

    # the CA issuer before its root exists: not Ready, with cert-manager's words
    (ca_issuer,) = tree_documents("platform/cert-manager-issuers/cluster-issuer.yaml")
    cluster.apply(ca_issuer)
    early = ready(cluster, "clusterissuer", "cluster-ca")
    assert (early["status"], early["reason"]) == ("False", "ErrGetKeyPair"), early
    assert early["message"] == 'Error getting keypair for CA issuer: secret "cluster-ca" not found'

    # the tree's chain: self-signed bootstrap issuer -> root CA Certificate -> CA ClusterIssuer -> leaf
    for relative in ("platform/cert-manager-issuers/bootstrap-issuer.yaml",
                     "platform/cert-manager-issuers/root-certificate.yaml"):
        for document in tree_documents(relative):
            cluster.apply(document)
    assert ready(cluster, "clusterissuer", "cluster-ca-bootstrap")["reason"] == "IsReady"
    wait_for(lambda: condition(cluster.get("clusterissuer", "cluster-ca")).get("status") == "True", 120, 0.5)
    assert condition(cluster.get("clusterissuer", "cluster-ca"))["message"] == "Signing CA verified"
    root_status = wait_for(lambda: condition(cluster.get("certificate", "cluster-ca", "-n", "cert-manager")).get(
        "status") == "True" and cluster.get("certificate", "cluster-ca", "-n", "cert-manager")["status"], 120, 0.5)
    assert root_status["revision"] == 1 and condition({"status": root_status})["message"] == (
        "Certificate is up to date and has not expired")
    root_files = secret_data(cluster, "cert-manager", "cluster-ca")
    root_cert = x509.load_pem_x509_certificate(root_files["tls.crt"])
    assert root_files["ca.crt"] == root_files["tls.crt"]
    assert root_cert.subject == root_cert.issuer and root_cert.extensions.get_extension_for_class(
        x509.BasicConstraints).value.ca
    assert root_cert.subject.rfc4514_string() == "CN=lab internal CA"
    assert (root_cert.not_valid_after_utc - root_cert.not_valid_before_utc).total_seconds() == 87600 * 3600
    root_key = root_cert.public_key()
    assert isinstance(root_key, ec.EllipticCurvePublicKey) and root_key.curve.key_size == 384
    assert root_status["renewalTime"] < root_status["notAfter"]

    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vault"}})
    (leaf,) = tree_documents("platform/vault/certificate.yaml")
    cluster.apply(leaf)
    ready(cluster, "certificate", "vault-tls", "-n", "vault", status=("True",))
    secret = cluster.get("secret", "vault-tls", "-n", "vault")
    assert secret["type"] == "kubernetes.io/tls"
    notes = secret["metadata"]["annotations"]
    assert notes["cert-manager.io/issuer-name"] == "cluster-ca"
    assert notes["cert-manager.io/issuer-kind"] == "ClusterIssuer"
    assert notes["cert-manager.io/certificate-name"] == "vault-tls" and notes["cert-manager.io/ip-sans"] == "127.0.0.1"
    assert secret["metadata"]["labels"]["controller.cert-manager.io/fao"] == "true"
    files = secret_data(cluster, "vault", "vault-tls")
    assert files["ca.crt"] == root_files["tls.crt"]  # the root, kept out of tls.crt as cert-manager does
    chain = x509.load_pem_x509_certificates(files["tls.crt"])
    assert len(chain) == 1
    chain[0].verify_directly_issued_by(root_cert)
    (tmp_path / "ca.crt").write_bytes(files["ca.crt"])
    (tmp_path / "tls.crt").write_bytes(files["tls.crt"])
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to verify the chain"
    verified = subprocess.run([openssl, "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt")],
                              capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    sans = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(leaf["spec"]["dnsNames"])
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert not chain[0].extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    request = cluster.get("certificaterequest", "vault-tls-1", "-n", "vault")
    assert condition(request, "Approved")["reason"] == "cert-manager.io"
    assert condition(request)["reason"] == "Issued"

    # a Certificate on a missing issuer stays not Ready, as with cert-manager
    orphan = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
              "metadata": {"name": "orphan", "namespace": "vault"},
              "spec": {"secretName": "orphan", "dnsNames": ["orphan.lab.example"],
                       "issuerRef": {"kind": "ClusterIssuer", "name": "nope", "group": "cert-manager.io"}}}
    cluster.apply(orphan)
    pending = wait_for(lambda: condition(cluster.get("certificaterequest", "orphan-1", "-n", "vault")), 120, 0.5)
    assert (pending["status"], pending["reason"]) == ("False", "Pending"), pending
    assert pending["message"] == 'Referenced "ClusterIssuer" not found: clusterissuer.cert-manager.io "nope" not found'
    stuck = cluster.get("certificate", "orphan", "-n", "vault")
    assert (condition(stuck)["status"], condition(stuck)["reason"]) == ("False", "DoesNotExist")
    assert condition(stuck, "Issuing")["status"] == "True"
    assert cluster.get("secret", "orphan", "-n", "vault") is None
    # its request failed (as an issuer would mark it): issuance stops with cert-manager's words, and stays stopped
    cluster.run("patch", "certificaterequest", "orphan-1", "-n", "vault", "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"conditions": [
                    condition(cluster.get("certificaterequest", "orphan-1", "-n", "vault"), "Approved"),
                    {"type": "Ready", "status": "False", "reason": "Failed", "message": "lab: signing refused",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))

    def failed():
        status = cluster.get("certificate", "orphan", "-n", "vault")["status"]
        return condition({"status": status}, "Issuing").get("reason") == "Failed" and status
    status = wait_for(failed, 60, 0.5)
    assert condition({"status": status}, "Issuing")["message"] == (
        "The certificate request has failed to complete and will be retried: lab: signing refused")
    assert status["lastFailureTime"] and condition({"status": status})["status"] == "False"
    time.sleep(3)  # a few rounds of the stand-in: no new attempt behind the failed request
    assert failed()
    # ACME: the lab has none, and says so
    (acme,) = tree_documents("platform/cert-manager-acme/clusterissuer.yaml")
    cluster.apply(acme)
    acme_ready = ready(cluster, "clusterissuer", "acme")
    assert (acme_ready["status"], acme_ready["reason"]) == ("False", "ErrRegisterACMEAccount")
    assert "ACME" in acme_ready["message"]
    # ... and a Certificate on an issuer that is not Ready waits on it, never issued
    on_acme = {"kind": "ClusterIssuer", "name": "acme"}
    cluster.apply({**orphan, "metadata": {"name": "public", "namespace": "vault"},
                   "spec": {**orphan["spec"], "secretName": "public", "issuerRef": on_acme}})
    waiting = wait_for(lambda: condition(cluster.get("certificaterequest", "public-1", "-n", "vault")), 120, 0.5)
    assert waiting["reason"] == "Pending", waiting
    assert waiting["message"] == "Referenced issuer does not have a Ready status condition"
    assert condition(cluster.get("certificate", "public", "-n", "vault"))["status"] == "False"

    # the Secret deleted: issued again (a new certificate, revision 2)
    cluster.run("delete", "secret", "vault-tls", "-n", "vault")

    def revision(name: str, namespace: str, number: int):
        cert = cluster.get("certificate", name, "-n", namespace)
        status = (cert or {}).get("status") or {}
        return status.get("revision") == number and condition(cert).get("status") == "True" and status
    wait_for(lambda: revision("vault-tls", "vault", 2), 120, 0.5)
    again = x509.load_pem_x509_certificate(secret_data(cluster, "vault", "vault-tls")["tls.crt"])
    assert again.serial_number != chain[0].serial_number
    assert cluster.get("certificaterequest", "vault-tls-1", "-n", "vault") is None  # revisionHistoryLimit 1

    # the spec changed: issued again with the new name
    cluster.run("patch", "certificate", "vault-tls", "-n", "vault", "--type=json", "-p",
                json.dumps([{"op": "add", "path": "/spec/dnsNames/-", "value": "extra.lab.example"}]))
    wait_for(lambda: revision("vault-tls", "vault", 3), 120, 0.5)
    third = x509.load_pem_x509_certificate(secret_data(cluster, "vault", "vault-tls")["tls.crt"])
    assert "extra.lab.example" in third.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.DNSName)

    # renewal: at renewalTime (notAfter - renewBefore) a new certificate replaces the current one
    short = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
             "metadata": {"name": "short", "namespace": "vault"},
             "spec": {"secretName": "short", "dnsNames": ["short.lab.example"], "duration": "40s",
                      "renewBefore": "30s", "issuerRef": {"kind": "ClusterIssuer", "name": "cluster-ca"}}}
    cluster.apply(short)
    first = wait_for(lambda: revision("short", "vault", 1), 120, 0.5)
    assert first["renewalTime"] == (datetime.datetime.fromisoformat(first["notAfter"]) - datetime.timedelta(
        seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    wait_for(lambda: revision("short", "vault", 2), 120, 0.5)
    cluster.run("delete", "certificate", "short", "-n", "vault")

    # the root's rotationPolicy Never: reissued for a new duration, with the same key
    cluster.run("patch", "certificate", "cluster-ca", "-n", "cert-manager", "--type=merge", "-p",
                json.dumps({"spec": {"duration": "87601h"}}))
    wait_for(lambda: revision("cluster-ca", "cert-manager", 2), 120, 0.5)
    renewed = x509.load_pem_x509_certificate(secret_data(cluster, "cert-manager", "cluster-ca")["tls.crt"])
    assert renewed.serial_number != root_cert.serial_number and renewed.public_key() == root_key

    # secretTemplate lands on the Secret without a new certificate
    cluster.run("patch", "certificate", "vault-tls", "-n", "vault", "--type=merge", "-p",
                json.dumps({"spec": {"secretTemplate": {"labels": {"team": "platform"},
                                                        "annotations": {"note": "lab"}}}}))

    def templated():
        meta = cluster.get("secret", "vault-tls", "-n", "vault")["metadata"]
        return meta.get("labels", {}).get("team") == "platform" and meta["annotations"].get("note") == "lab"
    wait_for(templated, 60, 0.5)
    assert cluster.get("certificate", "vault-tls", "-n", "vault")["status"]["revision"] == 3

    # the Deployment gone: the stand-in waits again
    cluster.run("delete", "deployment", "cert-manager", "-n", "cert-manager")
    wait_for(lambda: "not installed" in supervised(lab)["cert-manager"]["detail"], 60, 0.5)
    log = (root / "logs" / "cert-manager.log").read_text()
    assert "Traceback" not in log, log[-3000:]
