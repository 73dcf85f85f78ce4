# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The persistent store of layer 00: one ansible-vault encrypted YAML file per secret.

Controller-side only (the action and lookup plugins use it). The files are safe to commit; what keeps
them safe is the vault password, which never enters the store, a task result or a log.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import re
import secrets
import string
import subprocess
import tempfile
import time

import yaml
from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.parsing.vault import AnsibleVaultError, VaultLib, VaultSecret

from ansible_collections.turnkey.cluster.plugins.module_utils.talosctl import NOT_FOUND as TALOSCTL_NOT_FOUND
from ansible_collections.turnkey.cluster.plugins.module_utils.talosctl import locate_talosctl
from ansible_collections.turnkey.cluster.plugins.plugin_utils.private_files import write_private_file

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    from cryptography.x509.oid import NameOID
except ImportError:  # reported when a secret is generated, not at import time
    x509 = None

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# "provided": issued by an API (a Proxmox token's secret), handed in once by the task, never generated here.
# "talos_secrets": the cluster's Talos secrets bundle, made by the real talosctl (its CAs, tokens, keys).
SECRET_TYPES = ("sealed_secrets_keypair", "ssh_ed25519", "token", "provided", "talos_secrets")
TOKEN_ALPHABET = string.ascii_letters + string.digits
SUFFIX = ".vault.yml"
BACKUP_DIR = ".backup"
# Held while a secret is read, generated and written, so two runs at once keep one secret, not two.
LOCK_FILE = ".lock"
LOCK_WAIT_SECONDS = 600


class StoreError(AnsibleError):
    pass


def resolve_password(vault_password_file=None, vault_password_env=None, environ=None):
    """The operator names where the password lives: an environment variable wins over a file."""
    environ = os.environ if environ is None else environ
    if vault_password_env and environ.get(vault_password_env):
        return environ[vault_password_env].strip()
    if vault_password_file:
        path = os.path.expanduser(vault_password_file)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                password = to_text(handle.read()).strip()
            if password:
                return password
            raise StoreError("the vault password file %s is empty" % path)
    raise StoreError("no vault password for the persistent store: set secrets_store.vault_password_env to a "
                     "variable that is exported, or secrets_store.vault_password_file to an existing file")


def utcnow():
    return datetime.datetime.now(datetime.UTC)


def _stamp(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    def __init__(self, path, password):
        self.path = os.path.abspath(os.path.expanduser(path))
        self._vault = VaultLib([("default", VaultSecret(to_bytes(password)))])

    def file_of(self, name):
        if not NAME.match(name):
            raise StoreError("secret name %r: use lower-case letters, digits, '_' and '-'" % name)
        return os.path.join(self.path, name + SUFFIX)

    def read(self, name):
        """The stored record, or None when the secret does not exist yet."""
        path = self.file_of(name)
        return self.read_file(path) if os.path.exists(path) else None

    def read_file(self, path):
        """Decrypts one store file (a current secret or a backup)."""
        with open(path, "rb") as handle:
            blob = handle.read()
        try:
            plain = self._vault.decrypt(blob)
        except AnsibleVaultError as exc:
            raise StoreError("cannot decrypt %s (is it the right vault password?): %s" % (path, exc)) from None
        return yaml.safe_load(plain)

    @contextlib.contextmanager
    def locked(self, wait_seconds=LOCK_WAIT_SECONDS):
        """Exclusive lock on the store (flock on .lock in its folder); the kernel drops it if the run dies."""
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        lock_path = os.path.join(self.path, LOCK_FILE)
        handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreError("another run has held the store's lock %s for %d seconds; let it finish "
                                         "(or end it) and run again" % (lock_path, wait_seconds)) from None
                    time.sleep(0.2)
            yield
        finally:
            os.close(handle)

    def write(self, name, record):
        """Atomic replace; the previous version (still encrypted) goes to .backup/. Returns the backup path."""
        path = self.file_of(name)
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        backup = None
        if os.path.exists(path):
            backup_dir = os.path.join(self.path, BACKUP_DIR)
            os.makedirs(backup_dir, mode=0o700, exist_ok=True)
            backup = os.path.join(backup_dir, "%s.%s%s" % (name, utcnow().strftime("%Y%m%dT%H%M%S%fZ"), SUFFIX))
            with open(path, "rb") as current:
                write_private_file(backup, current.read())
        # A JSON round trip turns Ansible's tagged strings into plain ones that YAML can represent.
        plain = json.loads(json.dumps(record))
        blob = self._vault.encrypt(yaml.safe_dump(plain, sort_keys=True, default_flow_style=False))
        write_private_file(path, blob)
        return backup


def _require_cryptography():
    if x509 is None:
        raise StoreError("the Python library 'cryptography' is needed on the controller to generate keys")


def self_signed_certificate(private_key, common_name, validity_days, now=None):
    """The sealed-secrets controller's own shape: CN=O=common_name, 'not before' now."""
    now = now or utcnow()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, common_name)])
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(name)
               .public_key(private_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=validity_days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=False, encipher_only=False, decipher_only=False),
                              critical=True))
    certificate = builder.sign(private_key, hashes.SHA256())
    return to_text(certificate.public_bytes(serialization.Encoding.PEM))


