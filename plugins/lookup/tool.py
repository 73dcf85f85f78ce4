# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: tool
short_description: Find a tool the collection drives (talosctl, helm, kubectl, the Cilium chart)
version_added: 0.1.0
description:
  - The one rule by which every role finds its tools, on the controller. In order - O(path) when it is not
    empty (a role variable such as C(talos_cluster_talosctl)); else C($TURNKEY_<TOOL>) (C(TURNKEY_TALOSCTL),
    C(TURNKEY_CILIUM_CHART)); else what C(make tools) built into C(${XDG_CACHE_HOME:-~/.cache}/turnkey-cluster/tools)
    - the folder of O(version) (C(tools/<tool>-<version>/)) when it is given, then the path C(tools.env)
    records; else the tool on C(PATH) (not for C(cilium-chart), a folder).
  - A path named by O(path) or the environment variable that is not an executable file (for C(cilium-chart)
    a folder) fails the lookup; it is never passed over for the next candidate. A tool found nowhere fails
    the lookup with what was tried.
  - The Talos modules' option C(talosctl_path) falls back to the same rule (module_utils C(tools)).
author: turnkey.cluster maintainers (!UNKNOWN)
options:
  _terms:
    description: The tool, C(talosctl), C(helm), C(kubectl), C(flux), C(cilium-chart) or C(flux-manifests) (a folder).
    type: list
    elements: str
    required: true
  path:
    description: The path the caller names (a role variable); empty means the rule's defaults.
    type: str
    default: ""
  version:
    description: The wanted version, C(v1.13.9), to prefer that build in the tool cache.
    type: str
    default: ""
  variable:
    description: The name of the role variable behind O(path), for the error messages.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Render with the operator's talosctl, else the one the rule finds
  turnkey.cluster.talos_machine_config:
    talosctl_path: >-
      {{ lookup('turnkey.cluster.tool', 'talosctl', path=talos_config_talosctl,
                version=cluster_versions.talos, variable='talos_config_talosctl') }}
"""

RETURN = r"""
_raw:
  description: The path of each tool.
  type: list
  elements: path
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.turnkey.cluster.plugins.module_utils.tools import ToolError, locate_tool


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        path, version, variable = (self.get_option(name) or None for name in ("path", "version", "variable"))
        try:
            return [locate_tool(tool, explicit=path, version=version, explicit_name=variable) for tool in terms]
        except ToolError as exc:
            raise AnsibleLookupError(str(exc)) from None
