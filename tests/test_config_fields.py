"""Declared fields of plugin configs: ranges with open and closed bounds, and paths the file system can hold."""

from __future__ import annotations

import dataclasses
import os

import pytest

from benchmark.grid import check_plugin_config
from ssl_medbench.core.config_fields import Range, bounded, folder_path, user_path
from ssl_medbench.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Declared:
    share: float = bounded(0.5, low=0, high=1, open_low=True)
    count_fraction: float = bounded(2.0, low=1)  # a declaration wins over the "*_fraction in [0, 1]" convention
    root: str = folder_path()


@pytest.mark.parametrize(
    ("bounds", "inside", "outside"),
    [
        (Range(0, 1), [0.0, 1.0], [-0.01, 1.01]),
        (Range(0, 1, open_low=True, open_high=True), [1e-9, 0.999], [0.0, 1.0]),
        (Range(low=1), [1.0, 1e12], [0.999]),
    ],
)
def test_ranges_include_closed_bounds_and_exclude_open_ones(bounds, inside, outside):
    assert all(bounds.contains(value) for value in inside)
    assert not any(bounds.contains(value) for value in outside)


def test_a_range_names_only_its_finite_bounds():
    assert Range(0, 1, open_low=True).describe() == "> 0 and <= 1"
    assert Range(low=1).describe() == ">= 1"


def test_a_default_outside_its_own_range_is_a_plugin_bug():
    with pytest.raises(ValueError, match="outside the field's own range"):
        bounded(0.0, low=0, open_low=True)


def test_declared_fields_are_checked_by_the_grid_and_override_the_conventions():
    check_plugin_config(Declared(), "pretext.mine")
    with pytest.raises(ConfigError, match=r"^pretext.mine.share: must be > 0 and <= 1, got 0.0$"):
        check_plugin_config(Declared(share=0.0), "pretext.mine")
    with pytest.raises(ConfigError, match=r"pretext.mine.count_fraction: must be >= 1, got 0.5"):
        check_plugin_config(Declared(count_fraction=0.5), "pretext.mine")
    with pytest.raises(ConfigError, match="pretext.mine.root: a path cannot contain a NUL"):
        check_plugin_config(Declared(root="a\x00b"), "pretext.mine")


def test_user_paths_expand_the_home_folder_and_refuse_what_no_file_system_holds():
    assert user_path("~/data", "root") == user_path(os.path.expanduser("~/data"), "root")
    assert user_path("a/" + "b" * 255, "root").name == "b" * 255
    with pytest.raises(ConfigError, match="is 256 bytes long"):
        user_path("a/" + "b" * 256, "root")
    with pytest.raises(ConfigError, match="is 256 bytes long"):  # bytes, not characters: 'é' is two bytes in UTF-8
        user_path("é" * 128, "root")
    with pytest.raises(ConfigError, match="longer than 4096 bytes"):
        user_path("/".join(["c" * 200] * 25), "root")
    with pytest.raises(ConfigError, match="'~nobody-here' starts with '~nobody-here', but there is no such user"):
        user_path("~nobody-here", "root")
