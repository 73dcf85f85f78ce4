# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import copy

from ansible.errors import AnsibleFilterError

# Documented in flux_controller_flags.yml beside this file.

CONTAINER = "manager"  # the container name in every Flux controller's Deployment


def _with_flags(args, flags):
    """args with each --name=value of flags set: replaced in place when present, appended otherwise."""
    wanted = {"--%s" % name: "--%s=%s" % (name, value) for name, value in flags.items()}
    result = [wanted.pop(arg.split("=", 1)[0], arg) for arg in args]
    return result + [wanted[flag] for flag in sorted(wanted)]


def flux_controller_flags(objects, flags):
    objects = [copy.deepcopy(item) for item in objects if item]
    missing = set(flags)
    for item in objects:
        name = item.get("metadata", {}).get("name")
        if item.get("kind") != "Deployment" or name not in flags:
            continue
        containers = item.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
        container = next((c for c in containers if c.get("name") == CONTAINER), None)
        if container is None:
            raise AnsibleFilterError("flux_controller_flags: Deployment %s has no %r container" % (name, CONTAINER))
        container["args"] = _with_flags(container.get("args") or [], flags[name])
        missing.discard(name)
    if missing:
        raise AnsibleFilterError("flux_controller_flags: no Deployment named %s in the manifests"
                                 % ", ".join(sorted(missing)))
    return objects


class FilterModule:
    def filters(self):
        return {"flux_controller_flags": flux_controller_flags}
