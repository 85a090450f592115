from __future__ import annotations

import importlib.metadata

import pytest

from benchmark.errors import UnknownPluginError
from benchmark.registry import PluginLoadWarning, Registry


def _entry_points(monkeypatch: pytest.MonkeyPatch, group: str, **targets: str) -> None:
    points = [importlib.metadata.EntryPoint(name=name, value=value, group=group) for name, value in targets.items()]
    real = importlib.metadata.entry_points

    def fake(**kwargs):
        return [p for p in points if p.group == kwargs.get("group")] if "group" in kwargs else real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)


def test_register_get_and_names():
    registry: Registry[type] = Registry("widget", "test.widgets")

    @registry.register("alpha")
    class Alpha:
        pass

    assert registry.get("alpha") is Alpha
    assert registry.names() == ["alpha"]
    assert "alpha" in registry and "beta" not in registry


def test_duplicate_registration_raises():
    registry: Registry[type] = Registry("widget", "test.widgets")
    registry.add("alpha", int)
    with pytest.raises(ValueError, match="already registered"):
        registry.add("alpha", float)


def test_unknown_name_lists_valid_names_and_closest_match():
    registry: Registry[type] = Registry("widget", "test.widgets")
    registry.add("context_restoration", int)
    registry.add("random", float)
    with pytest.raises(UnknownPluginError) as caught:
        registry.get("context_restorashun")
    message = str(caught.value)
    assert "did you mean 'context_restoration'" in message
    assert "context_restoration, random" in message


def test_entry_point_plugin_is_registered(monkeypatch):
    _entry_points(monkeypatch, "test.widgets", denoise="tests.plugins.denoising:Denoising")
    registry: Registry[type] = Registry("widget", "test.widgets")
    from tests.plugins.denoising import Denoising

    assert registry.get("denoise") is Denoising


def test_broken_and_invalid_plugins_are_warned_about_and_the_rest_still_load(monkeypatch):
    _entry_points(
        monkeypatch, "ssl_medbench.pretext_tasks",
        broken="tests.plugins.does_not_exist:Nothing",
        invalid="tests.plugins.denoising:NotAPretextTask",
        denoise="tests.plugins.denoising:Denoising",
    )
    from pretext_tasks import _check_initialisation

    registry: Registry[type] = Registry("pretext task", "ssl_medbench.pretext_tasks", validate=_check_initialisation)
    with pytest.warns(PluginLoadWarning) as warned:
        names = registry.names()
    assert names == ["denoise"]
    messages = " ".join(str(w.message) for w in warned)
    assert "'broken'" in messages and "ModuleNotFoundError" in messages
    assert "'invalid'" in messages and "must subclass" in messages
