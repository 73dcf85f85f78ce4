"""Flux's controllers get the flags the role sets (filter turnkey.cluster.flux_controller_flags), on the real
install manifests `make tools` renders."""

from __future__ import annotations

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.turnkey.cluster.plugins.filter.flux_controller_flags import flux_controller_flags
from tests.playbook_runner import REPO
from tests.tools import built_tools


def deployment(name, args):
    return {"kind": "Deployment", "metadata": {"name": name},
            "spec": {"template": {"spec": {"containers": [{"name": "manager", "args": args}]}}}}


def args_of(objects, name):
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)[
        "spec"]["template"]["spec"]["containers"][0]["args"]


def test_a_flag_is_replaced_where_present_and_appended_where_not():
    objects = [deployment("kustomize-controller", ["--log-level=info", "--requeue-dependency=30s"]),
               deployment("helm-controller", ["--log-level=info"]), {"kind": "Namespace", "metadata": {"name": "x"}}]
    result = flux_controller_flags(objects, {"kustomize-controller": {"requeue-dependency": "5s"},
                                             "helm-controller": {"requeue-dependency": "5s"}})
    assert args_of(result, "kustomize-controller") == ["--log-level=info", "--requeue-dependency=5s"]
    assert args_of(result, "helm-controller") == ["--log-level=info", "--requeue-dependency=5s"]
    assert result[2] == objects[2]
    assert args_of(objects, "helm-controller") == ["--log-level=info"], "the input is left as it was"


def test_a_controller_missing_from_the_manifests_is_an_error():
    with pytest.raises(AnsibleFilterError, match="no Deployment named image-reflector-controller"):
        flux_controller_flags([deployment("kustomize-controller", [])], {"image-reflector-controller": {"x": "1"}})


def test_the_real_install_manifests_get_the_roles_default_flags():
    folder = built_tools("TURNKEY_FLUX_MANIFESTS")["TURNKEY_FLUX_MANIFESTS"]
    with open("%s/install.yaml" % folder) as handle:
        objects = list(yaml.safe_load_all(handle))
    with open(REPO / "roles/flux_bootstrap/defaults/main.yml") as handle:
        flags = yaml.safe_load(handle)["flux_bootstrap_controller_flags"]
    result = flux_controller_flags(objects, flags)
    for name in ("kustomize-controller", "helm-controller"):
        args = args_of(result, name)
        assert "--requeue-dependency=5s" in args and "--watch-all-namespaces=true" in args
    assert args_of(result, "source-controller") == args_of(objects, "source-controller")
