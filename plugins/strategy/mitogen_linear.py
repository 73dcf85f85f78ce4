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
    their processor time (docs/performance.md). It is not the collection's default while an SSO login check in
    headless Chromium hangs under it.
  - Every local host gets an interpreter of its own (Mitogen would otherwise share one among them, and the nodes'
    modules would run one after the other), so the forks still run the nodes at the same time.
  - A module that crashes is reported as Ansible reports it, C(Module failed) and the exception, with the traceback
    in C(module_stderr).
  - Without the C(mitogen) package it is the plain linear strategy, and says so once.
author: turnkey.cluster maintainers (!UNKNOWN)
"""

from ansible.plugins.loader import strategy_loader
from ansible.utils.display import Display

try:
    # Each of them imports ansible_mitogen.loaders, which checks the Ansible release.
    import ansible_mitogen.connection
    import ansible_mitogen.mixins
    import ansible_mitogen.strategy
except ImportError:
    MITOGEN = None
else:
    MITOGEN = ansible_mitogen.strategy

DESERIALIZATION_FAILED = "Module result deserialization failed"


def local_per_host(connect_local):
    """Mitogen keys its interpreters by connection settings, which are the same for every local host, so all the
    nodes' modules would queue on one interpreter. A name per host gives each node its own, as the forks expect."""
    def connect(spec):
        stack_entry = connect_local(spec)
        stack_entry["kwargs"]["remote_name"] = "turnkey:%s" % spec.inventory_name()
        return stack_entry
    return connect


def crash_named(execute_module):
    """A module that raises prints its traceback and no result; Ansible itself reports that as 'Module failed: <the
    exception>', which is what an operator (and the tests) read, so the same is said here instead of a JSON error."""
    def execute(self, *args, **kwargs):
        result = execute_module(self, *args, **kwargs)
        if not isinstance(result, dict):  # ansible-core 2.21 returns its own result type; this knows 2.19's dict
            return result
        stderr = result.get("module_stderr") or ""
        if str(result.get("msg", "")).startswith(DESERIALIZATION_FAILED) and "Traceback" in stderr:
            raised = stderr.strip().splitlines()[-1]
            result["msg"] = "Module failed: %s" % raised.partition(": ")[2] if ": " in raised else raised
        return result
    return execute


Linear = strategy_loader.get("linear", class_only=True)

if MITOGEN is None:
    class StrategyModule(Linear):
        """The plain linear strategy: Mitogen is not installed."""

        def __init__(self, *args, **kwargs):
            Display().warning("turnkey.cluster.mitogen_linear: the mitogen package is missing, so the plain linear "
                              "strategy runs (pip install -r requirements.txt)")
            super().__init__(*args, **kwargs)
else:
    CONNECTION_METHOD = ansible_mitogen.connection.CONNECTION_METHOD
    CONNECTION_METHOD["local"] = local_per_host(CONNECTION_METHOD["local"])
    ACTION_MIXIN = ansible_mitogen.mixins.ActionModuleMixin
    ACTION_MIXIN._execute_module = crash_named(ACTION_MIXIN._execute_module)  # pylint: disable=protected-access

    class StrategyModule(MITOGEN.StrategyMixin, Linear):
        """The linear strategy with Mitogen's connection multiplexer and in-process module runs."""
