"""Shared fixtures: the repository root, a registry with the toy plugins, toy configs."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

CORE_PLUGINS = ["plugins.stoppers", "plugins.loggers", "plugins.savers", "plugins.metrics"]


@pytest.fixture(scope="session")
def toy_registry():
    """Registry of the core loop plugins plus tests/toy_plugins.py (no entry points).

    A registry is read-only once built, so one instance serves the whole session.
    """
    from core.registry import Registry

    return Registry(builtins=CORE_PLUGINS + ["toy_plugins"], entry_points=False)


def toy_config(runs_dir, **sections):
    """A raw config of the toy plugins writing to ``runs_dir``; sections override."""
    config = {
        "experiment": "toy",
        "seed": 3,
        "model": {"width": 16},
        "data": {"name": "toy_data"},
        "init": {"name": "toy_init"},
        "algorithm": {"name": "toy_sgd"},
        "stoppers": {"max_steps": {"steps": 200}, "divergence": {}},
        "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 20}},
        "savers": {"periodic": {"every_seconds": 0.0, "every_steps": 25}},
        "run": {"runs_dir": str(runs_dir), "display": "off"},
    }
    from core.config import merge

    return merge(config, sections)


def subprocess_env():
    """Environment for CLI subprocesses: toy plugins importable and registered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
    env["RELULAB_PLUGINS"] = "toy_plugins"
    return env


def plugin_builder(registry, kind):
    """``build(name, **params)``: the ``kind`` plugin ``name`` with its declared defaults."""
    from core.params import validate_params

    def build(name, **params):
        cls = registry.get(kind, name)
        return cls(**validate_params(f"{kind} ({name})", params, cls.params))

    return build


def wait_for_steps(runs_dir, proc, min_steps):
    """The folder of the run under ``runs_dir/<experiment>/`` once its meta.json
    reports ``min_steps`` steps; fails with the process's stderr if it ends first."""
    import json
    import time

    while True:
        for meta_path in Path(runs_dir).glob("*/*/meta.json"):
            try:
                if json.loads(meta_path.read_text()).get("steps", 0) >= min_steps:
                    return meta_path.parent
            except ValueError:  # caught mid-replace on a file system without atomic reads
                pass
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
