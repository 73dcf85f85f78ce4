# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: mitogen_linear
short_description: Ansible's linear strategy, with modules run through Mitogen
description:
  - The linear strategy (task by task, every host in parallel through the forks), with each module run in a
    long-lived Python interpreter per host by L(Mitogen,https://mitogen.networkgenomics.com/ansible_detailed.html)
    instead of a new interpreter that compiles C(ansible.module_utils) from a zip for every task.
  - Opt-in, by C(ANSIBLE_STRATEGY=turnkey.cluster.mitogen_linear) or C(strategy) in C(ansible.cfg). Every node is an
    inventory host with C(ansible_connection=local) and the playbooks are API calls, so the module overhead is most of
    their processor time (docs/performance.md). It is not the collection's default while two of its tests fail under
    it.
  - Without the C(mitogen) package it is the plain linear strategy, and says so once.
author: turnkey.cluster maintainers (!UNKNOWN)
"""

from ansible.plugins.loader import strategy_loader
from ansible.utils.display import Display

try:
    # ansible_mitogen.loaders first: it checks the Ansible release.
    import ansible_mitogen.loaders  # noqa: F401  # pylint: disable=unused-import
    import ansible_mitogen.strategy
except ImportError:
    MITOGEN = None
else:
    MITOGEN = ansible_mitogen.strategy

Linear = strategy_loader.get("linear", class_only=True)

if MITOGEN is None:
    class StrategyModule(Linear):
        """The plain linear strategy: Mitogen is not installed."""

        def __init__(self, *args, **kwargs):
            Display().warning("turnkey.cluster.mitogen_linear: the mitogen package is missing, so the plain linear "
                              "strategy runs (pip install -r requirements.txt)")
            super().__init__(*args, **kwargs)
else:
    class StrategyModule(MITOGEN.StrategyMixin, Linear):
        """The linear strategy with Mitogen's connection multiplexer and in-process module runs."""
