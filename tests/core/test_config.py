"""Config files, bases, overrides and validation errors."""

import subprocess
import sys

import pytest
from conftest import ROOT, subprocess_env, toy_config
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import apply_overrides, load, load_config_file, merge, parse_override, resolve
from core.errors import ConfigError, PluginError, RelulabError


def test_merge_is_deep_and_replaces_a_switched_plugin():
    base = {"algorithm": {"name": "gd", "lr": 0.1}, "model": {"width": 3, "scaling": "ntk"}}
    out = merge(base, {"model": {"width": 5}, "algorithm": {"name": "jko", "tau": 1.0}})
    assert out == {
        "algorithm": {"name": "jko", "tau": 1.0},
        "model": {"width": 5, "scaling": "ntk"},
    }
    assert base["model"]["width"] == 3  # not modified


@pytest.mark.parametrize(
    "text, expected",
    [
        ("algorithm.lr=0.5", (["algorithm", "lr"], 0.5)),
        ("algorithm.name=gd", (["algorithm", "name"], "gd")),
        ("stoppers.wall_time=None", (["stoppers", "wall_time"], None)),
        ("model.width=[1, 2]", (["model", "width"], [1, 2])),
        ("notes='a=b'", (["notes"], "a=b")),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["algorithm.lr", "=3", "a..b=1"])
def test_bad_override_syntax(text):
    with pytest.raises(ConfigError):
        parse_override(text)


def test_apply_overrides_creates_and_removes(toy_registry, tmp_path):
    raw = toy_config(tmp_path)
    out = apply_overrides(
        raw, ["stoppers.wall_time={'seconds': 5}", "stoppers.divergence=None", "algorithm.lr=1"]
    )
    resolved = resolve(out, toy_registry)
    assert resolved["stoppers"] == {"max_steps": {"steps": 200}, "wall_time": {"seconds": 5.0}}
    assert resolved["algorithm"]["lr"] == 1.0 and isinstance(resolved["algorithm"]["lr"], float)


def test_resolve_fills_defaults(toy_registry, tmp_path):
    resolved = resolve(toy_config(tmp_path), toy_registry)
    assert resolved["algorithm"] == {
        "name": "toy_sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "batch": 6,
        "sleep": 0.0,
        "nan_at": -1,
        "raise_at": -1,
        "fail_setup": False,
        "fail_loss": False,
    }
    assert resolved["model"] == {"width": 16, "scaling": "standard", "loss": "mse"}
    assert resolved["loggers"]["snapshots"] == {"every": 20, "per_decade": 0}


@pytest.mark.parametrize(
    "override, message",
    [
        ("algorithm.lrr=1", "unknown key 'lrr' in algorithm (toy_sgd); valid keys: batch, fail_"),
        ("algorithm.lrr=1", "did you mean 'lr'?"),
        ("algorithm.lr=-1", "algorithm (toy_sgd).lr must be a float in [0, inf); got -1"),
        ("algorithm.lr='x'", "got 'x'"),
        ("algorithm.batch=1.5", "must be an int in [1, inf); got 1.5"),
        ("algorithm.name=toy_sdg", "unknown algorithm 'toy_sdg' in algorithm.name; available:"),
        ("algorithm.name=toy_sdg", "did you mean 'toy_sgd'?"),
        ("model.scaling=ntx", "model.scaling must be one of {'standard', 'ntk', 'mean_field'}"),
        ("model.widht=3", "unknown key 'widht' in model; valid keys: loss, scaling, width"),
        ("stoppers.max_step={}", "unknown stopper 'max_step' in stoppers"),
        ("stoppers.max_steps.steps=True", "stoppers.max_steps.steps must be an int"),
        ("loggers.scalars.metrics=['nope']", "unknown metric 'nope' in loggers.scalars.metrics"),
        ("seed=-1", "seed must be an int >= 0; got -1"),
        ("experimnt='x'", "unknown top-level key 'experimnt'"),
        ("run.display='fancy'", "run.display must be one of"),
    ],
)
def test_validation_errors_name_key_value_and_allowed(toy_registry, tmp_path, override, message):
    raw = apply_overrides(toy_config(tmp_path), [override])
    with pytest.raises(RelulabError) as info:
        resolve(raw, toy_registry)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_config_file_with_explicit_base(tmp_path):
    (tmp_path / "parent.py").write_text(
        "config = {'experiment': 'p', 'model': {'width': 4, 'scaling': 'ntk'}}\n"
    )
    (tmp_path / "child.py").write_text(
        "base = 'parent.py'\nconfig = {'experiment': 'c', 'model': {'width': 8}}\n"
    )
    config, _ = load_config_file(tmp_path / "child.py")
    assert config == {"experiment": "c", "model": {"width": 8, "scaling": "ntk"}}


def test_config_file_importing_a_shipped_base(tmp_path):
    (tmp_path / "child.py").write_text(
        "from configs.base import config as base\nfrom core.config import merge\n"
        "config = merge(base, {'experiment': 'child'})\n"
    )
    config, _ = load_config_file(tmp_path / "child.py")
    assert config["experiment"] == "child" and "stoppers" in config


@pytest.mark.parametrize(
    "text, message",
    [
        ("x = 1\n", "must define a dict named 'config'"),
        ("config = {\n", "failed to execute: SyntaxError"),
        ("base = 'missing.py'\nconfig = {}\n", "config file not found"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "bad.py"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config_file(path)


def test_load_returns_source(toy_registry, tmp_path):
    path = tmp_path / "c.py"
    path.write_text(f"config = {toy_config(tmp_path)!r}\n")
    resolved, source, _ = load(path, ["algorithm.lr=0.5"], toy_registry)
    assert resolved["algorithm"]["lr"] == 0.5 and source == path.read_text()


# -- random bad values: always one clear error, never a traceback ---------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
sections = st.sampled_from(
    [
        "algorithm",
        "data",
        "init",
        "model",
        "run",
        "stoppers.max_steps",
        "loggers.scalars",
        "savers.periodic",
        "stoppers",
        "loggers",
        "",
    ]
)
keys = st.sampled_from(
    [
        "lr",
        "batch",
        "momentum",
        "name",
        "n",
        "width",
        "scaling",
        "steps",
        "every",
        "metrics",
        "display",
        "every_seconds",
        "bogus",
        "sleep",
    ]
)


@settings(max_examples=300, deadline=None)
@given(section=sections, key=keys, value=json_values)
def test_random_values_end_in_a_clear_error_or_a_valid_config(toy_registry, section, key, value):
    raw = toy_config("runs")
    node = raw
    for part in filter(None, section.split(".")):
        node = node.setdefault(part, {})
    node[key] = value
    try:
        resolved = resolve(raw, toy_registry)
    except RelulabError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message
    else:
        assert resolved["algorithm"]["name"] == "toy_sgd" or isinstance(value, str)


# -- command line: one line, exit code 2, no traceback -------------------------------
def _runner(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), *args],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["configs/base.py", "algorithm.lr=-1", "--dry-run"], "must be a float"),
        (["missing_config.py"], "config file not found"),
        (["configs/base.py", "algorithm.name=nope", "--dry-run"], "unknown algorithm 'nope'"),
        (["--help-plugin", "max_stepz"], "did you mean 'max_steps'?"),
        (["--resume", "/nonexistent/run"], "no such run directory"),
    ],
)
def test_cli_errors_are_one_line_exit_2(args, message):
    out = _runner(*args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_cli_debug_shows_traceback():
    out = _runner("missing_config.py", "--debug")
    assert out.returncode == 2 and "Traceback" in out.stderr


def test_cli_dry_run_prints_resolved_config(tmp_path):
    path = tmp_path / "c.py"
    path.write_text(f"config = {toy_config(tmp_path / 'runs')!r}\n")
    out = _runner(str(path), "algorithm.lr=0.25", "--dry-run")
    assert out.returncode == 0, out.stderr
    import json

    assert json.loads(out.stdout)["algorithm"]["lr"] == 0.25
    assert not (tmp_path / "runs").exists()


def test_unknown_plugin_error_type(toy_registry, tmp_path):
    with pytest.raises(PluginError):
        resolve(apply_overrides(toy_config(tmp_path), ["data.name=nope"]), toy_registry)


def test_override_switching_plugin_drops_old_parameters(toy_registry, tmp_path):
    raw = toy_config(tmp_path, algorithm={"lr": 0.5})
    out = apply_overrides(raw, ["algorithm.name=other", "algorithm.tau=2"])
    assert out["algorithm"] == {"name": "other", "tau": 2}
    same = apply_overrides(raw, ["algorithm.name=toy_sgd"])
    assert same["algorithm"]["lr"] == 0.5


def test_options_of_a_named_plugin_are_checked_at_resolve_time(tmp_path):
    from core.registry import Registry
    from plugins import BUILTIN_PLUGINS

    registry = Registry(builtins=BUILTIN_PLUGINS, entry_points=False)
    raw = {
        "data": {"name": "sinus"},
        "init": {"name": "grid", "per_axis": 4},
        "algorithm": {"name": "jko", "prox_options": {"max_iter": 5}},
    }
    resolved = resolve(raw, registry)
    # validated once, at resolve time, defaults of the named prox filled in
    assert resolved["algorithm"]["prox_options"] == {
        "tol": 1e-9,
        "max_iter": 5,
        "formulation": "dual",
    }
    raw["algorithm"]["prox_options"] = {"max_itr": 5}
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'max_itr' in algorithm.prox_options "
        r"\(scipy\).*did you mean 'max_iter'\?",
    ):
        resolve(raw, registry)


