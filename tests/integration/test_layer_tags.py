"""Which layers each tag selects, read from `ansible-playbook --list-tasks`.

Layer N's plays carry the layer's tag and the start-from tags of layer N and every earlier layer, so
`--tags from_X` selects X and every later layer. Validation plays are tagged `always`. Verify
(playbooks/verify.yml, imported last) carries its own tag and every start-from tag: a run from any layer ends
with it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.playbook_runner import REPO, run_playbook

pytestmark = pytest.mark.toolfree  # needs none of the Go tools (runs while they build)

LAYERS = [("00", "persistent_auth"), ("01", "infrastructure"), ("02", "services"), ("03", "configuration")]
VERIFY = "verify"
# The step tag of every play that needs the Talos nodes or the cluster on them (docs/layers.md).
NEEDS_CLUSTER = "needs_cluster"
EXPECTED = {
    None: {"00", "01", "02", "03", VERIFY},
    "persistent_auth": {"00"},
    "infrastructure": {"01"},
    "services": {"02"},
    "configuration": {"03"},
    "verify": {VERIFY},
    "from_persistent_auth": {"00", "01", "02", "03", VERIFY},
    "from_infrastructure": {"01", "02", "03", VERIFY},
    "from_services": {"02", "03", VERIFY},
    "from_configuration": {"03", VERIFY},
}
START_FROM = {"from_" + name for _number, name in LAYERS}
PLAY = re.compile(r"^  play #\d+ \((?P<hosts>[^)]*)\): (?P<name>.*?)\tTAGS: \[(?P<tags>[^\]]*)\]$")
TASK = re.compile(r"^      (?P<name>.*?)\tTAGS: \[(?P<tags>[^\]]*)\]$")
# Ansible tags a role's argument check 'always'; it only validates that role's inputs.
ARGUMENT_CHECK = "Validating arguments against arg spec"


def layer_tags(number):
    index = [layer[0] for layer in LAYERS].index(number)
    return {LAYERS[index][1]} | {"from_" + layer[1] for layer in LAYERS[: index + 1]}


def layer_of_playbook(path):
    """'00'...'03' for a layer playbook, 'verify' for playbooks/verify.yml."""
    name = Path(path).name
    return name[:2] if name[:2].isdigit() else Path(path).stem


def present_layers(site=REPO / "site.yml"):
    imports = [entry["ansible.builtin.import_playbook"] for entry in yaml.safe_load(site.read_text())]
    return {layer_of_playbook(path) for path in imports}


def selected_layers(listing):
    """{layer number or 'validation': [work task names]} of the plays --list-tasks shows."""
    selected, current = {}, None
    for line in listing.splitlines():
        play = PLAY.match(line)
        if play:
            name = play.group("name")
            current = "validation" if name.startswith("Validate") else VERIFY if name.startswith("Verify") else name[:2]
            selected.setdefault(current, [])
            continue
        task = TASK.match(line)
        if task and current and ARGUMENT_CHECK not in task.group("name"):
            selected[current].append(task.group("name"))
    # A play that shows only role argument checks does no work for that layer.
    return {layer: tasks for layer, tasks in selected.items() if tasks}


def list_tasks(tag, site="site.yml"):
    args = ["--list-tasks"] + (["--tags", tag] if tag else [])
    run = run_playbook(*args, playbook=str(site))
    assert run.returncode == 0, run.stdout + run.stderr
    return selected_layers(run.stdout)


@pytest.mark.parametrize("tag", list(EXPECTED), ids=lambda tag: tag or "no-tags")
def test_site_selects_exactly_the_layers_of_each_tag(tag):
    selected = list_tasks(tag)
    assert "validation" in selected, "validation must run under every tag"
    assert set(selected) - {"validation"} == EXPECTED[tag] & present_layers()


def test_site_imports_every_layer_in_order_then_verify():
    imports = [entry["ansible.builtin.import_playbook"] for entry in yaml.safe_load((REPO / "site.yml").read_text())]
    assert [layer_of_playbook(path) for path in imports] == [number for number, _name in LAYERS] + [VERIFY], imports


def test_verify_carries_its_tag_and_every_start_from_tag():
    for play in yaml.safe_load((REPO / "playbooks" / "verify.yml").read_text()):
        tags = set(play.get("tags", []))
        if play["name"].startswith("Validate"):
            assert tags == {"always"}
        else:
            assert tags == {VERIFY, NEEDS_CLUSTER} | START_FROM, play["name"]


def test_every_layer_play_carries_its_layer_and_start_from_tags():
    for path in sorted((REPO / "playbooks").glob("0*.yml")):
        number = path.name[:2]
        for play in yaml.safe_load(path.read_text()):
            tags = set(play.get("tags", []))
            if play["name"].startswith("Validate"):
                assert tags == {"always"}, path
            else:
                assert play["name"].startswith(number + " "), "play names start with their layer number"
                assert play["vars"]["turnkey_layer"] == path.stem
                # a play may add a step tag (e.g. talos_cluster, to skip a step), never another layer's
                extra = tags - layer_tags(number)
                assert layer_tags(number) <= tags, (path, play["name"])
                assert not extra & ({name for _n, name in LAYERS} | START_FROM), (path, play["name"])


def test_exactly_the_plays_that_need_the_cluster_carry_needs_cluster():
    """`--skip-tags needs_cluster` builds the machines and their configs and stops there (labs without the Talos node
    twin, the bench): layer 01's Talos cluster plays, and every play of layers 02, 03 and verify."""
    for path in sorted((REPO / "playbooks").glob("*.yml")):
        for play in yaml.safe_load(path.read_text()) or []:
            tags = set(play.get("tags", []))
            if "always" in tags:
                assert NEEDS_CLUSTER not in tags, (path, play["name"])
                continue
            wanted = path.stem.startswith(("02", "03", "verify")) or "talos_cluster" in tags
            assert (NEEDS_CLUSTER in tags) == wanted, (path, play["name"])


def test_start_from_semantics_with_all_four_layers(tmp_path):
    """The same convention on a tree where the layers not built yet are stand-ins, so that every row of
    the table is exercised today. The stand-ins exist only inside this test."""
    (tmp_path / "playbooks").mkdir()
    imports = []
    for number, name in LAYERS:
        real = next((REPO / "playbooks").glob(number + "-*.yml"), None)
        target = tmp_path / "playbooks" / ("%s-%s.yml" % (number, name.replace("_", "-")))
        if real is not None:
            shutil.copy(real, target)
        else:
            target.write_text(yaml.safe_dump([{
                "name": "%s stand-in" % number, "hosts": "localhost", "gather_facts": False,
                "tags": sorted(layer_tags(number)), "vars": {"turnkey_layer": target.stem},
                "tasks": [{"name": "Stand-in task of layer %s" % number, "ansible.builtin.meta": "noop"}]}]))
        imports.append({"name": "Layer %s" % number, "ansible.builtin.import_playbook": "playbooks/" + target.name})
    shutil.copy(REPO / "playbooks" / "verify.yml", tmp_path / "playbooks" / "verify.yml")
    imports.append({"name": "Verify", "ansible.builtin.import_playbook": "playbooks/verify.yml"})
    site = tmp_path / "site.yml"
    site.write_text(yaml.safe_dump(imports))
    for tag, expected in EXPECTED.items():
        selected = list_tasks(tag, site)
        assert "validation" in selected
        assert set(selected) - {"validation"} == expected, tag
