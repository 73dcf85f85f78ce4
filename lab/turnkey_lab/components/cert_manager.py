"""A lab STAND-IN for cert-manager's controller (v1.21), written in Python: the real one cannot be built here.

Why a stand-in: cert-manager's controller commands are nested Go modules the Go module proxy does not serve (its
CRDs and chart are in the root module, and layer 02 installs those unchanged). docs/lab.md lists it as a stand-in.

How it comes to run (as the Flux controllers in flux.py): the component's process waits until reconcile() has
found the Talos twin's cluster and the Deployment cert-manager/cert-manager in it, asked the API server for a token
of that Deployment's ServiceAccount (TokenRequest) and written launch.json; the process then runs the control loop
below with that token only, so the chart's RBAC is exactly what it may do. Deployment gone, another cluster or
other args: the process is stopped and waits again. `--cluster-resource-namespace` and
`--enable-certificate-owner-ref` are read from the Deployment's args, as the real controller takes them.

The subset of cert-manager it implements, each once per second over everything (list, then act), with
cert-manager's names, reasons and messages (pkg/issuer, pkg/controller/certificates, internal/.../policies):
- Issuer / ClusterIssuer `Ready`: selfSigned True `IsReady`; ca True `KeyPairVerified` "Signing CA verified", or
  False `ErrGetKeyPair` "Error getting keypair for CA issuer: secret "x" not found" (or missing data, or
  `ErrInvalidKeyPair` when not a CA); acme and every other type False (`ErrRegisterACMEAccount`: the lab has no
  ACME server, nor does the stand-in speak ACME). A ClusterIssuer's Secrets live in the cluster resource namespace.
- Certificate: the trigger policy chain (DoesNotExist, MissingData, InvalidKeyPair, IncorrectIssuer,
  IncorrectCertificate, SecretMismatch for the private key, RequestChanged against the current
  CertificateRequest or SecretMismatch against the Secret's certificate, Renewing) sets `Issuing` True with its
  reason; the next private key goes to a Secret `<name>-xxxxx` labelled cert-manager.io/next-private-key
  (status.nextPrivateKeySecretName), or with rotationPolicy Never the Secret's key is kept; a CertificateRequest
  `<name>-<revision>` carries the CSR.
- CertificateRequest: approved as cert-manager's approver does, then Ready False `Pending` while its issuer is
  missing or not Ready, then signed: Ready True `Issued`, status.certificate and status.ca. One that failed or
  was denied sets the Certificate's `Issuing` False `Failed` (and lastFailureTime) until it is deleted.
- Issued: the Secret (type kubernetes.io/tls: tls.crt without a self-signed root, tls.key, ca.crt; the
  cert-manager.io annotations and the controller.cert-manager.io/fao label; secretTemplate's labels and
  annotations), status.revision, `Issuing` removed; the readiness chain sets `Ready` ("Certificate is up to date
  and has not expired") and notBefore/notAfter/renewalTime (renewBefore, renewBeforePercentage, else 1/3 of the
  lifetime); CertificateRequests older than revisionHistoryLimit (default 1) are deleted.
Not done: events, ACME, Vault/Venafi issuers, keystores, name constraints, other names, literal subjects,
renewal windows, the retry back-off, the webhook's defaulting/validation and the cainjector.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.server
import ipaddress
import json
import re
import secrets
import sys
import threading
import time
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .. import procs
from ..state import read_json
from .deployment_process import DeploymentProcess

NAMESPACE, DEPLOYMENT = "cert-manager", "cert-manager"
# The component's process (not `-m`: the package imports this module first).
MAIN = "import sys; from turnkey_lab.components.cert_manager import main; main(sys.argv[1:])"
HEALTH_PORT = 9403  # the controller's healthz port in the chart
GROUP, VERSION = "cert-manager.io", "v1"
FAO = "controller.cert-manager.io/fao"
A = "cert-manager.io/"  # annotation prefix
NEXT_KEY = A + "next-private-key"
MERGE = "application/merge-patch+json"
DEFAULT_DURATION = 90 * 24 * 3600
KEY_USAGES = {"signing": "digital_signature", "digital signature": "digital_signature",
              "content commitment": "content_commitment", "key encipherment": "key_encipherment",
              "key agreement": "key_agreement", "data encipherment": "data_encipherment", "cert sign": "key_cert_sign",
              "crl sign": "crl_sign", "encipher only": "encipher_only", "decipher only": "decipher_only"}
EKU = ExtendedKeyUsageOID
EXT_USAGES = {"server auth": EKU.SERVER_AUTH, "client auth": EKU.CLIENT_AUTH, "code signing": EKU.CODE_SIGNING,
              "email protection": EKU.EMAIL_PROTECTION, "timestamping": EKU.TIME_STAMPING,
              "ocsp signing": EKU.OCSP_SIGNING}


class CertManagerStandIn(DeploymentProcess):
    """DeploymentProcess finds the cluster and the Deployment and writes launch.json (the container's args) and a
    kubeconfig with the ServiceAccount's token; the process is this module's main() instead of a binary."""

    name = "cert-manager"
    controller = "cert-manager-stand-in"  # names its kubeconfig user and its health detail
    namespace, deployment = NAMESPACE, DEPLOYMENT
    host = "0.16"
    port = HEALTH_PORT
    ready_path = "/livez"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self.launch_file.unlink(missing_ok=True)  # reconcile() decides anew for this `lab up`

    def command(self) -> list[str]:
        return [sys.executable, "-c", MAIN, str(self.data_dir), self.ip, str(self.port)]

    def pod_env(self) -> dict[str, str]:
        return {"POD_NAMESPACE": NAMESPACE}  # the chart's fieldRef metadata.namespace

    def endpoint(self) -> dict:
        return {**super().endpoint(), "stand_in": True}

    def _controller_pid(self) -> int | None:
        """The process waits or runs the loop; stopping it either way makes it read launch.json anew."""
        return procs.live_pid(self.pid_file, self.lab.owns)


# -- the controller (the component's process) -----------------------------------------------------------------
def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds(duration: str | None, default: float = DEFAULT_DURATION) -> float:
    """A Go duration ("2160h", "1h30m0s") in seconds."""
    if not duration:
        return default
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|h|m|s)", duration))


def pem_certs(data: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(data)


def self_signed(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


def key_pem(key, encoding: str) -> bytes:
    pkcs8 = encoding == "PKCS8" or isinstance(key, ed25519.Ed25519PrivateKey)
    form = serialization.PrivateFormat.PKCS8 if pkcs8 else serialization.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


def key_violations(key, private: dict) -> list[str]:
    """pki.PrivateKeyMatchesSpec: the key's algorithm and size against spec.privateKey."""
    algorithm = private.get("algorithm") or "RSA"
    kinds = {"RSA": rsa.RSAPrivateKey, "ECDSA": ec.EllipticCurvePrivateKey, "Ed25519": ed25519.Ed25519PrivateKey}
    if not isinstance(key, kinds[algorithm]):
        return ["spec.privateKey.algorithm"]
    size = private.get("size") or {"RSA": 2048, "ECDSA": 256}.get(algorithm)
    if algorithm == "RSA" and key.key_size != size or algorithm == "ECDSA" and key.curve.key_size != size:
        return ["spec.privateKey.size"]
    return []


def new_key(private: dict):
    algorithm, size = private.get("algorithm") or "RSA", private.get("size")
    if algorithm == "ECDSA":
        return ec.generate_private_key({256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}[size or 256])
    if algorithm == "Ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=size or 2048)


def same_key(a, b) -> bool:
    """Whether two keys (public or private) are one key pair's."""
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    a, b = (k.public_key() if hasattr(k, "private_bytes") else k for k in (a, b))
    return a.public_bytes(*raw) == b.public_bytes(*raw)


def names(spec: dict) -> dict:
    """What a Certificate asks to be named, as compared with a CSR or certificate."""
    return {"spec.commonName": spec.get("commonName") or "", "spec.dnsNames": sorted(spec.get("dnsNames") or []),
            "spec.ipAddresses": sorted(str(ipaddress.ip_address(i)) for i in spec.get("ipAddresses") or []),
            "spec.uris": sorted(spec.get("uris") or []),
            "spec.emailAddresses": sorted(spec.get("emailAddresses") or [])}


def names_of(subject: x509.Name, extensions: x509.Extensions) -> dict:
    cn = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    return {"spec.commonName": cn[0].value if cn else "",
            "spec.dnsNames": sorted(san.get_values_for_type(x509.DNSName)),
            "spec.ipAddresses": sorted(str(i) for i in san.get_values_for_type(x509.IPAddress)),
            "spec.uris": sorted(san.get_values_for_type(x509.UniformResourceIdentifier)),
            "spec.emailAddresses": sorted(san.get_values_for_type(x509.RFC822Name))}


def issuer_ref(spec: dict) -> tuple[str, str, str]:
    ref = spec.get("issuerRef") or {}
    return ref.get("name", ""), ref.get("kind") or "Issuer", ref.get("group") or GROUP


def condition(obj: dict, kind: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def with_condition(obj: dict, kind: str, status: str | None, reason: str = "", message: str = "") -> list:
    """The object's conditions with `kind` set (lastTransitionTime kept while the status holds) or removed (None)."""
    old = condition(obj, kind)
    rest = [c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] != kind]
    if status is None:
        return rest
    since = old["lastTransitionTime"] if old.get("status") == status else stamp(now())
    return [*rest, {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": since,
                    "observedGeneration": obj["metadata"].get("generation", 1)}]


def changed(old: list, new: list) -> bool:
    def strip(items):
        return sorted(json.dumps(c, sort_keys=True) for c in items)
    return strip(old or []) != strip(new)


class Controller:
    def __init__(self, data_dir: Path, args: list[str]):
        """args: the Deployment's container args (launch.json); the kubeconfig DeploymentProcess writes."""
        from kubernetes import client  # noqa: PLC0415 - only the controller's process needs the client

        kubeconfig = yaml.safe_load((data_dir / "kubeconfig").read_text())
        cluster, user = kubeconfig["clusters"][0]["cluster"], kubeconfig["users"][0]["user"]
        ca_file = data_dir / "cluster-ca.crt"
        ca_file.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        config = client.Configuration()
        config.host, config.ssl_ca_cert = cluster["server"], str(ca_file)
        config.api_key_prefix["BearerToken"] = "Bearer"
        token = Path(user["tokenFile"])  # renewed by the component: read on every request

        def read_token(target) -> None:
            target.api_key["BearerToken"] = token.read_text().strip()
        read_token(config)
        config.refresh_api_key_hook = read_token
        api = client.ApiClient(config)
        self.server = cluster["server"]
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        self.ApiException, self.V1Secret = client.ApiException, client.V1Secret  # noqa: N815 - the client's classes
        # the flags of the real controller the stand-in honours (the others, e.g. leader election, have no meaning)
        flags = {}
        for arg, following in zip(args, [*args[1:], "-"], strict=True):  # --flag=value, --flag value, --flag
            if arg.startswith("-"):
                name, sep, value = arg.lstrip("-").partition("=")
                flags[name] = value if sep else (following if not following.startswith("-") else "true")
        self.cluster_namespace = flags.get("cluster-resource-namespace") or NAMESPACE
        self.owner_ref = flags.get("enable-certificate-owner-ref", "false") == "true"

    # -- API helpers ------------------------------------------------------------------------------------------
    def items(self, plural: str) -> list[dict]:
        return self.custom.list_cluster_custom_object(GROUP, VERSION, plural)["items"]

    def secret(self, namespace: str, name: str) -> dict | None:
        try:
            return self.core.read_namespaced_secret(name, namespace).to_dict()
        except self.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def data(self, secret: dict | None, key: str) -> bytes:
        return base64.b64decode(((secret or {}).get("data") or {}).get(key) or "")

    def patch_status(self, plural: str, obj: dict, status: dict) -> None:
        meta = obj["metadata"]
        if "namespace" in meta:
            self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, meta["namespace"], plural, meta["name"],
                                                              {"status": status})
        else:
            self.custom.patch_cluster_custom_object_status(GROUP, VERSION, plural, meta["name"], {"status": status})
        obj.setdefault("status", {}).update(status)

    def set_condition(self, plural: str, obj: dict, kind: str, status: str | None, reason="", message="") -> None:
        conditions = with_condition(obj, kind, status, reason, message)
        if changed((obj.get("status") or {}).get("conditions"), conditions):
            self.patch_status(plural, obj, {"conditions": conditions})

    def owner(self, obj: dict, kind: str) -> dict:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "name": obj["metadata"]["name"],
                "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    # -- issuers ---------------------------------------------------------------------------------------------
    def issuer_status(self, issuer: dict) -> tuple[str, str, str]:
        spec = issuer.get("spec") or {}
        if "selfSigned" in spec:
            return "True", "IsReady", ""
        if "ca" in spec:
            namespace = issuer["metadata"].get("namespace") or self.cluster_namespace
            name, prefix = spec["ca"].get("secretName", ""), "Error getting keypair for CA issuer: "
            found = self.secret(namespace, name)
            if found is None:
                return "False", "ErrGetKeyPair", f'{prefix}secret "{name}" not found'
            for key in ("tls.crt", "tls.key"):
                if not self.data(found, key):
                    return "False", "ErrGetKeyPair", f"{prefix}no data for \"{key}\" in secret '{namespace}/{name}'"
            try:
                constraints = pem_certs(self.data(found, "tls.crt"))[0].extensions.get_extension_for_class(
                    x509.BasicConstraints).value
                is_ca = constraints.ca
            except (ValueError, x509.ExtensionNotFound):
                is_ca = False
            if not is_ca:
                return "False", "ErrInvalidKeyPair", prefix + "certificate is not a CA"
            return "True", "KeyPairVerified", "Signing CA verified"
        if "acme" in spec:
            return ("False", "ErrRegisterACMEAccount", "Failed to register ACME account: the lab's cert-manager "
                    "stand-in does not speak ACME (and the lab reaches no ACME server); see docs/lab.md")
        return "False", "ErrInitIssuer", "the lab's cert-manager stand-in implements only selfSigned and ca issuers"

    def sync_issuers(self) -> dict:
        """Every issuer's Ready condition; returns them by (name, kind, namespace)."""
        found = {}
        for plural, kind in (("clusterissuers", "ClusterIssuer"), ("issuers", "Issuer")):
            for issuer in self.items(plural):
                self.set_condition(plural, issuer, "Ready", *self.issuer_status(issuer))
                found[issuer["metadata"]["name"], kind, issuer["metadata"].get("namespace", "")] = issuer
        return found

    # -- certificate requests ----------------------------------------------------------------------------------
    def sync_request(self, request: dict, issuers: dict) -> None:
        plural = "certificaterequests"
        if not condition(request, "Approved") and not condition(request, "Denied"):
            self.set_condition(plural, request, "Approved", "True", "cert-manager.io",
                               "Certificate request has been approved by cert-manager.io")
        if condition(request, "Approved").get("status") != "True" or condition(request, "Ready").get("reason") in (
                "Issued", "Failed", "Denied"):
            return
        spec, namespace = request["spec"], request["metadata"]["namespace"]
        name, kind, group = issuer_ref(spec)
        if group != GROUP:
            return
        issuer = issuers.get((name, kind, namespace if kind == "Issuer" else ""))
        if issuer is None:
            lower = kind.lower()
            self.set_condition(plural, request, "Ready", "False", "Pending",
                               f'Referenced "{kind}" not found: {lower}.{GROUP} "{name}" not found')
            return
        if condition(issuer, "Ready").get("status") != "True":
            self.set_condition(plural, request, "Ready", "False", "Pending",
                               "Referenced issuer does not have a Ready status condition")
            return
        csr = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
        if "selfSigned" in issuer["spec"]:
            key_name = request["metadata"].get("annotations", {}).get(A + "private-key-secret-name", "")
            signer = self.data(self.secret(namespace, key_name) if key_name else None, "tls.key")
            if not signer:
                self.set_condition(plural, request, "Ready", "False", "Pending",
                                   f"Referenced secret {namespace}/{key_name} not found")
                return
            key, chain = serialization.load_pem_private_key(signer, None), []
        else:
            home = issuer["metadata"].get("namespace") or self.cluster_namespace
            source = self.secret(home, issuer["spec"]["ca"]["secretName"])
            key = serialization.load_pem_private_key(self.data(source, "tls.key"), None)
            chain = pem_certs(self.data(source, "tls.crt"))
        cert = sign(csr, spec, key, chain[0] if chain else None)
        full = [cert, *chain]
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in full if not self_signed(c) or len(full) == 1)
        self.patch_status(plural, request, {
            "certificate": base64.b64encode(pem).decode(),
            "ca": base64.b64encode(full[-1].public_bytes(serialization.Encoding.PEM)).decode(),
            "conditions": with_condition(request, "Ready", "True", "Issued",
                                         "Certificate fetched from issuer successfully")})

    # -- certificates ------------------------------------------------------------------------------------------
    def violation(self, cert: dict, secret: dict | None, current: dict | None,
                  readiness: bool) -> tuple[str, str] | None:
        """The first failing policy of cert-manager's trigger (or readiness) chain."""
        spec, name = cert["spec"], cert["metadata"]["name"]
        if secret is None:
            return "DoesNotExist", "Issuing certificate as Secret does not exist"
        if not secret.get("data"):
            return "MissingData", "Issuing certificate as Secret does not contain any data"
        if not self.data(secret, "tls.key"):
            return "MissingData", "Issuing certificate as Secret does not contain a private key"
        if not self.data(secret, "tls.crt"):
            return "MissingData", "Issuing certificate as Secret does not contain a certificate"
        try:
            key = serialization.load_pem_private_key(self.data(secret, "tls.key"), None)
        except ValueError as exc:
            return "InvalidKeyPair", f"Issuing certificate as Secret contains invalid private key data: {exc}"
        try:
            issued = pem_certs(self.data(secret, "tls.crt"))[0]
        except ValueError as exc:
            return "InvalidCertificate", f"Issuing certificate as Secret contains an invalid certificate: {exc}"
        if not same_key(issued.public_key(), key.public_key()):
            return "InvalidKeyPair", ("Issuing certificate as Secret contains a private key that does not match the "
                                      "certificate")
        notes = secret["metadata"].get("annotations") or {}
        was = (notes.get(A + "issuer-name", ""), notes.get(A + "issuer-kind") or "Issuer",
               notes.get(A + "issuer-group") or GROUP)
        if was != issuer_ref(spec):
            return "IncorrectIssuer", 'Issuing certificate as Secret was previously issued by "%s.%s/%s"' % (
                was[1], was[2], was[0])
        if notes.get(A + "certificate-name", name) != name:
            return "IncorrectCertificate", (
                f'Secret was issued for "{notes[A + "certificate-name"]}". If this message is not transient, you might '
                "have two conflicting Certificates pointing to the same secret.")
        wrong = key_violations(key, spec.get("privateKey") or {})
        if wrong:
            return "SecretMismatch", f"Existing private key is not up to date for spec: [{' '.join(wrong)}]"
        if current is not None:
            wrong = request_violations(current, spec)
            if wrong:
                return "RequestChanged", ("Fields on existing CertificateRequest resource not up to date: "
                                          f"[{' '.join(wrong)}]")
        else:
            have, want = names_of(issued.subject, issued.extensions), names(spec)
            wrong = [k for k, v in want.items() if have[k] != v and not (k == "spec.commonName" and not v)]
            if wrong:
                return "SecretMismatch", ("Issuing certificate as Existing issued Secret is not up to date for spec: "
                                          f"[{' '.join(wrong)}]")
        if readiness and issued.not_valid_after_utc <= now():
            return "Expired", "Certificate expired on " + issued.not_valid_after_utc.strftime(
                "%a, %d %b %Y %H:%M:%S UTC")
        renewal = (cert.get("status") or {}).get("renewalTime")
        if not readiness and renewal and stamp(now()) >= renewal:
            return "Renewing", f"Renewing certificate as renewal was scheduled at {renewal}"
        return None

    def sync_certificate(self, cert: dict, requests: list[dict]) -> None:
        plural, meta, spec = "certificates", cert["metadata"], cert["spec"]
        status = cert.get("status") or {}
        namespace, revision = meta["namespace"], status.get("revision") or 0
        mine = {int(r["metadata"]["annotations"][A + "certificate-revision"]): r for r in requests
                if any(o.get("uid") == meta["uid"] for o in r["metadata"].get("ownerReferences") or [])}
        secret = self.secret(namespace, spec["secretName"])
        found = self.violation(cert, secret, mine.get(revision), readiness=False)
        # a failed or denied request stops issuance until it is deleted (no back-off timer in the stand-in)
        failed = condition(mine.get(revision + 1) or {}, "Ready").get("reason") in ("Failed", "Denied")
        if found and not failed and condition(cert, "Issuing").get("status") != "True":
            self.set_condition(plural, cert, "Issuing", "True", *found)
        if condition(cert, "Issuing").get("status") == "True":
            secret = self.issue(cert, secret, mine.get(revision + 1), revision + 1) or secret
        ready = self.violation(cert, secret, mine.get((cert.get("status") or {}).get("revision") or 0), readiness=True)
        conditions = with_condition(cert, "Ready", "False", *ready) if ready else with_condition(
            cert, "Ready", "True", "Ready", "Certificate is up to date and has not expired")
        update = {"conditions": conditions}
        if secret is not None and self.data(secret, "tls.crt"):
            issued = pem_certs(self.data(secret, "tls.crt"))[0]
            before, after = issued.not_valid_before_utc, issued.not_valid_after_utc
            lifetime = (after - before).total_seconds()
            renew = seconds(spec.get("renewBefore"), 0)
            if not 0 < renew < lifetime:
                percentage = spec.get("renewBeforePercentage") or 0
                renew = lifetime * percentage / 100 if 0 < percentage < 100 else lifetime / 3
            update.update(notBefore=stamp(before), notAfter=stamp(after),
                          renewalTime=stamp(after - datetime.timedelta(seconds=renew)))
        if any(cert.get("status", {}).get(k) != v for k, v in update.items() if k != "conditions") or changed(
                cert.get("status", {}).get("conditions"), conditions):
            self.patch_status(plural, cert, update)
        self.keep_metadata(cert, secret)
        keep = spec.get("revisionHistoryLimit") or 1
        for number, request in mine.items():
            if number <= ((cert.get("status") or {}).get("revision") or 0) - keep:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "certificaterequests",
                                                            request["metadata"]["name"])

    def issue(self, cert: dict, secret: dict | None, request: dict | None, number: int) -> dict | None:
        """Key manager, request manager and issuing controller for revision `number`; the new Secret once issued."""
        meta, spec, status = cert["metadata"], cert["spec"], cert.get("status") or {}
        namespace, private = meta["namespace"], spec.get("privateKey") or {}
        # the key manager: the next key lives in its own Secret; with rotationPolicy Never it is the Secret's key
        next_name = status.get("nextPrivateKeySecretName")
        stored = self.secret(namespace, next_name) if next_name else None
        key = serialization.load_pem_private_key(self.data(stored, "tls.key"), None) if stored else None
        wanted = key if key is not None and not key_violations(key, private) else None
        if private.get("rotationPolicy") == "Never" and self.data(secret, "tls.key"):
            kept = serialization.load_pem_private_key(self.data(secret, "tls.key"), None)
            if not key_violations(kept, private):
                wanted = kept
        if wanted is None or key is None or not same_key(wanted, key):
            if stored is not None:
                self.core.delete_namespaced_secret(next_name, namespace)
            key, next_name = wanted or new_key(private), f"{meta['name'][:52]}-{secrets.token_hex(3)[:5]}"
            self.core.create_namespaced_secret(namespace, self.V1Secret.from_dict({
                "metadata": {"name": next_name, "labels": {NEXT_KEY: "true", FAO: "true"},
                             "ownerReferences": [self.owner(cert, "Certificate")]},
                "data": {"tls.key": base64.b64encode(key_pem(key, private.get("encoding"))).decode()}}))
            self.patch_status("certificates", cert, {"nextPrivateKeySecretName": next_name})
        if request is not None:
            csr = x509.load_pem_x509_csr(base64.b64decode(request["spec"]["request"]))
            if not same_key(csr.public_key(), key.public_key()) or request_violations(request, spec):
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "certificaterequests",
                                                            request["metadata"]["name"])
                return None
        if request is None:
            body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CertificateRequest", "metadata": {
                "name": f"{meta['name']}-{number}", "namespace": namespace, "labels": meta.get("labels") or {},
                "annotations": {A + "certificate-revision": str(number), A + "private-key-secret-name": next_name,
                                A + "certificate-name": meta["name"]},
                "ownerReferences": [self.owner(cert, "Certificate")]},
                "spec": {"issuerRef": spec["issuerRef"], "isCA": bool(spec.get("isCA")),
                         "request": base64.b64encode(make_csr(spec, key)).decode(),
                         **{k: spec[k] for k in ("duration", "usages") if spec.get(k)}}}
            with contextlib.suppress(self.ApiException):  # AlreadyExists: a request made by the last round
                self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "certificaterequests", body)
            return None
        if condition(request, "Ready").get("reason") in ("Failed", "Denied"):
            self.patch_status("certificates", cert, {"lastFailureTime": stamp(now()), "conditions": with_condition(
                cert, "Issuing", "False", "Failed", "The certificate request has failed to complete and will be "
                "retried: " + condition(request, "Ready").get("message", ""))})
            return None
        if condition(request, "Ready").get("status") != "True":
            return None
        chain = base64.b64decode(request["status"]["certificate"])
        leaf = pem_certs(chain)[0]
        found = names_of(leaf.subject, leaf.extensions)
        notes = {A + "common-name": found["spec.commonName"], A + "alt-names": ",".join(found["spec.dnsNames"]),
                 A + "ip-sans": ",".join(found["spec.ipAddresses"]), A + "uri-sans": ",".join(found["spec.uris"]),
                 A + "issuer-name": issuer_ref(spec)[0], A + "issuer-kind": issuer_ref(spec)[1],
                 A + "issuer-group": issuer_ref(spec)[2], A + "certificate-name": meta["name"]}
        data = {"tls.crt": chain, "tls.key": key_pem(key, private.get("encoding")),
                "ca.crt": base64.b64decode(request["status"].get("ca") or "")}
        body = {"metadata": {"name": spec["secretName"], "namespace": namespace, **self.managed(cert, notes)},
                "type": "kubernetes.io/tls", "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
        if secret is None:
            self.core.create_namespaced_secret(namespace, self.V1Secret.from_dict(body))
        else:
            self.core.patch_namespaced_secret(spec["secretName"], namespace, body, _content_type=MERGE)
        self.patch_status("certificates", cert, {"revision": number, "nextPrivateKeySecretName": None,
                                                 "conditions": with_condition(cert, "Issuing", None)})
        if next_name:
            with contextlib.suppress(self.ApiException):
                self.core.delete_namespaced_secret(next_name, namespace)
        return self.secret(namespace, spec["secretName"])

    def managed(self, cert: dict, notes: dict) -> dict:
        """The Secret's labels, annotations (and owner) cert-manager keeps on it."""
        template = cert["spec"].get("secretTemplate") or {}
        found = {"labels": {**(template.get("labels") or {}), FAO: "true"},
                 "annotations": {**(template.get("annotations") or {}), **notes}}
        if self.owner_ref:
            found["ownerReferences"] = [self.owner(cert, "Certificate")]
        return found

    def keep_metadata(self, cert: dict, secret: dict | None) -> None:
        """secretTemplate edits land on the issued Secret without a new certificate, as the post-issuance chain does."""
        if secret is None or not (secret["metadata"].get("annotations") or {}).get(A + "certificate-name"):
            return
        meta = secret["metadata"]
        want = self.managed(cert, {})
        if any((meta.get(part) or {}).get(k) != v for part in ("labels", "annotations") for k, v in want[part].items()):
            self.core.patch_namespaced_secret(meta["name"], meta["namespace"], {"metadata": want}, _content_type=MERGE)

    def sync(self) -> None:
        issuers = self.sync_issuers()
        for request in self.items("certificaterequests"):
            self.guard(self.sync_request, request, issuers)
        requests = self.items("certificaterequests")
        for cert in self.items("certificates"):
            self.guard(self.sync_certificate, cert, requests)

    def guard(self, step, obj: dict, *args) -> None:
        try:
            step(obj, *args)
        except (self.ApiException, ValueError, KeyError) as exc:  # one object's trouble must not stop the others
            meta = obj["metadata"]
            print(f"cert-manager stand-in: {obj['kind']} {meta.get('namespace', '')}/{meta['name']}: {exc}",
                  file=sys.stderr, flush=True)


def request_violations(request: dict, spec: dict) -> list[str]:
    """pki.RequestMatchesSpec: the fields of a CertificateRequest (and its CSR) that no longer match the spec."""
    csr = x509.load_pem_x509_csr(base64.b64decode(request["spec"]["request"]))
    asked, rspec = names_of(csr.subject, csr.extensions), request["spec"]
    wrong = [k for k, v in names(spec).items() if asked[k] != v]
    return wrong + [field for field, same in (
        ("spec.duration", seconds(rspec.get("duration")) == seconds(spec.get("duration"))),
        ("spec.isCA", bool(rspec.get("isCA")) == bool(spec.get("isCA"))),
        ("spec.usages", sorted(rspec.get("usages") or []) == sorted(spec.get("usages") or [])),
        ("spec.issuerRef", issuer_ref(rspec) == issuer_ref(spec))) if not same]


def make_csr(spec: dict, key) -> bytes:
    wanted = names(spec)
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, wanted["spec.commonName"])] if wanted["spec.commonName"] else []
    organizations = (spec.get("subject") or {}).get("organizations") or []
    subject += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    sans = [x509.DNSName(n) for n in wanted["spec.dnsNames"]] + [x509.IPAddress(ipaddress.ip_address(i)) for i in
                                                                  wanted["spec.ipAddresses"]]
    sans += [x509.UniformResourceIdentifier(u) for u in wanted["spec.uris"]] + [x509.RFC822Name(e) for e in
                                                                               wanted["spec.emailAddresses"]]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=not subject)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def sign(csr: x509.CertificateSigningRequest, spec: dict, key, parent: x509.Certificate | None) -> x509.Certificate:
    """pki.CertificateTemplateFromCSR and SignCertificate: the CSR's names, the request's duration, isCA and usages."""
    usages = spec.get("usages") or ["digital signature", "key encipherment"]
    flags = {name: False for name in set(KEY_USAGES.values())}
    flags.update({KEY_USAGES[u]: True for u in usages if u in KEY_USAGES})
    flags["key_cert_sign"] = flags["key_cert_sign"] or bool(spec.get("isCA"))
    start = now()
    end = start + datetime.timedelta(seconds=seconds(spec.get("duration")))
    builder = (x509.CertificateBuilder().subject_name(csr.subject).public_key(csr.public_key())
               .issuer_name(parent.subject if parent else csr.subject).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.KeyUsage(**flags), critical=True)
               .add_extension(x509.BasicConstraints(ca=bool(spec.get("isCA")), path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False))
    extended = [EXT_USAGES[u] for u in usages if u in EXT_USAGES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if parent is not None:
        authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.public_key())
        builder = builder.add_extension(authority, critical=False)
    for extension in csr.extensions:
        if isinstance(extension.value, x509.SubjectAlternativeName):
            builder = builder.add_extension(extension.value, critical=extension.critical)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def serve_health(ip: str, port: int, last_sync: list[float]) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            fresh = time.monotonic() - last_sync[0] < 30
            self.send_response(200 if fresh and self.path in ("/livez", "/readyz") else 503)
            self.end_headers()
            self.wfile.write(b"ok\n" if fresh else b"no successful sync in 30 s\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((ip, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main(argv: list[str]) -> None:
    data_dir, ip, port = Path(argv[0]), argv[1], int(argv[2])
    launch_file = data_dir / "launch.json"
    while not launch_file.is_file():  # waiting: no cluster, or cert-manager is not installed
        time.sleep(1)
    launch = json.loads(launch_file.read_text())
    controller, last_sync = Controller(data_dir, launch["args"]), [time.monotonic()]
    serve_health(ip, port, last_sync)
    print(f"cert-manager stand-in: running against {controller.server} as the Deployment's ServiceAccount, "
          f"cluster resource namespace {controller.cluster_namespace}", flush=True)
    while read_json(launch_file) == launch:  # changed or gone: exit, the supervisor starts the waiting again
        try:
            controller.sync()
            last_sync[0] = time.monotonic()
        except (controller.ApiException, OSError) as exc:
            print(f"cert-manager stand-in: {exc}", file=sys.stderr, flush=True)
        time.sleep(1)

