# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the collection finds the tools it drives (talosctl, helm, kubectl, the Cilium chart): the one rule
every role and module uses (the lookup turnkey.cluster.tool and the Talos modules' talosctl_path).

In order: the path the caller names (a role variable, a module option); else $TURNKEY_<TOOL>; else what
`make tools` built into the cache (${XDG_CACHE_HOME:-~/.cache}/turnkey-cluster/tools): the folder of the
wanted version when one is given (tools/<tool>-<version>/<tool>), then the path tools.env records; else
<tool> on PATH (not for the chart, a folder). A path named by the caller or the environment that is not
usable is an error, never skipped for the next candidate: the operator asked for that one."""

from __future__ import annotations

import os
import shutil

CACHE = os.path.join("turnkey-cluster", "tools")
# Tools that are a folder, not a binary, and the folder's name inside their versioned cache folder.
FOLDERS = {"cilium-chart": "cilium", "flux-manifests": "flux-manifests"}


class ToolError(Exception):
    """A tool named explicitly that is not usable, or a tool found nowhere."""


def env_name(tool):
    """The environment variable (and tools.env key) of a tool: TURNKEY_TALOSCTL, TURNKEY_CILIUM_CHART."""
    return "TURNKEY_" + tool.upper().replace("-", "_")


def cache_folder(environ=None):
    environ = os.environ if environ is None else environ
    cache = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(cache, CACHE)


def recorded(tool, environ=None):
    """The path tools.env records for the tool, or None."""
    try:
        with open(os.path.join(cache_folder(environ), "tools.env")) as handle:
            for line in handle:
                name, sep, value = line.strip().partition("=")
                if sep and name.strip() == env_name(tool) and value.strip():
                    return value.strip()
    except OSError:
        return None
    return None


def usable(tool, path):
    if tool in FOLDERS:
        return os.path.isdir(path)
    return os.path.isfile(path) and os.access(path, os.X_OK)


def what(tool):
    return "a folder" if tool in FOLDERS else "an executable file"


def locate_tool(tool, explicit=None, version=None, environ=None, explicit_name=None):
    """The path of the tool by the rule above; ToolError naming what was tried when there is none, or when
    the explicit path (explicit_name says which variable named it) or $TURNKEY_<TOOL> is not usable."""
    environ = os.environ if environ is None else environ
    variable = env_name(tool)
    for given, source in ((explicit, explicit_name or "the path given"), (environ.get(variable), "$" + variable)):
        if given:
            if not usable(tool, given):
                raise ToolError("%s %s = %s is not %s: point it at one, or leave it empty and run `make tools` "
                                "for the pinned one" % (tool, source, given, what(tool)))
            return given
    tried = []
    cache = cache_folder(environ)
    candidates = []
    if version:
        candidates.append(os.path.join(cache, "%s-%s" % (tool, version), FOLDERS.get(tool, tool)))
    candidates.append(recorded(tool, environ))
    for candidate in candidates:
        if candidate:
            tried.append(candidate)
            if usable(tool, candidate):
                return candidate
    if tool not in FOLDERS:
        on_path = shutil.which(tool, path=environ.get("PATH"))
        if on_path:
            return on_path
        tried.append("%s on PATH" % tool)
    raise ToolError("%s not found (tried %s): set %s or $%s to it, or run `make tools` to build the pinned one"
                    % (tool, ", ".join(tried) or "nothing", explicit_name or "its path", variable))
