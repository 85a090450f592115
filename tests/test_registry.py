from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from dataclasses import dataclass

import pytest

from ssl_medbench.core.errors import UnknownPluginError
from ssl_medbench.core.registry import BUILT_IN, PluginError, PluginLoadWarning, Registry, check_plugin
from ssl_medbench.pretext_tasks.base import Initialisation


class Widget(ABC):
    @dataclass(frozen=True)
    class Config:
        size: int = 1

    @abstractmethod
    def spin(self) -> None: ...


class Alpha(Widget):
    def spin(self) -> None:
        pass


class Beta(Widget):
    def spin(self) -> None:
        pass


def _entry_points(monkeypatch: pytest.MonkeyPatch, group: str, **targets: str) -> None:
    points = [importlib.metadata.EntryPoint(name=name, value=value, group=group) for name, value in targets.items()]
    real = importlib.metadata.entry_points

    def fake(**kwargs):
        return [p for p in points if p.group == kwargs.get("group")] if "group" in kwargs else real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)


def test_register_get_and_names():
    registry: Registry[type] = Registry("widget", "test.widgets", Widget)
    assert registry.register("alpha")(Alpha) is Alpha
    assert registry.get("alpha") is Alpha
    assert registry.names() == ["alpha"]
    assert "alpha" in registry and "beta" not in registry
    assert registry.origin("alpha") == __name__


def test_duplicate_registration_raises_naming_the_first():
    registry: Registry[type] = Registry("widget", "test.widgets", Widget)
    registry.register("alpha")(Alpha)
    with pytest.raises(ValueError, match=r"'alpha' is already registered by .*\(Alpha\)"):
        registry.register("alpha")(Beta)


def test_unknown_name_lists_valid_names_and_closest_match():
    registry: Registry[type] = Registry("widget", "test.widgets", Widget)
    registry.register("context_restoration")(Alpha)
    registry.register("random")(Beta)
    with pytest.raises(UnknownPluginError) as caught:
        registry.get("context_restorashun")
    message = str(caught.value)
    assert "did you mean 'context_restoration'" in message
    assert "context_restoration, random" in message


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (int, "must subclass tests.test_registry.Widget"),
        (Alpha(), "must subclass"),
        (Widget, "does not implement spin"),
        (type("NoConfig", (Alpha,), {"Config": object}), "needs a dataclass Config"),
        (type("ConfigInstance", (Alpha,), {"Config": Alpha.Config()}), "needs a dataclass Config"),
    ],
)
def test_every_kind_is_checked_alike(obj, message):
    with pytest.raises(PluginError, match=message):
        check_plugin("widget", "w", obj, Widget)
    registry: Registry[type] = Registry("widget", "test.widgets", Widget)
    with pytest.raises(PluginError, match=message):
        registry.register("w")(obj)
    assert "w" not in registry


def test_the_three_registries_share_the_check():
    from ssl_medbench.datasets import DATASETS, Dataset
    from ssl_medbench.downstream import DOWNSTREAM_TASKS, DownstreamTask
    from ssl_medbench.pretext_tasks import PRETEXT_TASKS

    for registry, base in ((DATASETS, Dataset), (DOWNSTREAM_TASKS, DownstreamTask), (PRETEXT_TASKS, Initialisation)):
        assert registry.base is base
        for name in registry.names():
            check_plugin(registry.kind, name, registry.get(name), base)
            if registry.get(name).__module__.startswith("ssl_medbench."):
                assert registry.origin(name) == BUILT_IN


def test_entry_point_plugin_is_registered(monkeypatch):
    _entry_points(monkeypatch, "test.widgets", denoise="tests.plugins.denoising:Denoising")
    registry: Registry[type] = Registry("pretext task", "test.widgets", Initialisation)
    from tests.plugins.denoising import Denoising

    assert registry.get("denoise") is Denoising


def test_broken_and_invalid_plugins_are_warned_about_and_the_rest_still_load(monkeypatch):
    _entry_points(
        monkeypatch,
        "test.pretext",
        broken="tests.plugins.does_not_exist:Nothing",
        invalid="tests.plugins.denoising:NotAPretextTask",
        denoise="tests.plugins.denoising:Denoising",
    )
    registry: Registry[type] = Registry("pretext task", "test.pretext", Initialisation)
    with pytest.warns(PluginLoadWarning) as warned:
        names = registry.names()
    assert names == ["denoise"]
    messages = " ".join(str(w.message) for w in warned)
    assert "'broken'" in messages and "ModuleNotFoundError" in messages
    assert "'invalid'" in messages and "must subclass" in messages


def test_an_entry_point_that_takes_a_built_in_name_is_reported_not_dropped(monkeypatch):
    _entry_points(monkeypatch, "test.pretext", context_restoration="tests.plugins.denoising:Denoising")
    registry: Registry[type] = Registry("pretext task", "test.pretext", Initialisation)
    from ssl_medbench.pretext_tasks.context_restoration import ContextRestoration

    registry.register("context_restoration")(ContextRestoration)
    with pytest.warns(
        PluginLoadWarning, match=r"'context_restoration' from entry point .*already taken by ssl-medbench \(built-in\)"
    ):
        assert registry.get("context_restoration") is ContextRestoration


def test_two_plugins_with_one_name_are_both_named(monkeypatch):
    _entry_points(monkeypatch, "test.pretext", denoise="tests.plugins.denoising:Denoising")
    points = list(importlib.metadata.entry_points(group="test.pretext"))
    points.append(
        importlib.metadata.EntryPoint(name="denoise", value="tests.plugins.denoising:NanLoss", group="test.pretext")
    )
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: points)
    registry: Registry[type] = Registry("pretext task", "test.pretext", Initialisation)
    with pytest.warns(PluginLoadWarning) as warned:
        assert registry.get("denoise").__name__ == "Denoising"
    (message,) = [str(w.message) for w in warned]
    assert (
        "'tests.plugins.denoising:NanLoss'" in message
        and "already taken by tests.plugins.denoising (Denoising)" in message
    )


def test_a_self_registering_plugin_is_credited_to_its_distribution(monkeypatch):
    registry: Registry[type] = Registry("widget", "test.widgets", Widget)

    class Distribution:
        name = "acme-widgets"

    point = importlib.metadata.EntryPoint(name="beta", value="tests.test_registry:Beta", group="test.widgets")
    monkeypatch.setattr(importlib.metadata.EntryPoint, "dist", Distribution(), raising=False)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [point])
    registry.register("beta")(Beta)  # what the plugin module does on import
    assert registry.origin("beta") == "acme-widgets"
