"""``import relulab``: the stable API of plugin packages, and the install hints they get."""

import ast
import subprocess
import sys
import types

import pytest
from conftest import ROOT

import core.components
import core.config
import core.errors
import core.hookspecs
import core.model
import core.params
import core.store
import core.sweep
import relulab
from core.components import Algorithm
from core.hookspecs import hookimpl
from core.registry import Registry

PUBLIC = {
    "Algorithm": core.components.Algorithm,
    "DataSet": core.components.DataSet,
    "Init": core.components.Init,
    "Stopper": core.components.Stopper,
    "Logger": core.components.Logger,
    "Saver": core.components.Saver,
    "Metric": core.components.Metric,
    "Plot": core.components.Plot,
    "Indicator": core.components.Indicator,
    "SweepAnalysis": core.components.SweepAnalysis,
    "Prox": core.components.Prox,
    "Distance": core.components.Distance,
    "Solver": core.components.Solver,
    "Optimizer": core.components.Optimizer,
    "Schedule": core.components.Schedule,
    "Data": core.components.Data,
    "Problem": core.components.Problem,
    "LoopContext": core.components.LoopContext,
    "SweepResults": core.sweep.SweepResults,
    "Param": core.params.Param,
    "hookimpl": core.hookspecs.hookimpl,
    "load_run": core.store.load_run,
    "merge": core.config.merge,
    "ConfigError": core.errors.ConfigError,
    "PluginError": core.errors.PluginError,
    "RunStoreError": core.errors.RunStoreError,
}


def test_all_is_the_plugin_api_and_names_the_core_objects():
    assert sorted(relulab.__all__) == sorted([*PUBLIC, "model"])
    assert len(set(relulab.__all__)) == len(relulab.__all__)
    for name, obj in PUBLIC.items():
        assert getattr(relulab, name) is obj, name
    namespace = {}
    exec("from relulab import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(relulab.__all__)


def test_docstring_documents_every_name():
    doc = relulab.__doc__
    missing = [name for name in relulab.__all__ if f"`{name}`" not in doc]
    assert missing == []
    assert "__all__" in doc


def test_model_is_the_shared_math():
    from relulab import model

    assert sorted(model.__all__) == sorted(core.model.__all__)
    for name in core.model.__all__:
        assert getattr(model, name) is getattr(core.model, name), name
    from relulab.model import loss_and_grad  # also a submodule

    assert loss_and_grad is core.model.loss_and_grad


def test_import_relulab_stays_light():
    code = (
        "import sys, relulab; "
        "print(sorted(m for m in ('matplotlib', 'torch', 'scipy.optimize', 'cvxpy', 'ot') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _imported_modules(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_example_plugin_uses_only_relulab():
    sources = sorted((ROOT / "examples" / "relulab-example-plugin").rglob("*.py"))
    assert sources
    imported = set().union(*(_imported_modules(path) for path in sources))
    top = {name.split(".")[0] for name in imported}
    assert "relulab" in top
    assert not top & {"core", "plugins", "configs", "runner", "plot", "postprocess"}, top


def test_doctests_are_collected():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "relulab",
            "core/params.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "relulab/__init__.py::relulab" in out.stdout
    assert "relulab/model.py::relulab.model" in out.stdout
    assert "core/params.py::core.params" in out.stdout


# -- install hints of unavailable plugins --------------------------------------------
def _plugin(*classes):
    def relulab_algorithms():
        return list(classes)

    return types.SimpleNamespace(relulab_algorithms=hookimpl(relulab_algorithms))


def _needs(name, extra=None, hint=None, requires=("relulab_no_such_module",)):
    attrs = {"name": name, "requires": requires, "extra": extra, "__doc__": "Needs a module."}
    if hint is not None:
        attrs["install_hint"] = hint
    return type(name, (Algorithm,), attrs)


@pytest.fixture(scope="module")
def hint_registry():
    third_party = _plugin(
        _needs("with_extra", extra="gpu"),
        _needs("without_extra", requires=("relulab_no_such_module", "numpy", "relulab_nope2")),
        _needs("own_hint", extra="gpu", hint="conda install -c forge relulab-gpu"),
        _needs("installed", extra="gpu", requires=("numpy",)),
    )
    builtin_like = _plugin(_needs("builtin_extra", extra="torch"), _needs("builtin_plain"))
    return Registry(
        builtins=[],
        entry_points=False,
        extra_plugins=[(third_party, "some-dist"), (builtin_like, "relulab")],
    )


@pytest.mark.parametrize(
    "name, hint",
    [
        ("with_extra", 'pip install "some-dist[gpu]"'),
        ("without_extra", "pip install relulab_no_such_module relulab_nope2"),
        ("own_hint", "conda install -c forge relulab-gpu"),
        ("builtin_extra", 'pip install "relulab[torch]"'),
        ("builtin_plain", 'pip install "relulab[all]"'),
    ],
)
def test_unavailable_plugin_names_its_distributions_install_hint(hint_registry, name, hint):
    entry = next(e for e in hint_registry.entries("algorithm") if e.name == name)
    assert not entry.available
    assert entry.install_hint == hint
    with pytest.raises(
        core.errors.PluginError,
        match="install it with: " + hint.replace("[", r"\[").replace("]", r"\]"),
    ):
        hint_registry.get("algorithm", name)


def test_available_plugin_of_a_distribution(hint_registry):
    entry = next(e for e in hint_registry.entries("algorithm") if e.name == "installed")
    assert entry.available and entry.provider == "some-dist"
    assert hint_registry.get("algorithm", "installed").name == "installed"


def test_local_module_plugin_is_told_the_missing_modules():
    module = _plugin(_needs("local_extra", extra="gpu"))
    registry = Registry(
        builtins=[], entry_points=False, extra_plugins=[(module, "RELULAB_PLUGINS")]
    )
    (entry,) = registry.entries("algorithm")
    assert entry.install_hint == "pip install relulab_no_such_module"