def test_a_parameter_naming_several_plugins_resolves_to_their_parameters(tmp_path):
    """A (list, dict) plugin link: names become {name: defaults}; given options are checked."""
    from core.registry import Registry
    from plugins import BUILTIN_PLUGINS

    registry = Registry(builtins=BUILTIN_PLUGINS, entry_points=False)
    raw = {
        "data": {"name": "sinus"},
        "init": {"name": "normal"},
        "algorithm": {"name": "gd_numpy"},
        "loggers": {"scalars": {"metrics": ["distance_from_init", "n_patterns"]}},
    }
    metrics = resolve(raw, registry)["loggers"]["scalars"]["metrics"]
    assert list(metrics) == ["distance_from_init", "n_patterns"]
    assert all(isinstance(options, dict) for options in metrics.values())
    cls = registry.get("metric", "distance_from_init")
    assert metrics["distance_from_init"] == {p.name: p.default for p in cls.params}
    raw["loggers"]["scalars"]["metrics"] = {"distance_from_init": {"no_such_option": 1}}
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'no_such_option' in "
        r"loggers.scalars.metrics.distance_from_init",
    ):
        resolve(raw, registry)
    raw["loggers"]["scalars"]["metrics"] = ["no_such_metric"]
    with pytest.raises(
        PluginError,
        match=r"unknown metric 'no_such_metric' in "
        r"loggers.scalars.metrics",
    ):
        resolve(raw, registry)