def provided(value):
    """Material of a secret someone else issued: a string is kept as {'value': ...}, a dict of strings as is."""
    if isinstance(value, dict):
        if not value or not all(isinstance(key, str) and isinstance(item, str) and item
                                for key, item in value.items()):
            raise StoreError("value of a provided secret: a non-empty string, or a dict of non-empty strings")
        return {"data": {key: str(item) for key, item in value.items()}}
    if not isinstance(value, str) or not value:
        raise StoreError("value of a provided secret: a non-empty string, or a dict of non-empty strings")
    return {"data": {"value": str(value)}}


def talos_secrets(options):
    """The Talos secrets bundle from the real talosctl: new, or recovered from a live control plane's config."""
    talosctl = locate_talosctl(options.get("talosctl_path"))
    if talosctl is None:
        raise StoreError(TALOSCTL_NOT_FOUND)
    with tempfile.TemporaryDirectory(prefix="turnkey-talos-secrets-") as folder:
        bundle = os.path.join(folder, "secrets.yaml")
        command = [talosctl, "gen", "secrets", "--output-file", bundle]
        if options.get("from_controlplane_config"):
            command += ["--from-controlplane-config", options["from_controlplane_config"]]
        run = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if run.returncode != 0:
            raise StoreError("talosctl gen secrets failed (exit %d): %s" % (run.returncode,
                                                                            (run.stderr or run.stdout).strip()))
        with open(bundle) as handle:
            return {"data": {"bundle": handle.read()}}


def generate(secret_type, options):
    """New secret material: {'data': {...}}; options hold the type's parameters."""
    if secret_type == "provided":
        return provided(options.get("value"))
    if secret_type == "talos_secrets":
        return talos_secrets(options)
    if secret_type == "token":
        return {"data": {"value": "".join(secrets.choice(TOKEN_ALPHABET) for _position in range(options["length"]))}}
    _require_cryptography()
    if secret_type == "sealed_secrets_keypair":
        key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        return {"data": {"private_key": to_text(pem),
                         "certificate": self_signed_certificate(key, options["common_name"],
                                                                options["validity_days"])}}
    if secret_type == "ssh_ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        comment = options.get("comment")
        return {"data": {"private_key": to_text(private),
                         "public_key": to_text(public) + (" " + comment if comment else "")}}
    raise StoreError("unknown secret type %r (use one of %s)" % (secret_type, ", ".join(SECRET_TYPES)))


def renew_certificate(record, options):
    """Same private key, new certificate: existing SealedSecrets stay decryptable."""
    _require_cryptography()
    key = serialization.load_pem_private_key(to_bytes(record["data"]["private_key"]), password=None)
    data = dict(record["data"])
    data["certificate"] = self_signed_certificate(key, options["common_name"], options["validity_days"])
    return {"data": data}


def retire_key(previous, material):
    """A rotated sealed-secrets keypair keeps its old keys (oldest first): SealedSecrets sealed with them
    must still decrypt, in the running cluster and in every rebuild."""
    if previous is None:
        return material
    old = previous["data"]
    retired = list(old.get("retired_keys", []))
    retired.append({"private_key": old["private_key"], "certificate": old["certificate"]})
    return {"data": dict(material["data"], retired_keys=retired)}


def key_id(certificate_pem):
    """The SHA-256 of a certificate's public key (DER): the same for a key across certificate renewals."""
    certificate = x509.load_pem_x509_certificate(to_bytes(certificate_pem))
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()


def public_facts(record, now=None):
    """What may be shown: public keys, certificate dates and fingerprints, never secret material."""
    data = record["data"]
    facts = {"type": record["type"], "version": record["version"], "created": record["created"],
             "updated": record["updated"]}
    if record["type"] == "ssh_ed25519":
        facts["public_key"] = data["public_key"]
    if record["type"] == "provided":
        facts["fields"] = sorted(data)  # names only: what a lookup's field= can ask for
    if record["type"] == "sealed_secrets_keypair":
        _require_cryptography()
        certificate = x509.load_pem_x509_certificate(to_bytes(data["certificate"]))
        not_after = certificate.not_valid_after_utc
        facts.update(certificate=data["certificate"], not_after=_stamp(not_after),
                     days_left=(not_after - (now or utcnow())).days,
                     fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
                     # Retired keys first, the current one last: the order of retired_keys + the current key.
                     key_ids=[key_id(key["certificate"]) for key in data.get("retired_keys", [])]
                     + [key_id(data["certificate"])])
    return facts


def new_record(name, secret_type, material, previous=None):
    now = _stamp(utcnow())
    return {"name": name, "type": secret_type, "version": (previous or {}).get("version", 0) + 1,
            "created": (previous or {}).get("created", now), "updated": now, "data": material["data"]}
