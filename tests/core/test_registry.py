"""Plugin registry: lookups, duplicates, broken plugins, missing extras, hooks."""

import types

import pytest

from core.components import Algorithm, Stopper
from core.errors import PluginError
from core.hookspecs import hookimpl
from core.registry import Registry


def _plugin(**hooks):
    """A plugin object whose hooks return the given lists of classes."""
    module = types.SimpleNamespace()
    for hook, classes in hooks.items():

        def impl(_classes=classes):
            return _classes

        impl.__name__ = hook
        setattr(module, hook, hookimpl(impl))
    return module


class Twice(Stopper):
    name = "max_steps"


class NeedsTorchX(Algorithm):
    """Needs a module that is not installed."""

    name = "needs_x"
    requires = ("relulab_no_such_module",)
    extra = "torch"


def test_unknown_name_lists_available_and_closest(toy_registry):
    with pytest.raises(PluginError) as info:
        toy_registry.get("stopper", "max_step")
    message = str(info.value)
    assert "unknown stopper 'max_step'" in message
    assert "available: divergence, grad_norm, loss_threshold, max_steps, wall_time" in message
    assert "did you mean 'max_steps'?" in message


def test_duplicate_names_fail_naming_both_providers():
    registry = Registry(
        builtins=["plugins.stoppers"],
        entry_points=False,
        extra_plugins=[(_plugin(relulab_stoppers=[Twice]), "other-package")],
    )
    with pytest.raises(
        PluginError,
        match=r"stopper 'max_steps' is provided by both relulab "
        r"\(plugins.stoppers\) and other-package",
    ):
        registry.get("stopper", "max_steps")
    assert registry.get("stopper", "wall_time").name == "wall_time"  # others unaffected


def test_broken_plugin_is_reported_and_others_work(tmp_path, monkeypatch):
    (tmp_path / "broken_relulab_plugin.py").write_text("raise ImportError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(builtins=["plugins.stoppers", "broken_relulab_plugin"], entry_points=False)
    assert registry.failures == [("broken_relulab_plugin", "relulab", "ImportError: boom")]
    assert registry.get("stopper", "max_steps")
    with pytest.raises(PluginError, match="plugins that failed to load: broken_relulab_plugin"):
        registry.get("algorithm", "anything")


def test_hook_that_raises_is_reported():
    def bad():
        raise ValueError("bad hook")

    plugin = types.SimpleNamespace(relulab_algorithms=hookimpl(bad))
    registry = Registry(
        builtins=["plugins.stoppers"], entry_points=False, extra_plugins=[(plugin, "pkg")]
    )
    assert any("ValueError: bad hook" in err for _, _, err in registry.failures)


def test_missing_extra_is_unavailable_with_install_hint():
    registry = Registry(
        builtins=[],
        entry_points=False,
        extra_plugins=[(_plugin(relulab_algorithms=[NeedsTorchX]), "pkg")],
    )
    (entry,) = registry.entries("algorithm")
    assert not entry.available and entry.install_hint == 'pip install "pkg[torch]"'
    with pytest.raises(PluginError, match=r'install it with: pip install "pkg\[torch\]"'):
        registry.get("algorithm", "needs_x")


def test_environment_variable_registers_modules(monkeypatch):
    monkeypatch.setenv("RELULAB_PLUGINS", "toy_plugins")
    registry = Registry(builtins=[], entry_points=False)
    entry = registry.entry("algorithm", "toy_sgd")
    assert entry.provider == "RELULAB_PLUGINS"


def test_every_builtin_declares_valid_defaults():
    """Each plugin's defaults pass its own validation; every param has a doc."""
    from core.params import validate_params
    from plugins import BUILTIN_PLUGINS

    registry = Registry(builtins=BUILTIN_PLUGINS, entry_points=False)
    for entry in registry.entries():
        assert entry.cls.describe(), f"{entry.kind} {entry.name} has no docstring"
        names = [p.name for p in entry.cls.params]
        assert len(names) == len(set(names))
        for p in entry.cls.params:
            assert p.doc, f"{entry.name}.{p.name} has no doc"
        validate_params(entry.name, {}, entry.cls.params)
