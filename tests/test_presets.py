"""The presets write out each pretext task's Config defaults; they must not drift from the code.

A preset's ``pretext`` section claims to be "the defaults of each task's Config, written out", so a
reader can see the settings without opening the modules. Changing a default (or adding a field) in a
task's Config without updating the presets fails here, naming the preset, task and field.
"""

from __future__ import annotations

import dataclasses
from importlib.resources import files

import pytest
import yaml

from ssl_medbench.pretext_tasks import PRETEXT_TASKS

PRESETS = ("smoke", "validate", "paper", "full")


def _preset(name: str) -> dict:
    return yaml.safe_load(files("benchmark.configs").joinpath(f"{name}.yaml").read_text())


def _defaults(config_class: type) -> dict:
    return {
        field.name: field.default if field.default is not dataclasses.MISSING else field.default_factory()
        for field in dataclasses.fields(config_class)
    }


@pytest.mark.parametrize("preset", PRESETS)
def test_written_out_pretext_settings_equal_the_config_defaults(preset):
    written = _preset(preset)["pretext"]
    for task, settings in written.items():
        defaults = _defaults(PRETEXT_TASKS.get(task).Config)
        assert settings == defaults, f"{preset}.yaml pretext.{task}: written {settings}, the Config says {defaults}"


@pytest.mark.parametrize("preset", PRESETS)
def test_every_pretext_task_with_settings_is_written_out(preset):
    grid = _preset(preset)
    configurable = {name for name in grid["initialisations"] if dataclasses.fields(PRETEXT_TASKS.get(name).Config)}
    assert configurable <= set(grid["pretext"]), (
        f"{preset}.yaml lacks pretext settings of {configurable - set(grid['pretext'])}"
    )
