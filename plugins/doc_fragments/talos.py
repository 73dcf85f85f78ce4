# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The talosctl every Talos module runs (module_utils/talosctl.py, talos_argument_spec()).
    DOCUMENTATION = r"""
options:
  talosctl_path:
    description:
      - The talosctl to run. Default - C($TURNKEY_TALOSCTL), then the one C(make tools) built
        (C(~/.cache/turnkey-cluster/tools/tools.env)), then C(talosctl) on C(PATH) (the collection's one rule,
        module_utils C(tools); roles pass what lookup P(turnkey.cluster.tool#lookup) finds).
      - A path given here or in C($TURNKEY_TALOSCTL) that is not an executable file fails the module; it is
        never passed over for the next candidate.
    type: path
  talosctl_timeout:
    description:
      - Seconds each C(talosctl) call may take. A call still running then is killed and the task fails with
        the command and the node it was asking (never its arguments) - a node that accepts the connection
        and never answers would otherwise hang the run.
    type: int
    default: 60
"""

    # The node a module talks to, for the modules that call one node (talos_argument_spec(node=True)).
    NODE = r"""
options:
  node:
    description: The node's address on the Talos API (port 50000).
    type: str
    required: true
  endpoint:
    description: The Talos API endpoint to go through. Default - the node itself.
    type: str
  talosconfig:
    description: The talosconfig with the client certificate (not needed in maintenance mode).
    type: path
    required: true
"""
