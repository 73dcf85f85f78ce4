# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What of a Talos machine config may be shown in a diff or a result: the values at allow-listed paths.

Every other value - private keys, tokens, certificates, registry passwords, WireGuard keys, file contents, inline
manifests, anything this list does not know - is replaced by a marker. Mapping keys are shown (they are
structure: label names, registry hosts, field names). The list is an allow-list on purpose: a new
secret-bearing field of a future Talos is hidden until someone adds its path here.

A path is a tuple of mapping keys, with "[]" for a list item. A pattern is a dotted string of segments:
a key, "*" (any one key), "[]" (any list item) or "**" (anything below). Patterns are per document kind;
the v1alpha1 document (it has no kind) is "v1alpha1".
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML comes with ansible-core
    yaml = None

V1ALPHA1 = "v1alpha1"
NETWORK_INTERFACE = ("interface", "addresses.[]", "routes.[].**", "dhcp", "mtu", "ignore", "vip.ip",
                     "deviceSelector.**", "vlans.[].vlanId", "vlans.[].addresses.[]", "vlans.[].routes.[].**",
                     "vlans.[].dhcp", "vlans.[].mtu", "bond.**", "bridge.**")
VOLUME = ("name", "provisioning.**", "filesystem.**", "volumeType", "mount.**", "discovery.**")
ALLOWED = {
    V1ALPHA1: (
        "version", "debug", "persist",
        "machine.type", "machine.certSANs.[]",
        "machine.kubelet.image", "machine.kubelet.clusterDNS.[]", "machine.kubelet.extraArgs.*",
        "machine.kubelet.extraConfig.providerID", "machine.kubelet.extraMounts.[].**",
        "machine.kubelet.defaultRuntimeSeccompProfileEnabled", "machine.kubelet.registerWithFQDN",
        "machine.kubelet.nodeIP.validSubnets.[]", "machine.kubelet.skipNodeRegistration",
        "machine.kubelet.disableManifestsDirectory",
        "machine.install.disk", "machine.install.image", "machine.install.wipe", "machine.install.grubUseUKICmdline",
        "machine.install.extraKernelArgs.[]", "machine.install.diskSelector.**", "machine.install.legacyBIOSSupport",
        "machine.features.**", "machine.controlPlane.**",
        "machine.nodeLabels.*", "machine.nodeAnnotations.*", "machine.nodeTaints.*",
        "machine.sysctls.*", "machine.sysfs.*", "machine.kernel.modules.[].name", "machine.udev.rules.[]",
        "machine.time.disabled", "machine.time.servers.[]",
        "machine.network.hostname", "machine.network.nameservers.[]",
        *("machine.network.interfaces.[]." + p for p in NETWORK_INTERFACE),
        "machine.registries.mirrors.*.endpoints.[]", "machine.registries.mirrors.*.overridePath",
        "machine.registries.mirrors.*.skipFallback", "machine.registries.config.*.tls.insecureSkipVerify",
        "machine.files.[].path", "machine.files.[].permissions", "machine.files.[].op",
        "cluster.clusterName", "cluster.controlPlane.endpoint", "cluster.controlPlane.localAPIServerPort",
        "cluster.network.**", "cluster.allowSchedulingOnControlPlanes", "cluster.adminKubeconfig.certLifetime",
        "cluster.proxy.disabled", "cluster.proxy.image", "cluster.proxy.mode", "cluster.proxy.extraArgs.*",
        "cluster.discovery.enabled", "cluster.discovery.registries.kubernetes.disabled",
        "cluster.discovery.registries.service.disabled", "cluster.discovery.registries.service.endpoint",
        "cluster.apiServer.image", "cluster.apiServer.certSANs.[]", "cluster.apiServer.extraArgs.*",
        "cluster.apiServer.disablePodSecurityPolicy",
        "cluster.controllerManager.image", "cluster.controllerManager.extraArgs.*",
        "cluster.scheduler.image", "cluster.scheduler.extraArgs.*",
        "cluster.etcd.image", "cluster.etcd.advertisedSubnets.[]", "cluster.etcd.listenSubnets.[]",
        "cluster.etcd.extraArgs.*",
        "cluster.coreDNS.disabled", "cluster.coreDNS.image",
        "cluster.externalCloudProvider.enabled", "cluster.externalCloudProvider.manifests.[]",
        "cluster.inlineManifests.[].name",
    ),
    # network documents hold addresses, routes and names, no credentials
    **{kind: ("**",) for kind in (
        "HostnameConfig", "LinkConfig", "LinkAliasConfig", "DummyLinkConfig", "BondConfig", "BridgeConfig",
        "VLANConfig", "VRFConfig", "DHCPv4Config", "DHCPv6Config", "EthernetConfig", "ResolverConfig",
        "TimeSyncConfig", "StaticHostConfig", "Layer2VIPConfig", "KubeSpanConfig", "KubeSpanEndpoints",
        "BlackholeRouteConfig", "RoutingRuleConfig", "NetworkRuleConfig", "NetworkDefaultActionConfig",
        "TCPProbeConfig")},
    "HCloudVIPConfig": ("name", "link"),  # its apiToken is hidden
    "WireguardConfig": ("name", "listenPort", "firewallMark", "up", "mtu", "addresses.**", "routes.**",
                        "peers.[].publicKey", "peers.[].endpoint", "peers.[].persistentKeepaliveInterval",
                        "peers.[].allowedIPs.[]"),  # privateKey and presharedKey hidden
    "RegistryMirrorConfig": ("name", "endpoints.[].url", "endpoints.[].overridePath", "skipFallback"),
    "RegistryAuthConfig": ("name",),  # username, password, auth and identityToken hidden
    "RegistryTLSConfig": ("name", "insecureSkipVerify"),  # the client identity is a key
    "TrustedRootsConfig": ("name",),
    "ExtensionServiceConfig": ("name", "configFiles.[].mountPath"),  # its environment and files may hold secrets
    **{kind: VOLUME for kind in ("VolumeConfig", "UserVolumeConfig", "RawVolumeConfig", "SwapVolumeConfig",
                                 "ExistingVolumeConfig", "ExternalVolumeConfig")},  # encryption keys hidden
}
EVERY_DOCUMENT = ("apiVersion", "kind")
EMPTY = ("[]", "{}")
HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
# A line's visible part when nothing else is known: indentation, list dashes and a plain key.
BLIND = re.compile(r"^(?P<lead>\s*(?:- )*(?:[A-Za-z0-9_./-]+:(?=\s|$))?\s?)(?P<rest>.*)$")


