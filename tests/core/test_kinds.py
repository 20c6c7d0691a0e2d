"""The kind table is the one declaration of each plugin kind: walk it everywhere."""

import inspect

import pytest

from core import components, config, hookspecs
from core.errors import ConfigError
from core.kinds import KIND, KIND_TABLE, KINDS, config_sections
from core.registry import Registry


def test_every_kind_has_its_base_class_hookspec_and_builtin_plugin():
    from plugins import BUILTIN_PLUGINS

    specs = {
        name
        for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("relulab_")
    }
    assert specs == {kind.hook for kind in KIND_TABLE}, "a hookspec without a kind, or back"
    registry = Registry(builtins=BUILTIN_PLUGINS, entry_points=False)
    assert registry.failures == []
    for kind in KIND_TABLE:
        assert issubclass(kind.base, components.Component)
        assert kind.base.kind == kind.name
        assert kind.base.__name__ in components.__all__
        assert registry.names(kind.name), f"no built-in plugin provides kind {kind.name!r}"
        for entry in registry.entries(kind.name):
            assert issubclass(entry.cls, kind.base)


def test_sections_come_from_the_table():
    sections = {kind.section for kind in KIND_TABLE if kind.section}
    assert sections <= set(config.TOP_LEVEL_KEYS)
    assert [k.section for k in config_sections(several=False)] == ["algorithm", "data", "init"]
    assert {k.section for k in config_sections(several=True)} == {"stoppers", "loggers", "savers"}
    assert KINDS == tuple(KIND) and len(set(KINDS)) == len(KINDS)


def test_a_class_of_the_wrong_kind_is_a_load_failure_not_a_plugin():
    class NotAStopper(components.Logger):
        name = "wrong"

        def observe(self, ctx):
            pass

    class Plugin:
        @staticmethod
        @hookspecs.hookimpl
        def relulab_stoppers():
            return [NotAStopper]

    registry = Registry(builtins=[], entry_points=False, extra_plugins=[(Plugin, "x")])
    assert "wrong" not in registry.names("stopper")
    assert any("not a subclass of core.components.Stopper" in f[2] for f in registry.failures)


def test_a_several_section_resolves_through_its_kind(toy_registry):
    from conftest import toy_config

    raw = toy_config("runs", stoppers={"no_such_stopper": {}})
    with pytest.raises(Exception, match="unknown stopper 'no_such_stopper'"):
        config.resolve(raw, toy_registry)
    raw = toy_config("runs", loggers="not a dict")
    with pytest.raises(ConfigError, match="loggers must be a dict"):
        config.resolve(raw, toy_registry)
