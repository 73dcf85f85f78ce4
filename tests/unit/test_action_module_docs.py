"""The docs-only module persistent_secret documents what its action plugin accepts.

validate-modules compares DOCUMENTATION with the argument_spec only for modules with code; a docs-only
module (the action plugin does the work) is checked here instead.
"""

from __future__ import annotations

import importlib

import pytest
import yaml

from tests import store_access  # importing it puts the collection on sys.path

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

action = importlib.import_module("ansible_collections.turnkey.cluster.plugins.action.persistent_secret")
module = importlib.import_module("ansible_collections.turnkey.cluster.plugins.modules.persistent_secret")

KEYS = ("type", "required", "default", "choices", "elements")


def _normalised(options):
    return {name: {key: spec[key] for key in KEYS if spec.get(key) not in (None, False)}
            for name, spec in options.items()}


def test_persistent_secret_documentation_matches_the_action_argument_spec():
    documented = yaml.safe_load(module.DOCUMENTATION)["options"]
    assert _normalised(documented) == _normalised(action.ARGUMENT_SPEC)
    assert documented["type"]["choices"] == list(store_access.store_module.SECRET_TYPES)