def _matches(pattern, path):
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return True
    if not path or (head != "*" and head != path[0]) or (head == "*" and path[0] == "[]"):
        return False
    return _matches(rest, path[1:])


def _split(patterns):
    return tuple(tuple(pattern.split(".")) for pattern in patterns + EVERY_DOCUMENT)


_PATTERNS = {kind: _split(patterns) for kind, patterns in ALLOWED.items()}
_UNKNOWN_KIND = _split(())


def is_shown(kind, path):
    """Whether the value at path (a tuple of keys, "[]" for list items) of a document of kind may be shown."""
    return any(_matches(pattern, tuple(path)) for pattern in _PATTERNS.get(kind, _UNKNOWN_KIND))


class Redactor:
    """Replaces hidden values by a marker. Equal values get equal markers within one run (a keyed digest
    under a key made for this run and thrown away), so a diff still tells a changed secret from an unchanged
    one, and nothing can be guessed offline from a marker."""

    def __init__(self):
        self._key = os.urandom(32)

    def mark(self, value):
        digest = hmac.new(self._key, str(value).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return "(hidden %s)" % digest[:8]

    def document(self, document):
        """A copy of one parsed config document with every value not on the allow-list marked."""
        kind = document.get("kind", V1ALPHA1) if isinstance(document, dict) else V1ALPHA1
        return self._walk(document, (), kind)

    def _walk(self, value, path, kind):
        if isinstance(value, dict):
            return {key: self._walk(item, path + (str(key),), kind) for key, item in value.items()}
        if isinstance(value, list):
            return [self._walk(item, path + ("[]",), kind) for item in value]
        if value is None or is_shown(kind, path):
            return value
        return self.mark(value)

    def config_text(self, text):
        """A machine config (YAML, one or more documents) as YAML with hidden values marked."""
        if not text:
            return ""
        return yaml.safe_dump_all([self.document(doc) for doc in yaml.safe_load_all(text)], sort_keys=False)

    def dry_run_diff(self, diff, config_text):
        """Talos' dry-run diff (a unified diff of the node's config and config_text, both as Talos encodes
        them) with every hidden value marked. Each line's path comes from the whole config the line is in:
        config_text for context and added lines, the node's config rebuilt from it for removed lines. When the
        diff does not fit config_text, every value is marked."""
        headers, hunks = _hunks(diff)
        new_lines = (config_text or "").splitlines()
        old_lines = None if hunks is None else _old_side(hunks, new_lines)
        new_values = None if old_lines is None else _values_by_line(new_lines)
        old_values = None if old_lines is None else _values_by_line(old_lines)
        if new_values is None or old_values is None:
            return self._blind(diff)
        out = list(headers)
        for header, start_old, start_new, lines in hunks:
            out.append(header)
            old, new = start_old, start_new
            for line in lines:
                tag, text = line[:1], line[1:]
                if tag == "-":
                    out.append(tag + self._line(text, old_values.get(old, ())))
                    old += 1
                else:  # " " or "+": _old_side refused anything else
                    out.append(tag + self._line(text, new_values.get(new, ())))
                    new += 1
                    old += tag == " "
        return "\n".join(out)

    def _line(self, text, values):
        hidden = [column for column, shown in values if not shown]
        if not hidden:
            return text
        column = min(hidden)
        if column < 0:  # a line inside a multi-line value
            stripped = text.lstrip()
            return text[:len(text) - len(stripped)] + (self.mark(stripped) if stripped else "")
        return text[:column] + self.mark(text[column:])

    def _blind(self, diff):
        """Every line with only its indentation, dashes and plain key kept: for a diff that cannot be placed."""
        out, in_hunks = [], False
        for line in diff.splitlines():
            in_hunks = in_hunks or line.startswith("@@")
            if not in_hunks or line.startswith("@@"):
                out.append(line if HUNK.match(line) or line.startswith(("--- ", "+++ ")) else self.mark(line))
                continue
            tag, text = line[:1], line[1:]
            match = BLIND.match(text)
            rest = match.group("rest")
            keep = not rest.strip() or rest.strip() in EMPTY or text.strip() == "---"
            out.append(tag + (text if keep else match.group("lead") + self.mark(rest)))
        return "\n".join(out)


def _hunks(diff):
    """(header lines, [(hunk header, first old line index, first new line index, lines)]) of a unified diff;
    hunks None when malformed."""
    headers, hunks = [], []
    for line in diff.splitlines():
        match = HUNK.match(line)
        if match:
            old_len = int(match.group(2) if match.group(2) is not None else 1)
            new_len = int(match.group(4) if match.group(4) is not None else 1)
            start_old = int(match.group(1)) - (1 if old_len else 0)
            start_new = int(match.group(3)) - (1 if new_len else 0)
            hunks.append((line, start_old, start_new, []))
        elif hunks:
            hunks[-1][3].append(line)
        elif line.startswith(("--- ", "+++ ")):
            headers.append(line)
        else:
            return headers, None
    return headers, hunks


def _old_side(hunks, new_lines):
    """The lines of the node's config: new_lines with the hunks undone; None when a hunk does not fit."""
    old, position = [], 0
    for _header, start_old, start_new, lines in hunks:
        if start_new < position or start_new > len(new_lines):
            return None
        old.extend(new_lines[position:start_new])
        position = start_new
        if len(old) != start_old:
            return None
        for line in lines:
            tag, text = line[:1], line[1:]
            if tag in (" ", "+"):
                if position >= len(new_lines) or new_lines[position] != text:
                    return None
                position += 1
                if tag == " ":
                    old.append(text)
            elif tag == "-":
                old.append(text)
            else:  # Talos' differ writes no "\\ No newline at end of file", nor anything else
                return None
    return old + new_lines[position:]


def _values_by_line(lines):
    """{line index: [(column, or -1 for a whole line, shown)]} of every scalar value in a YAML text, from
    the parser's own marks; None when the text is not YAML."""
    try:
        documents = list(yaml.compose_all("\n".join(lines) + "\n"))
    except yaml.YAMLError:
        return None
    values = {}
    for document in documents:
        if document is None:
            continue
        kind = V1ALPHA1
        if isinstance(document, yaml.MappingNode):
            kind = next((v.value for k, v in document.value if k.value == "kind" and isinstance(v, yaml.ScalarNode)),
                        V1ALPHA1)
        _collect(document, (), kind, values)
    return values


def _collect(node, path, kind, values):
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _collect(value, path + (str(key.value),), kind, values)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _collect(item, path + ("[]",), kind, values)
    else:
        shown = node.tag.endswith(":null") or is_shown(kind, path)
        start, end = node.start_mark, node.end_mark
        values.setdefault(start.line, []).append((start.column, shown))
        last = end.line if end.column else end.line - 1
        for line in range(start.line + 1, last + 1):
            values.setdefault(line, []).append((-1, shown))
